"""Every zoo model a target: leave-one-out LiRA on a synthetic zoo reaches the analytic AUC, and the model-level
comparison of two synthetic zoos recovers their known AUC shift."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import metrics, reference as reference_lib, registry, stats
from mialth_jax.experiments import zoo_settings, zoo_targets, zoo_verdict
from mialth_jax.lottery import zoo
from mialth_jax.utils import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIRA_OFFLINE_FIXED = {"type": "lira", "online": False, "fixed_variance": True}


def synthetic_zoo(num_models: int, pool_size: int, shift: float, seed: int, keep=None,
                  example_means=None) -> reference_lib.ReferenceOutputs:
  """Two-class logits (phi, 0) with label 0, so LiRA's phi = log p_0 - log p_1 is exactly phi: OUT ~ N(mu_n, 1) and
  IN ~ N(mu_n + shift, 1), mu_n ~ N(0, 2^2) per example (a global threshold cannot separate what LiRA can)."""
  rng = np.random.default_rng(seed)
  keep = zoo.random_subsets(num_models, pool_size, pool_size // 2, seed) if keep is None else keep
  example_means = rng.normal(0, 2, pool_size) if example_means is None else example_means
  phi = example_means + shift * keep + rng.normal(0, 1, (num_models, pool_size))
  logits = np.stack([phi, np.zeros_like(phi)], axis=-1)[:, :, None, :]
  return reference_lib.ReferenceOutputs(ids=np.arange(pool_size), labels=np.zeros(pool_size, np.int32),
                                        logits=logits.astype(np.float32), keep=keep)


def analytic_auc(shift: float) -> float:
  """AUC of the likelihood-ratio test with known per-example Gaussians: members' phi - mu_n ~ N(shift, 1) against
  non-members' N(0, 1)."""
  return float(scipy_stats.norm.cdf(shift / np.sqrt(2)))


def test_leave_one_out_lira_reaches_the_analytic_auc_within_its_interval_over_targets():
  reference = synthetic_zoo(256, 500, shift=1.0, seed=0)  # 255 references: each per-example median is close to mu_n
  targets, _ = zoo_targets.leave_one_out(reference, LIRA_OFFLINE_FIXED)
  aucs = np.array([metrics.roc_auc(*targets.row(i)) for i in range(len(targets.names))])
  low, high = scipy_stats.t.interval(0.95, len(aucs) - 1, aucs.mean(), scipy_stats.sem(aucs))
  assert low <= analytic_auc(1.0) <= high, (low, high, analytic_auc(1.0))
  # A global threshold on phi ignores mu_n and sits far lower: the interval tells the two apart.
  global_auc = np.mean([metrics.roc_auc(np.asarray(reference.logits[s, :, 0, 0], np.float64), reference.keep[s])
                        for s in range(256)])
  assert high < analytic_auc(1.0) + 0.01 and global_auc < low - 0.1
  assert np.array_equal(targets.member, reference.keep) and list(targets.names[:2]) == ["zoo_0", "zoo_1"]


def test_the_run_target_joins_calibrated_on_every_zoo_model():
  reference = synthetic_zoo(8, 200, shift=1.0, seed=1)
  own = synthetic_zoo(1, 200, shift=1.0, seed=2)  # another model, its own membership
  targets, _ = zoo_targets.leave_one_out(reference, LIRA_OFFLINE_FIXED, (own.logits[0], own.keep[0]))
  assert targets.names[-1] == zoo_targets.TARGET and np.array_equal(targets.member[-1], own.keep[0])
  direct, _ = zoo_targets.score_target(LIRA_OFFLINE_FIXED, reference, own.logits[0], own.keep[0], exclude=None)
  np.testing.assert_array_equal(targets.scores[-1], direct)


def _write_zoo_results(tmp_path, shifts: dict, attacks: dict, num_models=64, pool_size=500):
  """A run folder holding leave-one-out results of synthetic zoos {name: shift}, each of the kind its name starts with
  (dense, ticket, imp); ticket s shares dense s's members."""
  layout = layout_lib.RunLayout(str(tmp_path))
  keep = zoo.random_subsets(num_models, pool_size, pool_size // 2, 0)
  means = np.random.default_rng(9).normal(0, 2, pool_size)
  for i, (kind, shift) in enumerate(shifts.items()):
    reference = synthetic_zoo(num_models, pool_size, shift, seed=10 + i, keep=keep, example_means=means)
    io.write_json(layout.zoo(kind, "summary.json"), {"name": kind, "kind": kind.split("_")[0],
                                                     "sparsity": 0.0 if kind == "dense" else 0.8})
    for name, config in attacks.items():
      zoo_targets.record(layout, kind, name, config, *zoo_targets.leave_one_out(reference, config))
  return layout


def _judged(workdir: str) -> dict:
  """{metric: ModelLevel} with Holm-adjusted p-values over the run's comparisons."""
  found = zoo_verdict.judge(workdir)
  return {m.metric: m.adjusted(p) for m, p in zip(found, stats.holm([m.p_value for m in found]))}


def test_the_model_level_comparison_recovers_a_known_auc_shift(tmp_path):
  layout = _write_zoo_results(tmp_path, {"dense": 1.0, "ticket_s80": 1.4}, {"lira_offline_fixed": LIRA_OFFLINE_FIXED})
  found = _judged(layout.workdir)
  auc = found["roc_auc"]
  expected = analytic_auc(1.4) - analytic_auc(1.0)  # 0.079
  assert auc.pairs == 64 and auc.comparison["ci"][0] <= expected <= auc.comparison["ci"][1]
  assert auc.direction == "higher" and auc.p_adjusted <= 2 * min(m.comparison["p_value"] for m in found.values())
  assert "ticket_s80 vs dense over 64 model pairs: leakage higher" in auc.line()


def test_an_imp_round_is_compared_with_dense_zoo_pair_by_zoo_pair(tmp_path):
  layout = _write_zoo_results(tmp_path, {"dense": 1.0, "imp_r1": 1.4}, {"lira_offline_fixed": LIRA_OFFLINE_FIXED},
                              num_models=16, pool_size=300)
  [auc] = [m for m in zoo_verdict.judge(layout.workdir) if m.metric == "roc_auc"]
  per_pair = [[roc_auc_score(member, scores) for scores, member in map(targets.row, range(16))]
              for targets in (zoo_targets.read(layout, k, "lira_offline_fixed") for k in ("imp_r1", "dense"))]
  assert auc.ticket == "imp_r1" and auc.pairs == 16
  assert auc.comparison["mean_difference"] == pytest.approx(np.mean(np.subtract(*per_pair)), abs=1e-12)


def test_no_shift_gives_no_detectable_difference(tmp_path):
  layout = _write_zoo_results(tmp_path, {"dense": 1.0, "ticket_s80": 1.0}, {"lira_offline_fixed": LIRA_OFFLINE_FIXED},
                              num_models=16, pool_size=300)
  found = _judged(layout.workdir)
  assert found["roc_auc"].direction == "no detectable difference"


def test_each_pair_is_judged_by_the_attack_strongest_on_the_other_pairs():
  dense_auc = np.array([[0.90, 0.60, 0.60],    # attack 0: strong on pair 0 only
                        [0.70, 0.70, 0.70]])   # attack 1: steady
  # Pair 0's own 0.90 would pick attack 0 for it; on the other pairs attack 1 is stronger (0.70 vs 0.60).
  np.testing.assert_array_equal(zoo_verdict.chosen_per_pair(dense_auc), [1, 0, 0])
  # Pair 1 and 2: attack 0 averages (0.90 + 0.60) / 2 = 0.75 over the others, above attack 1's 0.70.
  brute = [int(np.argmax(np.delete(dense_auc, p, axis=1).mean(axis=1))) for p in range(3)]
  assert brute == [1, 0, 0]


@pytest.mark.parametrize("level", [0.01, 0.001])
def test_pooled_tpr_is_measured_only_with_enough_nonmembers(level):
  reference = synthetic_zoo(16, 500, shift=1.0, seed=3)
  targets, _ = zoo_targets.leave_one_out(reference, LIRA_OFFLINE_FIXED)
  summary = zoo_targets.summarise(targets)
  one = summary["per_target"]["zoo_0"][f"tpr_at_fpr_{level}"]
  pooled = summary["pooled"][f"tpr_at_fpr_{level}"]
  population = zoo_targets.population_half(np.arange(500))
  scored_nonmembers = (~reference.keep & ~population).sum(axis=1)  # the rest of the non-members are the population
  assert one["num_nonmembers"] == scored_nonmembers[0] and pooled["num_nonmembers"] == scored_nonmembers.sum()
  assert abs(scored_nonmembers.mean() - 125) < 10
  assert one["estimable"] == (one["num_nonmembers"] * level >= 10)
  assert pooled["estimable"] == (pooled["num_nonmembers"] * level >= 10)


def test_the_reference_count_curve_reaches_leave_one_out_with_every_other_model():
  reference = synthetic_zoo(9, 300, shift=1.0, seed=4)
  configs = {"offline_fixed": LIRA_OFFLINE_FIXED, "online": {"type": "lira"}}
  curve = zoo_targets.by_reference_count(reference, configs, (1, 2, 8), seed=0)
  targets, _ = zoo_targets.leave_one_out(reference, LIRA_OFFLINE_FIXED)
  every_other = np.mean([metrics.roc_auc(*targets.row(i)) for i in range(len(targets.names))])
  assert curve["offline_fixed"]["8"]["roc_auc"] == pytest.approx(every_other, abs=1e-12)
  assert curve["offline_fixed"]["2"]["roc_auc"] < curve["offline_fixed"]["8"]["roc_auc"]  # fewer, noisier references
  assert "2 or more" in curve["online"]["1"]["error"]  # one model cannot give an example both IN and OUT Gaussians


def test_rmia_scores_members_and_nonmembers_alike_when_their_signals_are_equal():
  """Every model gives example n the logits (2, 0) if n is even, (0, 0) if odd: offline RMIA's LR takes two values,
  the even examples' above the odd ones'. An even example's score is then the share of odd examples in its
  population, the same for a member and a non-member. With x among its own population z, a non-member would be
  divided by |z| - 1 and a member by |z|, and every tie would break toward the non-members."""
  base = synthetic_zoo(8, 400, shift=0.0, seed=5)
  even = np.arange(400) % 2 == 0
  logits = np.zeros_like(base.logits)
  logits[:, even, :, 0] = 2.0
  two_level = reference_lib.ReferenceOutputs(base.ids, base.labels, logits, base.keep)
  targets, _ = zoo_targets.leave_one_out(two_level, {"type": "rmia", "online": False, "a": 0.5, "gamma": 1.0})
  for i in range(len(targets.names)):
    scored = ~np.isnan(targets.scores[i])
    population = ~two_level.keep[i] & zoo_targets.population_half(two_level.ids)
    assert not (scored & population).any() and (scored | population).all()
    values = targets.scores[i, scored & even]
    assert np.all(values == (population & ~even).sum() / population.sum())  # members and non-members alike
    assert metrics.roc_auc(*targets.row(i)) == pytest.approx(0.5, abs=0.1)


def test_compare_zoo_attacks_measures_each_setting_leave_one_out_and_refuses_a_missing_zoo(tmp_path):
  reference = synthetic_zoo(6, 200, shift=1.0, seed=6)
  [row] = zoo_settings.measure(reference, {"fixed": LIRA_OFFLINE_FIXED})
  targets, _ = zoo_targets.leave_one_out(reference, LIRA_OFFLINE_FIXED)
  assert row["auc_mean"] == pytest.approx(np.mean([metrics.roc_auc(*targets.row(i)) for i in range(6)]))
  grid = zoo_settings.rmia_grid()
  assert len(grid) == 3 + 3 * 2 * 2 * 2 and all(registry.make_attack(dict(c)) for c in grid.values())
  done = subprocess.run([sys.executable, "-m", "launch.compare_zoo_attacks", f"--workdir={tmp_path}"], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: --workdir: ")
