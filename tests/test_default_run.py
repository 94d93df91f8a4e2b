"""The README's main command, run as a user runs it: the default config on digits, end to end."""
import os
import subprocess
import sys
import time

import pytest

from mialth_jax.utils import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(workdir, **kwargs):
  # As the README's user runs it: one CPU device, JAX's default PRNG (the suite sets the faster rbg).
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_DEFAULT_PRNG_IMPL")}
  return subprocess.Popen([sys.executable, "-m", "launch.main", "--config=configs/default.py", f"--workdir={workdir}"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
  """Starts the default run and, while it holds the workdir, a second launch on the same workdir."""
  workdir = str(tmp_path_factory.mktemp("default") / "run")
  first = _launch(workdir)
  deadline = time.time() + 120
  while not os.path.exists(os.path.join(workdir, "config.json")) and time.time() < deadline:
    time.sleep(0.5)
  second = _launch(workdir)
  _, second_err = second.communicate(timeout=300)
  out, err = first.communicate(timeout=900)
  assert first.returncode == 0, err[-3000:]
  return workdir, err, (second.returncode, second_err), out


def test_dense_model_is_accurate_and_tickets_are_exactly_sparse(default_run):
  summary = io.read_json(os.path.join(default_run[0], "lottery_summary.json"))
  assert set(summary) == {"dense", "ticket_s50", "ticket_s80", "ticket_s90"}
  assert summary["dense"]["test_accuracy"] > 0.9
  for name, sparsity in (("ticket_s50", 0.5), ("ticket_s80", 0.8), ("ticket_s90", 0.9)):
    report = io.read_json(os.path.join(default_run[0], "models", name, "sparsity_report.json"))
    assert report["pruned"] == round(sparsity * report["total"])
    assert summary[name]["test_accuracy"] > 0.85


def test_every_documented_artefact_is_written(default_run):
  workdir = default_run[0]
  expected = ["config.json", "splits.npz", "w0", "lottery_summary.json", "attacks/summary.json",
              "attacks/n1796/split.npz"]
  for model in ("dense", "ticket_s50", "ticket_s80", "ticket_s90"):
    expected += [f"models/{model}/{item}" for item in ("mask", "final", "metrics.jsonl", "sparsity_report.json",
                                                       "summary.json")]
    expected += [f"confidences/{model}.npz"]
    expected += [f"attacks/n1796/paper/{model}__{model}/{attack}.{ext}" for attack in ("mlp", "sklearn_mlp", "loss")
                 for ext in ("json", "npz")]
  missing = [p for p in expected if not os.path.exists(os.path.join(workdir, p))]
  assert not missing
  assert len(io.read_json(os.path.join(workdir, "attacks", "summary.json"))) == 12


def test_progress_shows_rate_and_eta(default_run):
  err = default_run[1]
  assert "img/s" in err and "ETA" in err and "forward FLOPs per image" in err
  # The whole pipeline's progress, not only each model's: models done and the time the others need.
  for done in (1, 2, 3):
    assert f"{done} of 4 models done; the other {4 - done} need about " in err


def test_second_launch_on_a_busy_workdir_is_refused(default_run):
  returncode, err = default_run[2]
  assert returncode == 2
  assert "is in use by another launch" in err


def test_the_readme_quotes_the_verdict_this_run_prints(default_run):
  """The README's verdict line is this command's output on this machine (one CPU device), not typed by hand."""
  readme = open(os.path.join(REPO, "README.md")).read()
  quoted = readme.split("**The verdict.**", 1)[1].split("\n    ", 1)[1].split("\n", 1)[0]
  assert quoted.startswith("ticket_s80 vs dense") and quoted in default_run[3].splitlines()
