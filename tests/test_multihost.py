"""The whole pipeline as one job of 2 processes x 4 CPU devices on localhost (JAX's distributed runtime, gloo
collectives), against 1 process x 8 devices, into one shared run folder; a process killed mid-training; the launcher's
one-line errors for a job that cannot start.

The pipeline is configs/default.py:smoke shrunk further by flags (CASE): 8 train steps at learning rate 0.002 with a
checkpoint every 3, one sparsity (0.8), one cheap attack (threshold_loss) on an attack set of 400, 50 bootstrap
rounds. Four launches (1 x 8, 2 x 4, a 2 x 4 launch killed in dense training and its relaunch) take about 3-4 minutes
on an idle 2-core machine: the second process of a job compiles every function itself (on CPUs JAX's persistent
compilation cache is written, and its keys match, for process 0 only).

Why learning rate 0.002: 1 x 8 and 2 x 4 run the same global batches on the same 8-device mesh, but their
all-reduces (gradients, BatchNorm statistics) sum in another order (gloo's ring across processes, XLA's in-process
reduction within one). At the smoke config's 0.05 this tiny digits ResNet amplifies such rounding differences within
a few steps: one process with 1 device vs one with 8 ends 8 steps with 910 of 175,048 ticket mask entries and dense
weights up to 0.29 apart, exactly as 2 x 4 does. At 0.002 the differences stay at rounding level (measured: weights
3.6e-7, logits 1.3e-6, losses 2e-7 relative apart; masks, accuracies and attack results identical), so the
tolerances below are tight and the masks must be equal.
"""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import run_files
from mialth_jax import inference
from mialth_jax.lottery import train
from mialth_jax.utils import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = ["--config=configs/default.py:smoke", "--config.train.num_steps=8", "--config.train.learning_rate=0.002",
        "--config.checkpoint_every_steps=3",
        "--config.train.log_every_steps=1", "--config.attacks.models={'loss': {'type': 'threshold_loss'}}",
        "--config.attacks.sizes=(400,)", "--config.attacks.num_bootstrap=50"]
LAUNCH_TIMEOUT_S = 900
SURVIVOR_TIMEOUT_S = 90  # a survivor in a collective stops at once; one in a checkpoint barrier after the heartbeat
DISTRIBUTED_TIMEOUT_S = 30  # --distributed_timeout of the killed job: JAX's heartbeat timeout
PARAM_ATOL = 1e-5  # final weights and BatchNorm statistics, 1 x 8 vs 2 x 4 (measured 3.6e-7)
LOSS_RTOL = 1e-5  # every logged train loss (measured 2e-7)
LOGIT_ATOL = 1e-4  # the attacked models' logits (measured 1.3e-6)
METRIC_ATOL = 0.002  # test accuracy (1 of 899 images) and attack ROC AUC (measured: identical)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env() -> dict:
  """The tests' environment without conftest's 8 forced host devices: --cpu_devices sets each process's count."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if not f.startswith("--xla_force_host_platform_device_count"))
  return env


def _start(workdir, logs, processes: int, *flags) -> list[subprocess.Popen]:
  """Launches the CASE pipeline as `processes` processes of 8 / processes CPU devices each, on a free port; their
  stderr goes to <logs>/p<i>.log."""
  port = _free_port()
  procs = []
  for i in range(processes):
    job = [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}", f"--process_id={i}"]
    with open(os.path.join(logs, f"p{i}.log"), "w") as log, open(os.path.join(logs, f"p{i}.out"), "w") as out:
      procs.append(subprocess.Popen(  # stdout apart: gloo prints there from C++, mid-line for all Python knows
          [sys.executable, "-m", "launch.main", *CASE, f"--workdir={workdir}", f"--cpu_devices={8 // processes}",
           *(job if processes > 1 else []), *flags], cwd=REPO, stdout=out, stderr=log, env=_env()))
  return procs


def _finish(procs, logs, timeout=LAUNCH_TIMEOUT_S) -> list[str]:
  """Waits for every process; returns their outputs, failing with their tails unless all exited 0."""
  codes = [p.wait(timeout=timeout) for p in procs]
  outputs = [open(os.path.join(logs, f"p{i}.log")).read() for i in range(len(procs))]
  assert codes == [0] * len(procs), "\n".join(f"p{i} ({c}): {o[-3000:]}"
                                             for i, (c, o) in enumerate(zip(codes, outputs)))
  return outputs


def _run(tmp_path_factory, name: str, processes: int) -> str:
  folder = tmp_path_factory.mktemp(name)
  workdir = str(folder / "run")
  _finish(_start(workdir, folder, processes), folder)
  return workdir


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  return _run(tmp_path_factory, "one", 1)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  return _run(tmp_path_factory, "two", 2)


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _same_bits(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _lines(path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_two_processes_make_the_run_of_one_process_into_one_folder(one_process, two_processes):
  """Every artefact once (one process writes JSON / npz, no temporaries), the same member and attack splits, w0 and
  masks bit for bit; parameters, losses, logits and metrics within the float tolerances above."""
  one, two = run_files.artefacts(one_process), run_files.artefacts(two_processes)
  assert sorted(two) == sorted(one)
  assert not [p for p in two if ".tmp-" in p or "orbax-checkpoint-tmp" in p]
  exact = ["splits.npz", "attacks/n400/split.npz"]
  for rel in exact:
    assert _same_bits(io.read_npz(os.path.join(one_process, rel)), io.read_npz(os.path.join(two_processes, rel))), rel
  for rel in ["w0", "models/dense/mask", "models/ticket_s80/mask"]:
    assert _same_bits(*(_leaves(run_files.read_checkpoint(os.path.join(w, rel))) for w in (one_process, two_processes)))
  for rel in ["models/dense/final", "models/ticket_s80/final"]:
    a, b = (_leaves(run_files.read_checkpoint(os.path.join(w, rel))) for w in (one_process, two_processes))
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(b[key], a[key], rtol=0, atol=PARAM_ATOL, err_msg=f"{rel} {key}")
  for model in ("dense", "ticket_s80"):
    lines_one, lines_two = (_lines(os.path.join(w, "models", model, "metrics.jsonl"))
                            for w in (one_process, two_processes))
    assert [(l["phase"], l["step"]) for l in lines_two] == [(l["phase"], l["step"]) for l in lines_one]
    assert [l["step"] for l in lines_two if l["phase"] == "train"] == list(range(1, 9))  # each step once
    np.testing.assert_allclose([l["loss"] for l in lines_two if l["phase"] == "train"],
                               [l["loss"] for l in lines_one if l["phase"] == "train"], rtol=LOSS_RTOL)
    s1, s2 = (io.read_json(os.path.join(w, "models", model, "summary.json")) for w in (one_process, two_processes))
    assert s2["devices"] == s1["devices"] == 8 and s2["sparsity"] == s1["sparsity"]
    assert abs(s2["test_accuracy"] - s1["test_accuracy"]) <= METRIC_ATOL
    c1, c2 = (io.read_npz(os.path.join(w, "confidences", f"{model}.npz")) for w in (one_process, two_processes))
    assert np.array_equal(c1["ids"], c2["ids"]) and np.array_equal(c1["labels"], c2["labels"])
    np.testing.assert_allclose(c2["logits"], c1["logits"], rtol=0, atol=LOGIT_ATOL)
  r1, r2 = (io.read_json(os.path.join(w, "attacks", "summary.json")) for w in (one_process, two_processes))
  assert [(r["target"], r["attack"], r["num_members"]) for r in r2] == [(r["target"], r["attack"], r["num_members"])
                                                                        for r in r1]
  for a, b in zip(r1, r2):
    assert abs(a["roc_auc"] - b["roc_auc"]) <= METRIC_ATOL


def _train_steps(workdir, model) -> int:
  path = os.path.join(workdir, "models", model, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum('"phase": "train"' in line for line in f if line.endswith("\n"))


@pytest.mark.slow
def test_a_killed_process_stops_its_job_and_a_relaunch_resumes_to_the_same_run(two_processes, tmp_path):
  """Process 1 is SIGKILLed in dense training (after 4 logged steps, the checkpoint of step 3 saved); process 0
  ends within SURVIVOR_TIMEOUT_S with a message that says so; both relaunched resume and end bit for bit where the
  uninterrupted 2-process run did (wall times aside)."""
  workdir = str(tmp_path / "run")
  procs = _start(workdir, tmp_path, 2, f"--distributed_timeout={DISTRIBUTED_TIMEOUT_S}")
  deadline = time.monotonic() + LAUNCH_TIMEOUT_S
  while _train_steps(workdir, "dense") < 4 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  code = procs[0].wait(timeout=SURVIVOR_TIMEOUT_S + 30)
  waited = time.monotonic() - killed_at
  survivor = open(tmp_path / "p0.log").read()
  assert procs[1].wait() == -signal.SIGKILL and code != 0, survivor[-3000:]
  assert waited < SURVIVOR_TIMEOUT_S, waited
  assert not os.path.exists(os.path.join(workdir, "models", "dense", "summary.json"))
  errors = [l for l in survivor.splitlines() if l.startswith("error: ")]
  ours = len(errors) == 1 and errors[0].startswith("error: process 0 of 2: another process of this job stopped")
  # In a checkpoint's barrier (not a collective) JAX's coordination service ends the survivor itself.
  jax_own = "Terminating process because the JAX distributed service detected fatal errors. This most likely " \
            "indicates that another task died" in survivor
  assert ours or jax_own, survivor[-3000:]

  relaunch_logs = tmp_path / "relaunch"
  relaunch_logs.mkdir()
  relaunched = _finish(_start(workdir, relaunch_logs, 2), relaunch_logs)
  assert "[dense] resuming from the checkpoint at step 3" in relaunched[0] + relaunched[1]
  expected, found = run_files.artefacts(two_processes), run_files.artefacts(workdir)
  assert sorted(found) == sorted(expected)
  for rel, kind in expected.items():
    a, b = os.path.join(two_processes, rel), os.path.join(workdir, rel)
    if kind == "checkpoint":
      assert _same_bits(_leaves(run_files.read_checkpoint(a)), _leaves(run_files.read_checkpoint(b))), rel
    elif kind == ".npz":
      assert _same_bits(io.read_npz(a), io.read_npz(b)), rel
    elif kind == ".json":
      assert run_files.without_wall_time(io.read_json(b)) == run_files.without_wall_time(io.read_json(a)), rel
    else:
      assert kind == ".jsonl" and _lines(b) == _lines(a), rel


def _error_lines(output: str) -> list[str]:
  return [line for line in output.splitlines() if line.startswith("error: ")]


def test_a_job_that_cannot_start_together_stops_each_process_with_one_line(tmp_path):
  """Nobody at the coordinator's address, a process 0 whose partner never comes, and a second job on a workdir
  whose lock is held: each process exits 2 with one `error:` line (JAX alone would abort with a C++ stack dump, or
  wait), the first two within --distributed_timeout=3 s plus start-up."""
  locked = tmp_path / "locked"
  locked.mkdir()
  with open(locked / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lone = [subprocess.Popen([sys.executable, "-m", "launch.main", *CASE, f"--workdir={tmp_path / name}",
                              f"--coordinator_address=localhost:{_free_port()}", "--num_processes=2",
                              f"--process_id={process_id}", "--distributed_timeout=3"], cwd=REPO, env=_env(),
                             stderr=subprocess.PIPE, text=True) for name, process_id in (("a", 1), ("b", 0))]
    locked_logs = tmp_path / "locked_logs"
    locked_logs.mkdir()
    second_job = _start(str(locked), locked_logs, 2)
    outputs = [p.communicate(timeout=300)[1] for p in lone]
    codes = [p.wait(timeout=300) for p in second_job]
  assert [p.returncode for p in lone] == [2, 2] and codes == [2, 2], outputs
  nobody, alone = (_error_lines(o) for o in outputs)
  assert len(nobody) == 1 and nobody[0].startswith("error: --coordinator_address=localhost:") and (
      "no process 0 answered there within --distributed_timeout=3 s" in nobody[0]), outputs[0][-2000:]
  assert alone == [alone[0]] and "processes [1] of 2 did not reach the coordinator within" in alone[0], outputs[1]
  for i in range(2):
    refused = _error_lines(open(locked_logs / f"p{i}.log").read())
    assert len(refused) == 1 and f"{locked} is in use by another launch (pid" in refused[0], refused
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
  assert sorted(os.listdir(locked)) == [".lock"]


def test_each_process_reads_only_the_rows_its_devices_hold(tmp_path):
  """2 processes x 4 devices (tests/multihost_input_worker.py): of each streamed batch of 16, process 0 reads rows
  0-7 and process 1 rows 8-15, the batch being the one `batch_indices` gives for (seed, step) whatever the number of
  processes; of a padded extraction batch of 13, rows 0-7 and 8-15 (3 of them padding). Every assembled global array
  equals the whole batch read on one host."""
  port, outs = _free_port(), [str(tmp_path / f"p{i}.json") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "multihost_input_worker.py"), str(port),
                             str(i), "2", outs[i]], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  results = [json.load(open(out)) for out in outs]
  assert [r["right"] for r in results] == [[True] * 4] * 2
  batches = [train.batch_indices(3, step, 40, 16, 2) for step in range(3)]
  batches.append(next(inference.padded_batches(np.arange(27, 40), 13, 8))[0])
  for step, batch in enumerate(batches):
    assert results[0]["reads"][step] == batch[:8].tolist() and results[1]["reads"][step] == batch[8:].tolist()
  assert [len(r["reads"]) for r in results] == [4, 4]
