"""Labels of a prepared tfds split: scanned from its records once, then read from a small int32 .npy file.

array_record stores whole examples, so scanning the labels reads the whole split (~140 GiB for ImageNet train). The
result is kept in `$MIALTH_CACHE_DIR/labels/` (default `~/.cache/mialth_jax/labels/`), never in the tfds data_dir,
which is often read-only shared storage. The file name hashes the dataset's name, version and split, its number of
records and the path, size and mtime of every shard, so preparing the split again gives a new name. A cached file is
used only if it is int32 [len(records)] with labels in [0, num_classes); anything else is logged and rebuilt.
"""
import hashlib
import json
import os
import time

import numpy as np
from absl import logging
from etils import epath

from mialth_jax.utils import io, progress

_SCAN_CHUNK = 4096      # records per read when scanning a whole split
_REPORT_EVERY_S = 10.0  # seconds between progress lines of a scan


def cache_dir() -> str:
  """`$MIALTH_CACHE_DIR/labels`, or `~/.cache/mialth_jax/labels` when the variable is unset or empty."""
  root = os.environ.get("MIALTH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mialth_jax")
  return os.path.join(root, "labels")


def _shard_stat(filename: str) -> tuple[str, int, int]:
  """(absolute path, size, mtime) of one shard file."""
  if "://" in filename:   # gs:// and other remote stores, through etils (whole-second mtime)
    stat = epath.Path(filename).stat()
    return filename, stat.length, stat.mtime
  stat = os.stat(filename)
  return os.path.abspath(filename), stat.st_size, stat.st_mtime_ns


def cache_path(info, split: str, num_records: int) -> str:
  """The cache file of `split` of the prepared dataset described by tfds DatasetInfo `info`."""
  shards = [_shard_stat(f.filename) for f in info.splits[split].file_instructions]
  key = json.dumps([info.name, str(info.version), split, num_records, shards])
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(cache_dir(), f"{info.name}-{info.version}-{split}-{digest}.npy")


def _problem(labels, num_records: int, num_classes: int) -> str | None:
  """Why cached `labels` cannot be trusted, or None."""
  if not isinstance(labels, np.ndarray):   # np.load gives an NpzFile for a zip archive
    return f"expected a .npy array, got {type(labels).__name__}"
  if labels.dtype != np.int32 or labels.shape != (num_records,):
    return f"expected int32 labels of shape ({num_records},), got {labels.dtype} {labels.shape}"
  if num_records and (labels.min() < 0 or labels.max() >= num_classes):
    return f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
  return None


def _read(path: str, num_records: int, num_classes: int) -> np.ndarray | None:
  """The labels cached at `path`; None if there is no such file or it cannot be trusted (a warning says why)."""
  try:
    labels = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    return None
  except (OSError, ValueError, EOFError) as e:
    problem = f"not a readable .npy without pickle ({e})"
  else:
    problem = _problem(labels, num_records, num_classes)
  if problem:
    logging.warning("ignoring label cache %s: %s; scanning the records again", path, problem)
    return None
  return labels


def _write(path: str, labels: np.ndarray) -> None:
  """Saves `labels` atomically; a cache that cannot be written only costs the next load another scan."""
  try:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
      np.save(f, labels)
  except OSError as e:
    logging.warning("could not write label cache %s (%s); the next load will scan the records again", path, e)


def _scan(records, what: str) -> np.ndarray:
  """The int32 labels of a whole data source, read in chunks, with a progress line every _REPORT_EVERY_S."""
  n = len(records)
  labels = np.empty(n, np.int32)
  start = last_report = time.perf_counter()
  for begin in range(0, n, _SCAN_CHUNK):
    end = min(begin + _SCAN_CHUNK, n)
    labels[begin:end] = [r["label"] for r in records.__getitems__(list(range(begin, end)))]
    now = time.perf_counter()
    if now - last_report >= _REPORT_EVERY_S and end < n:
      rate = end / (now - start)
      logging.info("scanning labels of %s: %d/%d records, %.0f records/s, ETA %s", what, end, n, rate,
                   progress.hms((n - end) / rate))
      last_report = now
  logging.info("scanned %d labels of %s in %.1f s", n, what, time.perf_counter() - start)
  return labels


def load(info, split: str, records) -> np.ndarray:
  """The int32 labels of `records`, the tfds data source of `split` described by `info`: cached, else scanned once."""
  what, num_classes = f"{info.name}:{split}", info.features["label"].num_classes
  path = cache_path(info, split, len(records))
  cached = _read(path, len(records), num_classes)
  if cached is not None:
    logging.info("read %d labels of %s from %s", len(cached), what, path)
    return cached
  logging.info("no label cache at %s: scanning the %d records of %s once (reads the whole split)", path,
               len(records), what)
  scanned = _scan(records, what)
  _write(path, scanned)
  return scanned
