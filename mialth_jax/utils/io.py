"""Atomic file writes and small JSON helpers.

Every result file is written to a temporary name in the same directory and renamed, so a reader sees either the old
file, the new one, or none: never half of one (a rename within one filesystem is atomic on POSIX).
"""
import contextlib
import json
import os
import tempfile
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
  os.close(fd)
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
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
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_to_jsonable)
    f.write("\n")


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def write_npz(path: str, **arrays: np.ndarray) -> None:
  """Writes an uncompressed .npz atomically (np.savez would append '.npz' to the temporary name)."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def read_npz(path: str) -> dict[str, np.ndarray]:
  """Reads every array of an .npz without pickle (object arrays are refused by numpy)."""
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key] for key in data.files}


def append_jsonl(path: str, record: dict) -> None:
  """Appends one JSON line and flushes it to disk (metrics survive a crash up to the last line)."""
  with open(path, "a") as f:
    f.write(json.dumps(record, sort_keys=True, default=_to_jsonable) + "\n")
    f.flush()
    os.fsync(f.fileno())


class MetricsLog:
  """metrics.jsonl for one phase; on resume, lines past the resumed step are dropped so no step appears twice."""

  def __init__(self, path: str):
    self.path = path

  def truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    write_text(self.path, "".join(kept))

  def __call__(self, record: dict) -> None:
    append_jsonl(self.path, record)
