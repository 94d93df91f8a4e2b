"""The run folder's lock, and the rule that a run is never overwritten by a different config (paths: `layout`)."""
import contextlib
import fcntl
import json
import os
import shutil
import time

import ml_collections
from absl import logging

from mialth_jax import errors
from mialth_jax.layout import RunLayout
from mialth_jax.utils import checkpoint, io, provenance

# Sections whose values decide what a trained model is; the attacks section (and adding sparsities or controls)
# may change between launches on the same workdir, since they only add work.
MODEL_DEFINING = ("seed", "data", "model", "train", "lottery")
ADDITIVE = {"lottery.sparsities", "lottery.controls"}


def register_additive(*names: str) -> None:
  """Declares model-defining fields that only say which models a run holds, each named by its value (e.g. a list of
  sparsities): a relaunch may change them, adding models beside the ones already trained."""
  ADDITIVE.update(names)


class RunDirError(errors.UserError, ValueError):
  """The workdir cannot be used with this config."""


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and not name.startswith("attacks.models"):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def differing_fields(old: dict, new: dict) -> list[str]:
  """Model-defining fields whose values differ between two configs (as dicts).

  Fields present in only one of them are not compared: they come from a newer or older version of the defaults.
  """
  old_flat = _flatten(old)
  new_flat = _flatten(new)
  names = sorted(set(old_flat) & set(new_flat))
  return [n for n in names if n.split(".")[0] in MODEL_DEFINING and n not in ADDITIVE
          and old_flat.get(n) != new_flat.get(n)]


def differing_config(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Model-defining fields in which `config` differs from the run in `workdir` (none for a new workdir)."""
  path = RunLayout(workdir).config
  if not os.path.exists(path):
    return []
  return differing_fields(io.read_json(path), json.loads(config.to_json()))  # tuples become lists, as in the file


def prepare(config: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
  """Checks that the workdir is new or holds a run of the same models; a new one gets config.json (if `write`: the
  process that writes for a multi-process job)."""
  differing = differing_config(config, workdir)
  if differing:
    raise RunDirError(f"{workdir} holds a run with a different config ({', '.join(differing)}); use a new "
                      "--workdir, the same config, or --restart to move that run aside and start over")
  if write and not os.path.exists(RunLayout(workdir).config):
    record_config(config, workdir)


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json: the config of the latest launch whose checks passed."""
  io.write_json(RunLayout(workdir).config, json.loads(config.to_json()))


def restart(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Moves a run with a different config aside to `<workdir>.old-<time>` (nothing is deleted); returns its new path.

  A run of the same config stays where it is and is resumed, so a relaunch with --restart never loses work.
  """
  with locked(workdir):
    if not differing_config(config, workdir):
      return None
    target = unused_path(f"{os.path.normpath(workdir)}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    os.rename(workdir, target)
    return target


def unused_path(base: str) -> str:
  """`base`, or `base-1`, `base-2` ... if it exists (two launches within the same second)."""
  target, n = base, 1
  while os.path.exists(target):
    target, n = f"{base}-{n}", n + 1
  return target


COMPILATION_CACHE = ".jax_cache"  # the default folder of JAX's compilation cache inside a workdir (launch.main)


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on the workdir for one launch; a second launch on it fails at once.

  flock locks are released by the kernel when the process dies, so a killed run never leaves a stale lock. A launch
  that created the workdir and is refused (or fails) before training a model removes it again: a refused launch
  leaves nothing behind.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunDirError(f"--workdir={workdir} is a file, not a folder")
  created = _missing_folders(workdir)
  path = RunLayout(workdir).lock
  try:
    os.makedirs(workdir, exist_ok=True)
    f = open(path, "a+")
  except OSError as e:
    raise RunDirError(f"--workdir={workdir}: cannot create it or its lock file ({e.strerror or e})") from e
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise RunDirError(f"{workdir} is in use by another launch (pid {holder}); wait for it to finish or use "
                        "another --workdir") from e
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    remove_partial_files(workdir)
    try:
      yield
    except BaseException:
      if created and _holds_only_setup_records(workdir):
        _remove_created(created)
      raise


def _missing_folders(workdir: str) -> list[str]:
  """The folders that creating `workdir` makes, deepest first."""
  missing = []
  folder = os.path.abspath(workdir)
  while not os.path.exists(folder):
    missing.append(folder)
    folder = os.path.dirname(folder)
  return missing


def _holds_only_setup_records(workdir: str) -> bool:
  """Whether the workdir holds only what a launch writes before training (and half-written files): all of it is
  rebuilt from the config by a relaunch."""
  layout = RunLayout(workdir)
  records = {os.path.basename(p) for p in (layout.lock, layout.config, layout.splits, layout.w0,
                                           provenance.path(workdir))}
  return all(name in records or name == COMPILATION_CACHE or name.startswith(io.TMP_PREFIX)
             or checkpoint.TMP_SUFFIX in name for name in os.listdir(workdir))


def _remove_created(folders: list[str]) -> None:
  """Removes the workdir this launch created, then the parents it created; the launch's own error is what shows.

  A checkpoint save that failed (a full disk) returns while Orbax's writer threads may still create files in its
  temporary folder: while one is there, the removal is repeated for 10 s, until those threads have given up.
  """
  in_flight = any(checkpoint.TMP_SUFFIX in name for name in os.listdir(folders[0]))
  for _ in range(20 if in_flight else 1):
    shutil.rmtree(folders[0], ignore_errors=True)
    time.sleep(0.5 if in_flight else 0)
  try:
    for folder in folders:
      if os.path.exists(folder):
        os.rmdir(folder)
  except OSError as e:
    logging.warning("could not remove %s, which this failed launch created (%s)", folders[0], e)


def remove_partial_files(workdir: str) -> None:
  """Deletes what killed launches left half-written: atomic_path's .tmp-* files and Orbax temporary folders.

  Called under the workdir's lock, when no other launch can be writing them. Readers never take them for results.
  """
  for root, dirs, files in os.walk(workdir):
    for name in [d for d in dirs if checkpoint.TMP_SUFFIX in d]:
      logging.info("removing %s (a killed launch's unfinished checkpoint)", os.path.join(root, name))
      shutil.rmtree(os.path.join(root, name))
      dirs.remove(name)
    for name in [f for f in files if f.startswith(io.TMP_PREFIX)]:
      logging.info("removing %s (a killed launch's unfinished file)", os.path.join(root, name))
      os.remove(os.path.join(root, name))
