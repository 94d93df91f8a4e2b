"""Orbax checkpoints of pytrees: w0, rewind points, masks, final models, and periodic train states.

Orbax writes a checkpoint into `<path>.orbax-checkpoint-tmp*` and renames it when complete, so a kill leaves at most
such a temporary folder, never a half-written `<path>`: `exists` ignores the temporaries (Orbax replaces one on the
next save of the same path; `run_dir.remove_partial_files` sweeps them at every launch).
Restoring checks the stored tree against the target first, because Orbax itself would silently cast dtypes (and,
without a sharding, take any stored shape), and refuses a checkpoint that does not match the model.
"""
import contextlib
import logging
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from mialth_jax import errors

TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointError(errors.UserError, ValueError):
  """A checkpoint is missing, damaged or does not match the model."""


DAMAGED_WAY_OUT = "delete the folder of what it belongs to and relaunch the same command: only that is made again"
# What a launch's run folder keeps where (mirrored from layout.RunLayout, which imports this module): a model's
# folder models/<name>/, w0/, and dense's late-rewind point rewind/, each made again by `--retrain=<name>`.
_RETRAIN_NAMES = {"w0": "w0", "rewind": "dense"}


def retrain_name(path: str) -> str | None:
  """The `--retrain` name that makes the checkpoint at `path` again, when `path` lies in a launch's run folder: one
  holding config.json in a folder that does not (a protocol's own run folder inside a run is not one)."""
  parts = os.path.abspath(path).split(os.sep)
  if parts[-1] in _RETRAIN_NAMES:
    run, name = parts[:-1], _RETRAIN_NAMES[parts[-1]]
  elif "models" in parts[:-2]:
    at = max(i for i, part in enumerate(parts[:-2]) if part == "models")
    run, name = parts[:at], parts[at + 1]
  else:
    return None
  run = os.sep.join(run) or os.sep
  is_launch_run = os.path.isfile(os.path.join(run, "config.json")) and not os.path.isfile(
      os.path.join(os.path.dirname(run), "config.json"))
  return name if is_launch_run else None


def way_out(path: str, otherwise: str = DAMAGED_WAY_OUT) -> str:
  """How to make the checkpoint at `path` again: `--retrain=<name>` for one of a launch's run folder, else
  `otherwise`."""
  name = retrain_name(path)
  if name is None:
    return otherwise
  return (f"relaunch the run's command with --retrain={name}: it moves {name}'s files into the run's set_aside/ "
          "folder and makes them again, keeping everything else")


def exists(path: str) -> bool:
  """True for a finished checkpoint (Orbax writes _CHECKPOINT_METADATA before its final rename)."""
  return os.path.isfile(os.path.join(path, "_CHECKPOINT_METADATA"))


def save(path: str, tree) -> None:
  """Saves `tree` at `path` (which must not exist yet) and waits until it is committed."""
  if os.path.exists(path):
    raise CheckpointError(f"{path}: exists but is not a finished Orbax checkpoint; "
                          f"{way_out(path, 'remove it to recreate it')}")
  with _writing(path), ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), tree)
    checkpointer.wait_until_finished()


def save_step(checkpoints: ocp.CheckpointManager, step: int, state) -> None:
  """A periodic train-state checkpoint at `step`, committed before returning; a failed write is one CheckpointError."""
  with _writing(f"{checkpoints.directory}", f" of step {step}"):
    checkpoints.save(step, args=ocp.args.StandardSave(state))
    checkpoints.wait_until_finished()


@contextlib.contextmanager
def _writing(where: str, what: str = ""):
  """A checkpoint write: its background failures quiet (`quiet_background_failures`), a failed write one
  CheckpointError naming `where` (Orbax reports a full disk or a file size limit as ValueError)."""
  try:
    with quiet_background_failures():
      yield
  except (ValueError, OSError) as e:
    raise CheckpointError(f"{where}: cannot write the checkpoint{what} ({str(e).splitlines()[0]})") from e


class _OrbaxThreadErrors(logging.Filter):
  """Drops the ERROR records (with tracebacks) that Orbax's writer threads log for a failed write, and asyncio's
  "Task exception was never retrieved" for the write tasks they leave behind."""

  def filter(self, record: logging.LogRecord) -> bool:
    orbax = f"{os.sep}orbax{os.sep}" in record.pathname or "orbax" in str(record.exc_info or "") or (
        "orbax" in record.getMessage())
    return not (record.levelno >= logging.ERROR and orbax)


@contextlib.contextmanager
def quiet_background_failures():
  """While a checkpoint is written: a failed write (a full disk, a file size limit) raises in the caller, who turns
  it into one `error:` line; the tracebacks that Orbax's threads log for it, and those of the "Event loop is closed"
  errors of TensorStore's callbacks that reach sys.excepthook, are dropped (some of the latter are printed directly and
  still show, before that line). Any other exception reaching sys.excepthook is printed as before. After a failed
  write the filters stay: its writer threads may still log once the write has raised (the launch then ends with its
  error line)."""
  handler = _OrbaxThreadErrors()
  loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
  previous_hook = sys.excepthook

  def hook(kind, value, traceback):
    if not (kind is RuntimeError and str(value) == "Event loop is closed"):
      previous_hook(kind, value, traceback)
  for logger in loggers:
    logger.addFilter(handler)
  sys.excepthook = hook
  yield  # an exception here (a failed write) leaves the filters in place
  sys.excepthook = previous_hook
  for logger in loggers:
    logger.removeFilter(handler)


def _abstract(tree):
  """ShapeDtypeStructs (with the leaves' shardings) that tell Orbax what to restore into."""
  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None))
  return jax.tree.map(leaf, tree)


def _leaves(tree) -> dict:
  """{key path: (shape, dtype)} of every leaf."""
  return {jax.tree_util.keystr(path): (tuple(leaf.shape), np.dtype(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_matches(stored, target) -> None:
  """Raises ValueError naming the first leaf whose presence, shape or dtype differs between two trees."""
  have = _leaves(stored)
  want = _leaves(target)
  for name in sorted(set(have) | set(want)):
    if name not in have or name not in want:
      raise ValueError(f"{name} is {'missing' if name in want else 'not in the model'}")
    if have[name] != want[name]:
      shape, dtype = have[name]
      want_shape, want_dtype = want[name]
      raise ValueError(f"{name} is {dtype} {shape}, the model needs {want_dtype} {want_shape}")


def restore(path: str, like):
  """Restores the checkpoint at `path` with the structure, shapes and dtypes of `like`."""
  if not exists(path):
    raise CheckpointError(f"{path}: no finished checkpoint there")
  target = _abstract(like)
  with ocp.StandardCheckpointer() as checkpointer:
    try:
      check_matches(checkpointer.metadata(os.path.abspath(path)).item_metadata.tree, target)
    except (ValueError, KeyError, TypeError, AttributeError, FileNotFoundError) as e:
      raise CheckpointError(f"{path}: checkpoint does not match the model ({str(e).splitlines()[0]})") from e
    try:
      return jax.block_until_ready(checkpointer.restore(os.path.abspath(path), target))
    except Exception as e:  # TensorStore's and XLA's errors of a truncated or damaged file: read now, not at first use
      cause = str(e).splitlines()[0].split(" See full TensorStore details")[0][:160]
      raise CheckpointError(f"{path}: damaged checkpoint, it cannot be read ({cause}); {way_out(path)}") from e


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """Periodic train-state checkpoints (synchronous, so a kill never loses a step we reported as saved).

  A step folder that a kill left as a temporary is not a step (`latest_step` skips it) and is deleted on creation.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def restore_latest(checkpoints: ocp.CheckpointManager, like, sharding: jax.sharding.Sharding):
  """(step, state) of the newest periodic checkpoint, or (None, like placed with `sharding`) when there is none.

  Every leaf is restored with `sharding`: taking `like`'s own shardings would put the step counter of a fresh state,
  an uncommitted one-device array, on one device next to parameters spread over all of them.
  """
  step = checkpoints.latest_step()
  if step is None:  # placed like the step's outputs, so the train step compiles once, not twice
    return None, jax.device_put(like, sharding)
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), like)
  try:
    return step, checkpoints.restore(step, args=ocp.args.StandardRestore(target))
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    raise CheckpointError(f"{checkpoints.directory}/{step}: checkpoint does not match the model "
                          f"({str(e).splitlines()[0]})") from e
