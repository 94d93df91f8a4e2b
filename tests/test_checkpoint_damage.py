"""A damaged checkpoint is detected when it is read, with one error naming the folder and the way out (issue 31):
the restore reads every array at once, and `load_run(...).model(name)` reads the weights when the model is opened,
not at its first forward pass. The way out, `--retrain=NAME`, sets that model's files aside and makes it again."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import mialth_jax
import run_files
from launch import compare_runs
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


def _of_dense(path: str) -> bool:
  """Whether a run folder's file (relative path) depends on the bits of dense alone: its folder, outputs, attacks."""
  return path.startswith(("models/dense/", "confidences/dense.")) or (path.startswith("attacks/") and
                                                                      "/dense__dense/" in path)


def _dense_params(workdir: str) -> dict:
  tree = run_files.read_checkpoint(os.path.join(workdir, "models", "dense", "final"))
  return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_a_damaged_model_is_retrained_to_the_same_bits_with_the_rest_untouched(smoke_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(smoke_run, workdir)
  before, original = _files(workdir), _dense_params(workdir)
  damaged = _truncate_largest_file(os.path.join(workdir, "models", "dense", "final"))

  needing_it = _launch(workdir, "--config.lottery.sparsities=(0.8,0.5)")  # a new ticket is pruned from dense
  assert needing_it.returncode == 2, needing_it.stderr[-3000:]
  assert len(_error_lines(needing_it.stderr)) == 1, needing_it.stderr[-3000:]
  assert re.match(rf"error: {re.escape(workdir)}/models/dense/final: damaged checkpoint, it cannot be read \(.*\); "
                  r"relaunch the run's command with --retrain=dense: ", _error_lines(needing_it.stderr)[0])

  retrained = _launch(workdir, "--retrain=dense")
  assert retrained.returncode == 0, retrained.stderr[-3000:]
  after = _dense_params(workdir)
  assert sorted(after) == sorted(original) and len(original) > 10
  assert all(after[k].dtype == original[k].dtype and after[k].tobytes() == original[k].tobytes() for k in original)
  (aside,) = glob.glob(os.path.join(workdir, "set_aside", "dense-*"))
  moved, now = _files(aside), _files(workdir)
  assert sorted(moved) == sorted(p for p in before if _of_dense(p))  # exactly dense's files, nothing deleted
  assert len(moved[os.path.relpath(damaged, workdir)][0]) == 100  # the damaged file, as it was
  assert all(moved[p] == before[p] for p in moved if p != os.path.relpath(damaged, workdir))
  rewritten = {"config.json", "launches.jsonl", "lottery_summary.json", "attacks/summary.json", ".lock"}
  kept = {p for p in before if not _of_dense(p)} - rewritten
  assert len(kept) > 20 and {p for p in kept if now.get(p) != before[p]} == set()  # same bytes and mtimes
  results = [p for p in moved if p.endswith(".json") and p.startswith("attacks/")]
  assert len(results) >= 2 and all(run_files.without_wall_time(json.loads(now[p][0])) == run_files.without_wall_time(
      json.loads(moved[p][0])) for p in results)  # the attacks on the retrained dense: the same numbers

  assert compare_runs.differences(smoke_run, workdir) == []  # every result the same bits; set_aside/ is not one


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


def test_the_way_out_names_the_flag_for_a_launch_run_folder_only(tmp_path):
  run = tmp_path / "run"
  for folder in (run, run / "shadow_n100"):  # a protocol's own run folder inside the run
    folder.mkdir()
    (folder / "config.json").write_text("{}")
  for path, name in (("models/ticket_s80/final", "ticket_s80"), ("models/dense/mask", "dense"), ("w0", "w0"),
                     ("rewind", "dense"), ("shadow_n100/models/dense/final", None), ("shadows/w0", None),
                     ("shadows/dense/final", None)):
    assert checkpoint.retrain_name(str(run / path)) == name, path
  assert checkpoint.way_out(str(run / "w0")).startswith("relaunch the run's command with --retrain=w0: ")
  assert checkpoint.way_out(str(run / "shadows" / "w0")) == checkpoint.DAMAGED_WAY_OUT
  assert checkpoint.retrain_name(str(tmp_path / "elsewhere" / "models" / "dense" / "final")) is None  # no config.json


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
