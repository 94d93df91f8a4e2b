"""Atomic file writes and small JSON helpers.

Every result file is written to a temporary name in the same directory and renamed, so a reader sees either the old
file, the new one, or none: never half of one (a rename within one filesystem is atomic on POSIX).
"""
import contextlib
import gzip
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any, Iterator

import numpy as np

from mialth_jax import errors
from mialth_jax.utils import events


TMP_PREFIX = ".tmp-"  # atomic_path's temporaries; a killed process leaves them, the next launch removes them
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: results get the permissions open() would give them, not mkstemp's 0600


class UnreadableFileError(errors.UserError, ValueError):
  """A JSON or npz file that cannot be parsed; the message names the file."""


class WriteError(errors.UserError, OSError):
  """A result could not be written (full or read-only disk, a file size limit); the message names the file."""


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX + os.path.basename(path) + "-")
  except OSError as e:
    raise WriteError(f"{path}: cannot write it ({e.strerror or e})") from e
  os.close(fd)
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)
  except OSError as e:
    raise WriteError(f"{path}: cannot write it ({e.strerror or e})") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _to_jsonable(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def write_json(path: str, obj: Any) -> None:
  """Indented JSON; where the path ends .gz, compact and gzip-compressed (tens of thousands of numbers), the gzip
  header holding no time or name, so equal objects give equal bytes."""
  if not path.endswith(".gz"):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=_to_jsonable)
      f.write("\n")
    return
  with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                                      mtime=0) as f:
    f.write(json.dumps(obj, separators=(",", ":"), default=_to_jsonable).encode())


def read_json(path: str) -> Any:
  """A JSON file, or a gzip-compressed one where the path ends .gz (its CRC detects a damaged copy)."""
  opened = gzip.open(path, "rt") if path.endswith(".gz") else open(path)
  with opened as f:
    try:
      return json.load(f)
    except (ValueError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as e:
      raise UnreadableFileError(f"{path}: not valid JSON ({e})") from e


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def write_npz(path: str, **arrays: np.ndarray) -> None:
  """Writes an uncompressed .npz atomically (np.savez would append '.npz' to the temporary name)."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def write_npy(path: str, array: np.ndarray) -> None:
  """Writes one array as .npy atomically (readable by any tool with np.load)."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.save(f, array)


def read_npy(path: str) -> np.ndarray:
  """Reads one .npy array without pickle; anything else (object arrays, garbage, a truncated file) raises naming it."""
  try:
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
      raise ValueError("an .npz archive, not a single .npy array")
    return array
  except (ValueError, EOFError, OSError) as e:
    raise UnreadableFileError(f"{path}: not a readable .npy without pickle ({e})") from e


def read_npz(path: str) -> dict[str, np.ndarray]:
  """Reads every array of an .npz without pickle; anything else (object arrays, garbage) raises naming the file."""
  try:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
      raise ValueError("a single .npy array, not an .npz archive")
    with data:
      return {key: data[key] for key in data.files}
  except (ValueError, EOFError, zipfile.BadZipFile) as e:
    raise UnreadableFileError(f"{path}: not a readable npz without pickle ({e})") from e


def read_id_arrays(path: str, names: list[str], error: type[Exception] = UnreadableFileError) -> dict:
  """Exactly the arrays `names` of an npz, each 1-D of integers (ids); anything else raises `error` naming the file."""
  arrays = read_npz(path)
  if sorted(arrays) != sorted(names):
    raise error(f"{path}: expected the arrays {', '.join(names)}; found {', '.join(sorted(arrays))}")
  for name in names:
    if arrays[name].ndim != 1 or not np.issubdtype(arrays[name].dtype, np.integer):
      raise error(f"{path}: {name} must be a 1-D integer array, got {arrays[name].dtype} {arrays[name].shape}")
  return arrays


def append_jsonl(path: str, record: dict) -> None:
  """Appends one JSON line and flushes it to disk (metrics survive a crash up to the last line)."""
  try:
    with open(path, "a") as f:
      f.write(json.dumps(record, sort_keys=True, default=_to_jsonable) + "\n")
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise WriteError(f"{path}: cannot append to it ({e.strerror or e})") from e


def read_jsonl(path: str) -> list:
  """Every record of a JSON-lines file (metrics.jsonl), in order."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
  """metrics.jsonl for one phase, and its TensorBoard event file beside it (utils/events.py); on resume, lines past
  the resumed step are dropped so no step appears twice (and TensorBoard is told to drop them too)."""

  def __init__(self, path: str):
    self.path = path
    self.events = events.EventLog(os.path.dirname(path) or ".")

  def truncate_after(self, step: int) -> None:
    """Keeps the lines up to `step`; a torn last line (the process was killed while appending it) is dropped."""
    if not os.path.exists(self.path):
      return
    self.events.restart_after(step)
    with open(self.path) as f:
      lines = [line for line in f if line.strip()]
    kept = []
    for number, line in enumerate(lines, 1):
      try:
        record = json.loads(line)
      except ValueError as e:
        if number == len(lines):
          break
        raise UnreadableFileError(f"{self.path}: line {number} is not JSON") from e
      if record["step"] <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
    write_text(self.path, "".join(kept))

  def __call__(self, record: dict) -> None:
    append_jsonl(self.path, record)
    try:
      self.events(record)
    except OSError as e:
      raise WriteError(f"{os.path.dirname(self.path)}: cannot write the TensorBoard event file "
                       f"({e.strerror or e})") from e
