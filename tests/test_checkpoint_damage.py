"""A damaged checkpoint is detected when it is read, with one error naming the folder and the way out (issue 31):
the restore reads every array at once, and `load_run(...).model(name)` reads the weights when the model is opened,
not at its first forward pass. The way out, `--retrain=NAME`, sets that model's files aside and makes it again."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mialth_jax
from mialth_jax.experiments import retrain
from mialth_jax.layout import RunLayout
from mialth_jax.utils import checkpoint, io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# ---- The way out: --retrain=NAME sets the model's files aside and makes it again, keeping the rest (issue 31).
def _launch(workdir, *flags) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as the shared smoke run was made
  return subprocess.run([sys.executable, "-m", "launch.main", "--config=configs/default.py:smoke",
                         f"--workdir={workdir}", *flags], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def _files(workdir: str) -> dict[str, tuple[bytes, int]]:
  """{relative path: (contents, mtime in ns)} of every file in the run folder."""
  paths = [os.path.join(root, name) for root, _, names in os.walk(workdir) for name in names]
  return {os.path.relpath(p, workdir): (open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in paths}


def test_retrain_refuses_a_name_the_run_does_not_have_and_moves_nothing(smoke_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(smoke_run, workdir)
  before = _files(workdir)
  refused = _launch(workdir, "--retrain=dense,ticket_s50")
  assert refused.returncode == 2, refused.stderr[-3000:]
  assert _error_lines(refused.stderr) == ["error: --retrain: ticket_s50: not a model of this run; expected names "
                                          "among w0, dense, ticket_s80"]
  assert {p for p, file in _files(workdir).items() if before.get(p) != file} <= {".lock"}
  assert not os.path.exists(os.path.join(workdir, "set_aside"))


def _summary(name: str, pruned_from: str = "", test_accuracy: float = 0.5, wall_seconds: float = 1.0) -> dict:
  return {"name": name, "kind": "x", "pruned_from": pruned_from, "devices": 1, "test_accuracy": test_accuracy,
          "wall_seconds": wall_seconds}


def test_a_retrained_model_that_came_back_other_stops_the_launch_naming_the_models_made_from_it(tmp_path):
  layout = RunLayout(str(tmp_path))
  for summary in (_summary("dense"), _summary("ticket_s80", "dense"), _summary("random_reinit_s80", "ticket_s80"),
                  _summary("other", "")):
    io.write_json(layout.summary(summary["name"]), summary)
  planned = ["dense", "ticket_s80", "random_reinit_s80", "other"]
  assert retrain.expectations(layout, ["other"], planned) == {}  # nothing was made from it: nothing to check
  assert retrain.expectations(layout, ["dense", "ticket_s80"], planned)["dense"][1] == ["random_reinit_s80"]
  expected = retrain.expectations(layout, ["dense"], planned)
  assert expected["dense"][1] == ["random_reinit_s80", "ticket_s80"]  # the run folder's order: dense first, sorted

  io.write_json(layout.summary("dense"), _summary("dense", wall_seconds=9.0))  # the same bits, another time
  retrain.check(layout, expected)
  io.write_json(layout.summary("dense"), _summary("dense", test_accuracy=0.625))
  with pytest.raises(retrain.RetrainError, match=r"^--retrain=dense: the retrained dense differs from the one set "
                     r"aside \(test_accuracy\); random_reinit_s80, ticket_s80 were made from the set-aside one: "
                     r"relaunch with --retrain=random_reinit_s80,ticket_s80 "):
    retrain.check(layout, expected)
