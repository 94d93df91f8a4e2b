"""A damaged checkpoint is detected when it is read, with one error naming the folder and the way out (issue 31):
the restore reads every array at once, and `load_run(...).model(name)` reads the weights when the model is opened,
not at its first forward pass."""
import os
import shutil

import numpy as np
import pytest

import mialth_jax
from mialth_jax.utils import checkpoint


def _truncate_largest_file(folder: str) -> str:
  files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(100)
  return largest


def test_a_truncated_checkpoint_is_refused_when_restored(tmp_path):
  tree = {"w": np.arange(4096, dtype=np.float32).reshape(64, 64), "b": np.ones(3, np.float32)}
  path = str(tmp_path / "ckpt")
  checkpoint.save(path, tree)
  np.testing.assert_array_equal(checkpoint.restore(path, tree)["w"], tree["w"])
  _truncate_largest_file(path)
  with pytest.raises(checkpoint.CheckpointError, match=r"ckpt: damaged checkpoint, it cannot be read \(.*\); "
                                                       r"delete the folder of what it belongs to"):
    checkpoint.restore(path, tree)


def test_load_run_refuses_a_damaged_model_when_it_is_opened(smoke_run, tmp_path):
  run_dir = str(tmp_path / "run")
  shutil.copytree(smoke_run, run_dir)
  run = mialth_jax.load_run(run_dir)
  assert run.model("ticket_s80").name == "ticket_s80"
  _truncate_largest_file(os.path.join(run_dir, "models", "dense", "final"))
  with pytest.raises(checkpoint.CheckpointError, match=r"models/dense/final: damaged checkpoint"):
    mialth_jax.load_run(run_dir).model("dense")
