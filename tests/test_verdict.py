"""Did pruning change leakage? The paired bootstrap against a direct computation, the verdict on runs whose answer is
known (a memorising dense model against a ticket that cannot leak, a model against itself), and the rule that the
attack is chosen on other examples than those it is judged on."""
import contextlib
import io as stdio
import logging
import os
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_attack_protocols import overfit_config

from mialth_jax.attacks import compare, stats
from mialth_jax.experiments import launch, verdict
from mialth_jax.layout import RunLayout
from mialth_jax.utils import io


def _case(n=60, seed=3):
  """Scores of two attacks on the same n examples, the second separating members far better; ties included."""
  rng = np.random.default_rng(seed)
  member = np.arange(n) < n // 2
  base = np.round(rng.normal(size=n) + 0.3 * member, 1)   # rounded: tied scores
  other = np.round(rng.normal(size=n) + 2.0 * member, 1)
  return member, base, base > 0.2, other, other > 0.5


def test_paired_bootstrap_equals_a_direct_computation():
  member, base, base_pred, other, other_pred = _case()
  num_bootstrap, seed = 300, 7
  got = compare.paired_difference(member, base, base_pred, other, other_pred, num_bootstrap=num_bootstrap, seed=seed)
  expected_auc = roc_auc_score(member, other) - roc_auc_score(member, base)
  assert got["roc_auc"].difference == pytest.approx(expected_auc, abs=1e-12)
  assert got["accuracy"].difference == pytest.approx(np.mean(other_pred == member) - np.mean(base_pred == member))
  # The same resamples drawn directly (one index draw per resample, applied to both models), metrics from sklearn.
  draws = np.random.default_rng(seed).integers(0, len(member), size=(num_bootstrap, len(member)))
  auc = np.array([roc_auc_score(member[i], other[i]) - roc_auc_score(member[i], base[i]) for i in draws])
  acc = np.array([np.mean(other_pred[i] == member[i]) - np.mean(base_pred[i] == member[i]) for i in draws])
  for name, direct in (("roc_auc", auc), ("accuracy", acc)):
    assert got[name].ci == pytest.approx(tuple(np.percentile(direct, [2.5, 97.5])), abs=1e-12)
    side = min((direct <= 0).sum(), (direct >= 0).sum())
    assert got[name].p_value == pytest.approx(min(1.0, 2 * (side + 1) / (num_bootstrap + 1)))
  assert got["roc_auc"].direction == "higher" and got["roc_auc"].ci[0] > 0


def test_identical_scores_show_no_difference():
  member, base, base_pred, _, _ = _case()
  got = compare.paired_difference(member, base, base_pred, base, base_pred, num_bootstrap=200)
  for d in got.values():
    assert d.difference == 0.0 and d.ci == (0.0, 0.0) and d.p_value == 1.0
    assert d.direction == "no detectable difference"


class _Lines(logging.Handler):
  def __init__(self):
    super().__init__()
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """The overfitted digits case: the dense model memorises its 150 members (train accuracy 1, test loss far above
  train loss); the ticket keeps 0.01 % of its weights, too few to carry a signal through the network, so its outputs
  are the same for every image and no label-free attack can tell members from non-members."""
  workdir = str(tmp_path_factory.mktemp("verdict") / "overfit")
  config = overfit_config()
  config.lottery.sparsities = (0.9999,)
  config.attacks.protocols = ("paper",)
  config.attacks.models = {"confidence": {"type": "threshold_confidence"}, "entropy": {"type": "threshold_entropy"}}
  printed, logged, absl_logger = stdio.StringIO(), _Lines(), logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.addHandler(logged)
  absl_logger.setLevel(logging.INFO)
  try:
    with contextlib.redirect_stdout(printed):
      results = launch.run(config, workdir)
  finally:
    absl_logger.removeHandler(logged)
    absl_logger.setLevel(level)
  return workdir, config, results, printed.getvalue().splitlines(), logged.lines


def test_a_memorising_dense_model_leaks_more_than_a_ticket_that_cannot(run):
  workdir, config, _, printed, _ = run
  judgement = verdict.judge(workdir).adjusted()
  [v] = judgement.verdicts
  dense, ticket = (io.read_npz(RunLayout(workdir).result(280, "paper", m, m, v.attack)[1])
                   for m in ("dense", "ticket_s99.99"))
  judged = verdict.judged_half(dense["ids"])
  assert (v.ticket, v.dense, v.size, v.num_examples) == ("ticket_s99.99", "dense", 280, judged.sum())
  assert 50 < judged.sum() < 90  # about half of the 140 attack-test examples
  assert len(np.unique(ticket["scores"])) == 1  # why it cannot leak: one output for every image
  assert v.roc_auc.base == pytest.approx(roc_auc_score(dense["is_member"][judged], dense["scores"][judged]))
  assert v.roc_auc.base > 0.65 and v.roc_auc.other == 0.5
  assert v.direction == "lower" and v.roc_auc.ci[1] < 0 and v.p_adjusted == v.p_value < 0.01  # one comparison
  line = v.line()
  assert line.startswith("ticket_s99.99 vs dense (this pair of models): leakage lower (AUC 0.500 vs ")
  assert f"attack {v.attack}, chosen on the other half" in line and "[unadjusted 95 % CI -" in line
  # The run printed the same verdict after its progress lines.
  assert printed[-len(judgement.lines):] == judgement.lines and printed[-2].startswith("Did pruning change leakage?")


def test_a_model_against_itself_shows_no_detectable_difference(run, tmp_path):
  workdir, config, _, _, _ = run
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("checkpoints", "final", "mask", "w0", "confidences"))
  layout = RunLayout(copy)
  for attack in config.attacks.models:  # the ticket's results become the dense model's, example for example
    shutil.copyfile(layout.result(280, "paper", "dense", "dense", attack)[1],
                    layout.result(280, "paper", "ticket_s99.99", "ticket_s99.99", attack)[1])
  [v] = verdict.judge(copy).adjusted().verdicts
  assert v.direction == "no detectable difference" and v.roc_auc.ci[0] <= 0 <= v.roc_auc.ci[1]
  assert v.roc_auc.difference == 0.0 and v.roc_auc.p_value == 1.0
  assert "ticket_s99.99 vs dense (this pair of models): no detectable difference (AUC" in v.line()
  assert "DeLong p=1," in v.line()


def test_the_log_counts_attack_test_examples(run):
  _, _, results, _, logged = run
  lines = [l for l in logged if l.startswith("paper ")]
  assert len(lines) == len(results) == 4
  assert all(" attack set n280, 140 attack-test examples: " in l for l in lines), lines


def test_no_verdict_without_tickets_says_why(run, tmp_path):
  workdir, _, _, _, _ = run
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("ticket_s99.99", "confidences", "w0"))
  judgement = verdict.judge(copy)
  assert judgement.verdicts == [] and judgement.lines == [f"no verdict: {copy} holds no finished ticket"]
  assert os.path.exists(RunLayout(copy).summary("dense"))


def _fake_run(folder: str, scores: dict) -> RunLayout:
  """A run folder with finished dense / ticket models and paper-protocol results {(model, attack): scores}, on 400
  attack-test examples (ids 0..399, the first 200 members)."""
  layout = RunLayout(folder)
  for name, kind, sparsity in (("dense", "dense", 0.0), ("ticket_s80", "ticket", 0.8)):
    io.write_json(layout.summary(name), {"name": name, "kind": kind, "sparsity": sparsity})
  ids, member = np.arange(400), np.arange(400) < 200
  for (model, attack), values in scores.items():
    json_path, npz_path = layout.result(800, "paper", model, model, attack)
    io.write_npz(npz_path, ids=ids, scores=values, is_member=member, predicted=values > np.median(values))
    io.write_json(json_path, {"protocol": "paper", "source": model, "target": model, "attack": attack, "size": 800})
  return layout


def test_the_attack_is_chosen_on_other_examples_than_those_it_is_judged_on(tmp_path):
  """`lucky` separates the dense model's members on the judged half only (by chance, as the best of many attacks can);
  `steady` is as good on both halves and on both models. Choosing on the judged examples (or on all of them) picks
  `lucky` and finds the ticket "lower"; choosing on the selection half picks `steady`: no detectable difference."""
  rng = np.random.default_rng(0)
  member = np.arange(400) < 200
  judged = verdict.judged_half(np.arange(400))
  lucky_dense = rng.normal(size=400) + 3.0 * (member & judged)
  steady = rng.normal(size=400) + 0.8 * member
  layout = _fake_run(str(tmp_path / "run"), {("dense", "lucky"): lucky_dense, ("ticket_s80", "lucky"): rng.normal(
      size=400), ("dense", "steady"): steady, ("ticket_s80", "steady"): steady + rng.normal(0, 0.05, 400)})
  results = verdict.own_output_results(layout)
  summaries = layout.summaries()
  on_judged = lambda r: stats.delong_auc(*(io.read_npz(r["scores_path"])[k][judged]  # noqa: E731
                                           for k in ("scores", "is_member")))[0]
  on_all = lambda r: stats.delong_auc(*(io.read_npz(r["scores_path"])[k] for k in ("scores", "is_member")))[0]
  for old_rule in (on_judged, on_all):
    assert verdict.choose(summaries, results, old_rule).attack("ticket_s80") == ("paper", "lucky")
  lucky = verdict.judged_difference(*(io.read_npz(layout.result(800, "paper", m, m, "lucky")[1])
                                      for m in ("dense", "ticket_s80")))
  assert verdict.direction(lucky.difference, lucky.p_value) == "lower"  # the verdict the old rule would give
  [v] = verdict.judge(layout.workdir).adjusted().verdicts
  assert v.attack == "steady" and v.direction == "no detectable difference"
