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


def _table(markdown: str) -> dict:
  """The dp section's table: model name -> its cells."""
  rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
  header, body = rows[0], rows[2:]
  return {cells[0].strip(): dict(zip([h.strip() for h in header], [c.strip() for c in cells])) for cells in body}


def test_the_dp_report_section_states_each_models_guarantee_leakage_and_bound(dp_run, tmp_path):
  """Every number of the dp section's table against a direct computation: AUC on the judged half (scikit-learn),
  the guarantee (summary.json), the empirical epsilon (audit/epsilon.py on the judged half), and Holm's adjustment
  of the DeLong p-values by a direct loop; its figure is a PNG."""
  from sklearn import metrics

  from mialth_jax.audit import epsilon as epsilon_lib
  from mialth_jax.experiments import verdict
  from mialth_jax.report import collect, dp as dp_report, sections

  run = collect.load_run(dp_run)
  out = sections.Output(str(tmp_path), str(tmp_path / "plots"))
  markdown = dp_report.section([run], out)
  table = _table(markdown)
  assert set(table) == {"dense", "dp_eps4", "dp_ticket_s50_eps4"}
  size = collect.main_size(run)
  scores = {name: io.read_npz(os.path.join(dp_run, "attacks", f"n{size}", "paper", f"{name}__{name}", "loss.npz"))
            for name in table}
  p_values = {}
  for name, cells in table.items():
    arrays, summary = scores[name], io.read_json(RunLayout(dp_run).summary(name))
    judged = verdict.judged_half(arrays["ids"])
    auc = metrics.roc_auc_score(arrays["is_member"][judged], arrays["scores"][judged])
    assert cells["ROC AUC, judged half [95 % CI]"].startswith(f"{auc:.3f} ")
    settings = epsilon_lib.settings(run.config)
    bound = epsilon_lib.empirical_epsilon(arrays["scores"], arrays["is_member"], judged,
                                          summary.get("delta", settings["delta"]), settings["confidence"], "split")
    assert cells["empirical ε lower bound"] == f"{bound['epsilon']:.3f}"
    if name != "dense":
      assert cells["DP guarantee ε (δ)"] == f"{summary['epsilon']:.3g} (δ 1e-05)"
      p_values[name] = verdict.judged_difference(scores["dense"], arrays).p_value
  ranked = sorted(p_values, key=p_values.get)
  running = 0.0
  for i, name in enumerate(ranked):
    running = max(running, min(1.0, (len(ranked) - i) * p_values[name]))
    assert table[name]["AUC − dense [95 % CI], Holm p"].endswith(f"p={running:.3g}")
  with open(tmp_path / "plots" / "dp_frontier.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
