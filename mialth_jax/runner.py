"""What one launch does: the lottery pipeline, then the membership-inference attacks on every model."""
import ml_collections

from mialth_jax import run_dir
from mialth_jax.data import base as data_base
from mialth_jax.lottery import checkpoint, pipeline

# Errors caused by the user's settings or files: the launcher prints their one-line message and exits 2.
USER_ERRORS = (data_base.DataError, run_dir.RunDirError, checkpoint.CheckpointError, ValueError, FileNotFoundError,
               PermissionError, NotImplementedError)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or finishes) every model of the config in `workdir`."""
  return pipeline.run(config, workdir)
