"""DP-SGD end to end through the real command line (tests/dp_case.py, digits): the DP model and its DP ticket finish,
are attacked, and hold in summary.json the epsilon that dp-accounting computes directly from the run's recorded
sampling, noise and steps (the ticket's composing both trainings); bad DP settings stop the launch with one `error:`
line naming the field, leaving no folder."""
import os
import subprocess
import sys

import dp_accounting
import pytest

from mialth_jax.layout import RunLayout
from mialth_jax.utils import io

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(workdir, *overrides):
  return subprocess.run([sys.executable, "-m", "launch.main", "--config=tests/dp_case.py", f"--workdir={workdir}",
                         *overrides], cwd=REPO, capture_output=True, text=True, timeout=1200)


def _direct_epsilon(summary, steps_per_phase):
  """dp-accounting's PLD accountant on the truncated Poisson-subsampled Gaussian, from the summary's numbers."""
  accountant = dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                                               value_discretization_interval=1e-4)
  event = dp_accounting.TruncatedSubsampledGaussianDpEvent(summary["members"], summary["expected_batch_size"] /
                                                           summary["members"], summary["max_batch_size"],
                                                           summary["noise_multiplier"])
  for steps in steps_per_phase:
    accountant.compose(event, steps)
  return accountant.get_epsilon(summary["delta"])


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dp") / "run")
  result = _launch(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_the_dp_model_holds_dp_accountings_epsilon_at_its_target(dp_run):
  layout = RunLayout(dp_run)
  summary = io.read_json(layout.summary("dp_eps4"))
  assert summary["members"] == 256 and summary["sampling_rate"] == 32 / 256 and summary["steps"] == 6
  assert summary["delta"] == 1e-5 < 1 / 256 and summary["clip_norm"] == 1.0 and summary["target_epsilon"] == 4.0
  assert summary["epsilon"] == _direct_epsilon(summary, [6])
  assert 3.5 < summary["epsilon"] <= 4.0  # calibrated: within the calibration's tolerance below the target
  assert summary["epsilon_covers"] == "the weights"


def test_the_dp_ticket_composes_its_mask_sources_training_with_its_own(dp_run):
  layout = RunLayout(dp_run)
  source, ticket = (io.read_json(layout.summary(name)) for name in ("dp_eps4", "dp_ticket_s50_eps4"))
  assert ticket["pruned_from"] == "dp_eps4" and ticket["sparsity"] == pytest.approx(0.5, abs=1e-3)
  assert ticket["noise_multiplier"] == source["noise_multiplier"]
  assert ticket["privacy_phases"] == [[source["noise_multiplier"], 6], [source["noise_multiplier"], 6]]
  assert ticket["epsilon"] == pytest.approx(_direct_epsilon(ticket, [6, 6]), rel=1e-12)
  assert ticket["epsilon"] > source["epsilon"]


def test_every_model_is_attacked(dp_run):
  attacked = {r["target"] for r in io.read_json(RunLayout(dp_run).attacks_summary)}
  assert attacked == {"dense", "dp_eps4", "dp_ticket_s50_eps4"}


@pytest.mark.parametrize("override,message", [
    ("--config.defences.dp_sgd.delta=0.005", "defences.dp_sgd.delta=0.005 must be below 1 / members = 1/256"),
    ("--config.model.norm=batch", "model.norm='batch': DP-SGD models (dp, dp_ticket) need model.norm='group'"),
    ("--config.defences.dp_sgd.clip_norm=0", "defences.dp_sgd.clip_norm must be > 0, got 0"),
])
def test_bad_dp_settings_stop_the_launch_with_one_line(tmp_path, override, message):
  workdir = str(tmp_path / "refused")
  result = _launch(workdir, override)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
  assert not os.path.exists(workdir)
