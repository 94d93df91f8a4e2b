"""Damaged entries of JAX's persistent compilation cache, found and dropped before a launch uses the cache.

JAX writes an entry in place (`LRUCache.put`: `write_bytes`) and never replaces one that exists, so a launch killed
while writing (SIGKILL, out of memory, the machine going down) leaves a truncated entry that every later launch fails
to read, warns about ("Error reading persistent compilation cache entry ... incomplete or truncated stream") and
compiles again, for good. An entry is the compressed executable: zstd where `zstandard` is installed, else zlib, which
is how JAX writes it; one that does not decompress whole is removed, and JAX writes it again at its next compile.

Only entries written since the last check are read: a marker file's modification time is the time that check
started, and an entry killed mid-write either existed then (and was read) or was last written after it.
"""
import math
import os
import time
import zlib

_ENTRY_SUFFIX = "-cache"  # JAX's name for an entry; "-atime" files beside them hold access times
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MARKER = "mialth_checked"  # its mtime: when the last check of the folder started
_CLOCK_SLACK_SECONDS = 1.0


def _decompresses(data: bytes) -> bool:
  if data.startswith(_ZSTD_MAGIC):
    try:
      import zstandard  # pylint: disable=import-outside-toplevel  (only where JAX itself wrote zstd)
    except ImportError:
      return True  # cannot tell here; JAX without zstandard would not read it either way
    try:
      zstandard.ZstdDecompressor().decompress(data)
      return True
    except zstandard.ZstdError:
      return False
  decompressor = zlib.decompressobj()
  try:
    decompressor.decompress(data)
  except zlib.error:
    return False
  return decompressor.eof


def _last_check_started(marker: str) -> float:
  try:
    return os.path.getmtime(marker) - _CLOCK_SLACK_SECONDS
  except OSError:
    return -math.inf


def _record_check(marker: str, started: float) -> None:
  """Sets the marker's mtime to `started`; a folder that cannot be written is checked whole at every launch."""
  try:
    with open(marker, "a", encoding="utf-8"):
      pass
    os.utime(marker, (started, started))
  except OSError:
    pass


def drop_damaged_entries(folder: str) -> list[str]:
  """Removes the entries of the cache in `folder` written since the last check that do not decompress whole;
  returns their file names."""
  if not os.path.isdir(folder):
    return []
  marker, started = os.path.join(folder, _MARKER), time.time()
  checked_before = _last_check_started(marker)
  dropped = []
  for entry in sorted(os.scandir(folder), key=lambda e: e.name):
    if not entry.name.endswith(_ENTRY_SUFFIX) or not entry.is_file() or entry.stat().st_mtime < checked_before:
      continue
    with open(entry.path, "rb") as f:
      intact = _decompresses(f.read())
    if not intact:
      try:
        os.remove(entry.path)
        dropped.append(entry.name)
      except OSError:  # dropped first by another launch sharing the cache, or a folder that cannot be written
        pass
  _record_check(marker, started)
  return dropped
