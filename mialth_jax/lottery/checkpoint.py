"""Orbax checkpoints of pytrees: w0, rewind points, masks, final models, and periodic train states.

Orbax commits a checkpoint atomically (it writes into a temporary folder and renames it), so a folder that exists is a
finished checkpoint. Restoring against a target tree gives back exact dtypes and shapes (bool masks included) and
refuses a checkpoint whose tree does not match the model.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
  """A checkpoint is missing or does not match the model."""


def save(path: str, tree) -> None:
  """Saves `tree` at `path` (which must not exist yet) and waits until it is committed."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), tree)
    checkpointer.wait_until_finished()


def _abstract(tree):
  """ShapeDtypeStructs (with the leaves' shardings) that tell Orbax what to restore into."""
  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None))
  return jax.tree.map(leaf, tree)


def restore(path: str, like):
  """Restores the checkpoint at `path` with the structure, shapes and dtypes of `like`."""
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: no finished checkpoint there")
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      return checkpointer.restore(os.path.abspath(path), _abstract(like))
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{path}: checkpoint does not match the model ({str(e).splitlines()[0]})") from None


def exists(path: str) -> bool:
  return os.path.isdir(path)


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """Periodic train-state checkpoints (synchronous, so a kill never loses a step we reported as saved)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)
