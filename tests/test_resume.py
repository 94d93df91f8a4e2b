"""kill -9 anywhere and relaunch: the run ends bit for bit where an uninterrupted one does.

One uninterrupted launch of tests/resume_case.py is the reference. Another run is killed with SIGKILL in dense
training, in ticket retraining and in the attack phase, relaunched after each kill until it exits 0, and compared
file by file with the reference: every checkpoint bitwise, every JSON (but wall time), npz and metrics line.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

import run_files
from mialth_jax.experiments import launch
from mialth_jax.lottery import pipeline
from mialth_jax.models import resnet
from mialth_jax.utils import checkpoint, io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "tests/resume_case.py"
LAUNCH = [sys.executable, "-m", "launch.main"]
COMMAND = [*LAUNCH, f"--config={CONFIG}"]
TEMPORARY = (checkpoint.TMP_SUFFIX, io.TMP_PREFIX)


def _launch(workdir, *flags, config=CONFIG):
  return subprocess.run([*LAUNCH, f"--config={config}", f"--workdir={workdir}", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def _kill_when(workdir, reached, log_path):
  """Launches the run and SIGKILLs it as soon as `reached(workdir)` holds; fails if it finished first."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen([*COMMAND, f"--workdir={workdir}"], cwd=REPO, stdout=log, stderr=log)
    while proc.poll() is None and not reached(workdir):
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    returncode = proc.wait()
  assert returncode == -signal.SIGKILL, open(log_path).read()[-3000:]


def _train_steps(workdir, model):
  """Train steps logged so far by `model` (complete lines only: the run may be writing)."""
  path = os.path.join(workdir, "models", model, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum('"phase": "train"' in line for line in f if line.endswith("\n"))


def _checkpoint_steps(workdir, model):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "models", model, "checkpoints")) if s.isdigit())


def _attack_results(workdir):
  root = os.path.join(workdir, "attacks")
  return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".json")]


def _assert_same_leaves(path, a, b):
  leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b], path
  for (key, x), (_, y) in zip(leaves_a, leaves_b):
    assert np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y), (path, jax.tree_util.keystr(key))


def _assert_same_run(reference, run):
  """Every artefact of `run` equals the reference's: checkpoints bitwise, JSON but wall time, npz, metrics lines."""
  expected, found = run_files.artefacts(reference), run_files.artefacts(run)
  assert sorted(found) == sorted(expected)
  assert not [p for p in found if any(t in p for t in TEMPORARY)]
  for rel, kind in expected.items():
    a, b = os.path.join(reference, rel), os.path.join(run, rel)
    if kind == "checkpoint":
      _assert_same_leaves(rel, run_files.read_checkpoint(a), run_files.read_checkpoint(b))
    elif kind == ".json":
      assert run_files.without_wall_time(io.read_json(b)) == run_files.without_wall_time(io.read_json(a)), rel
    elif kind == ".npz":
      x, y = io.read_npz(a), io.read_npz(b)
      assert sorted(x) == sorted(y), rel
      _assert_same_leaves(rel, x, y)
    elif kind == ".jsonl":
      with open(a) as fa, open(b) as fb:
        assert [json.loads(l) for l in fb] == [json.loads(l) for l in fa], rel
    else:
      raise AssertionError(f"unexpected artefact {rel}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  result = _launch(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_reference_run_is_what_the_comparison_expects(reference):
  artefacts = run_files.artefacts(reference)
  assert sum(k == "checkpoint" for k in artefacts.values()) == 10  # w0, rewind; per model mask, final, 2 states
  assert _checkpoint_steps(reference, "dense") == [16, 20]
  assert len(_attack_results(reference)) == 2 * 2 + 4 * 2 + 1  # paper, transfer (all pairs), summary.json
  lines = [json.loads(l) for l in open(os.path.join(reference, "models", "ticket_s80", "metrics.jsonl"))]
  assert [l["step"] for l in lines if l["phase"] == "train"] == list(range(11, 25))
  assert [l["step"] for l in lines if l["phase"] == "eval"] == [12, 16, 20, 24]


def test_killed_in_every_phase_and_relaunched_gives_the_same_bits(reference, tmp_path):
  workdir = str(tmp_path / "run")
  # At 10 logged steps the run is saving the late-rewind point (lottery.rewind_step=10).
  _kill_when(workdir, lambda w: _train_steps(w, "dense") >= 10, tmp_path / "kill1.log")
  assert not os.path.exists(os.path.join(workdir, "models", "dense", "summary.json"))
  assert 8 <= _checkpoint_steps(workdir, "dense")[-1] < 24

  _kill_when(workdir, lambda w: _train_steps(w, "ticket_s80") >= 6, tmp_path / "kill2.log")
  assert os.path.exists(os.path.join(workdir, "models", "dense", "summary.json"))
  assert not os.path.exists(os.path.join(workdir, "models", "ticket_s80", "summary.json"))

  _kill_when(workdir, lambda w: _attack_results(w), tmp_path / "kill3.log")
  assert os.path.exists(os.path.join(workdir, "lottery_summary.json"))
  assert not os.path.exists(os.path.join(workdir, "attacks", "summary.json"))

  result = _launch(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming from the checkpoint" not in result.stderr  # the last relaunch had only attacks left
  _assert_same_run(reference, workdir)


def test_every_half_finished_state_a_kill_can_leave_is_finished_identically(reference, tmp_path):
  """Kill windows too narrow to hit by polling, recreated on a copy of the finished reference run."""
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  ticket = os.path.join(workdir, "models", "ticket_s80")
  # Killed while saving final/: Orbax's temporary folder, no final/, no summary.json.
  shutil.rmtree(os.path.join(ticket, "final"))
  os.remove(os.path.join(ticket, "summary.json"))
  shutil.copytree(os.path.join(ticket, "mask"), os.path.join(ticket, "final" + checkpoint.TMP_SUFFIX))
  # Killed while saving the step-24 state and while appending a metrics line.
  os.makedirs(os.path.join(ticket, "checkpoints", "24" + checkpoint.TMP_SUFFIX, "default"))
  with open(os.path.join(ticket, "metrics.jsonl"), "a") as f:
    f.write('{"accuracy": 0.5, "loss": 1.2, "pha')
  # Killed between an attack's npz and its JSON, and inside io.write_npz.
  paper = os.path.join(workdir, "attacks", "n512", "paper", "ticket_s80__ticket_s80")
  os.remove(os.path.join(paper, "loss.json"))
  with open(os.path.join(paper, io.TMP_PREFIX + "logreg.npz-x1y2"), "wb") as f:
    f.write(b"PK\x03")
  for name in ("lottery_summary.json", "attacks/summary.json", "confidences/ticket_s80.npz"):
    os.remove(os.path.join(workdir, name))

  result = _launch(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming from the checkpoint at step 20" in result.stderr
  _assert_same_run(reference, workdir)


def test_a_diverging_run_stops_at_the_step_and_keeps_its_last_good_checkpoint(tmp_path):
  """The learning rate jumps x1e30 at step 6: the state of step 4 is saved, then the loss explodes."""
  workdir = str(tmp_path / "run")
  result = _launch(workdir, "--config.train.schedule=step", "--config.train.step_boundaries=(0.25,)",
                   "--config.train.step_factor=1e30")
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  assert errors[0].startswith("error: [dense] the loss or the parameters became NaN or Inf at step ")
  step = int(errors[0].split(" at step ")[1].split()[0])
  assert 7 <= step <= 8 and "the checkpoint of step 4 is kept" in errors[0]
  dense = os.path.join(workdir, "models", "dense")
  assert _checkpoint_steps(workdir, "dense") == [4]
  state = run_files.read_checkpoint(os.path.join(dense, "checkpoints", "4"))
  assert state["step"] == 4 and all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
  assert not os.path.exists(os.path.join(dense, "final")) and not os.path.exists(os.path.join(dense, "summary.json"))


def test_a_final_checkpoint_of_another_width_is_refused_at_attack_time(reference, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  final = os.path.join(workdir, "models", "ticket_s80", "final")
  shutil.rmtree(final)
  shutil.rmtree(os.path.join(workdir, "attacks"))
  os.remove(os.path.join(workdir, "confidences", "ticket_s80.npz"))
  wider = resnet.create_model("resnet18", 10, "cifar", 0.125).init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1)))
  checkpoint.save(final, {"params": wider["params"], "batch_stats": wider["batch_stats"]})
  config = ml_collections.ConfigDict(io.read_json(os.path.join(workdir, "config.json")))
  with pytest.raises(checkpoint.CheckpointError) as error:
    ctx = pipeline.setup(config, workdir)
    launch.run_attacks(ctx, launch.attack_sizes(ctx))
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"{final}: checkpoint does not match the model (")
  assert "float32 (8,), the model needs float32 (4,)" in message


def test_restart_moves_a_run_of_another_config_aside_and_then_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  old_files = {"config.json": json.dumps({"seed": 7}), "notes.txt": "the old run\n"}
  for name, text in old_files.items():
    with open(os.path.join(workdir, name), "w") as f:
      f.write(text)
  flags = ["--restart", "--config.train.num_steps=4", "--config.lottery.rewind_step=0",
           "--config.attacks.protocols=('paper',)"]
  result = _launch(workdir, *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  moved = glob.glob(workdir + ".old-*")
  assert len(moved) == 1 and f"moved the run with a different config to {moved[0]}" in result.stderr
  for name, text in old_files.items():
    with open(os.path.join(moved[0], name)) as f:
      assert f.read() == text
  assert io.read_json(os.path.join(workdir, "config.json"))["train"]["num_steps"] == 4
  assert set(io.read_json(os.path.join(workdir, "lottery_summary.json"))) == {"dense", "ticket_s80"}
  again = _launch(workdir, *flags)  # the same config: --restart resumes (here: finds everything done)
  assert again.returncode == 0, again.stderr[-3000:]
  assert glob.glob(workdir + ".old-*") == moved and "moved the run" not in again.stderr


def test_a_kill_between_a_checkpoint_and_the_point_kept_at_its_step_resumes_to_the_same_result(tmp_path):
  """train.keep_every_epochs keeps the weights at step 20, right after the checkpoint at 20: the state a kill between
  the two leaves (recreated on a copy of the finished run: the ticket's checkpoint at 20, no kept/20, no final) resumes
  at 20, keeps the point from the restored state and ends bit for bit where the uninterrupted run does."""
  reference, workdir = str(tmp_path / "reference"), str(tmp_path / "run")
  done = _launch(reference, config=f"{CONFIG}:keep")
  assert done.returncode == 0, done.stderr[-3000:]
  ticket = os.path.join(reference, "models", "ticket_s80")
  assert sorted(os.listdir(os.path.join(ticket, "kept"))) == ["12", "16", "20"]
  shutil.copytree(reference, workdir)
  ticket = os.path.join(workdir, "models", "ticket_s80")
  for name in ("final", os.path.join("kept", "20")):
    shutil.rmtree(os.path.join(ticket, name))
  os.remove(os.path.join(ticket, "summary.json"))
  again = _launch(workdir, config=f"{CONFIG}:keep")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "[ticket_s80] resuming from the checkpoint at step 20" in again.stderr, again.stderr[-3000:]
  _assert_same_run(reference, workdir)
