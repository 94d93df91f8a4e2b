"""attacks/stats.py against independent computations: scipy's exact binomial intervals and tests, a loop over
thresholds, sklearn's AUC, DeLong's placement values summed pair by pair, Holm's definition and scipy's paired
t-test."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics as skm

from mialth_jax.attacks import stats
from mialth_jax.attacks.inputs import AttackError

COUNTS = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (17, 250), (249, 250), (500, 1000)]


@pytest.mark.parametrize("k,n", COUNTS)
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_clopper_pearson_matches_scipy_exact_interval(k, n, alpha):
  expected = scipy_stats.binomtest(k, n).proportion_ci(1 - alpha, method="exact")
  lo, hi = stats.clopper_pearson(k, n, alpha)
  assert lo == pytest.approx(expected.low, abs=1e-12) and hi == pytest.approx(expected.high, abs=1e-12)
  assert (lo == 0) == (k == 0) and (hi == 1) == (k == n)


@pytest.mark.parametrize("k,n,alpha", [(3, 2, 0.05), (-1, 5, 0.05), (0, 0, 0.05), (1.5, 5, 0.05), (1, 5, 1.0)])
def test_clopper_pearson_refuses_bad_counts(k, n, alpha):
  with pytest.raises(AttackError, match="expected"):
    stats.clopper_pearson(k, n, alpha)


def _loop_tpr_at_fpr(scores, is_member, level):
  """(tpr, fpr) at the lowest threshold t with FPR(scores >= t) <= level, trying every distinct score and +inf."""
  best = (0.0, 0.0)
  for threshold in sorted(set(scores.tolist()) | {math.inf}, reverse=True):
    flagged = scores >= threshold
    fpr = (flagged & ~is_member).sum() / (~is_member).sum()
    if fpr <= level:
      best = ((flagged & is_member).sum() / is_member.sum(), fpr)
  return best


def _hand_case():
  """6 members, 10 non-members; at 0.8 two members tie with a non-member, so they enter the ROC curve together."""
  members = [0.9, 0.8, 0.8, 0.7, 0.5, 0.3]
  nonmembers = [0.8, 0.6, 0.4, 0.2, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0]
  return np.array(members + nonmembers), np.array([True] * 6 + [False] * 10)


@pytest.mark.parametrize("level,tpr,fpr", [(0.05, 1 / 6, 0.0), (0.1, 4 / 6, 0.1), (0.15, 4 / 6, 0.1),
                                           (0.2, 5 / 6, 0.2)])
def test_tpr_at_fpr_hand_case_with_ties(level, tpr, fpr):
  scores, is_member = _hand_case()
  result = stats.tpr_at_fpr(scores, is_member, level)
  # Hand: >= 0.9 gives TP 1, FP 0; >= 0.8 TP 3, FP 1; >= 0.7 TP 4, FP 1; >= 0.6 TP 4, FP 2; >= 0.5 TP 5, FP 2.
  assert (result["tpr"], result["fpr"]) == pytest.approx((tpr, fpr))
  assert (result["tpr"], result["fpr"]) == pytest.approx(_loop_tpr_at_fpr(scores, is_member, level))
  expected_ci = scipy_stats.binomtest(round(tpr * 6), 6).proportion_ci(0.95, method="exact")
  assert result["ci"] == pytest.approx((expected_ci.low, expected_ci.high))
  assert (result["num_members"], result["num_nonmembers"]) == (6, 10)


@pytest.mark.parametrize("level", [0.001, 0.01, 0.05, 0.3])
def test_tpr_at_fpr_matches_the_loop_on_many_ties(level):
  rng = np.random.default_rng(3)
  is_member = rng.random(1500) < 0.4
  scores = np.round(rng.normal(size=1500) + 0.8 * is_member, 1)
  result = stats.tpr_at_fpr(scores, is_member, level)
  assert (result["tpr"], result["fpr"]) == pytest.approx(_loop_tpr_at_fpr(scores, is_member, level))


def _case(num_members, num_nonmembers, seed=0):
  rng = np.random.default_rng(seed)
  is_member = np.r_[np.ones(num_members, bool), np.zeros(num_nonmembers, bool)]
  return rng.normal(size=len(is_member)) + 2.0 * is_member, is_member


def test_the_count_rule_and_its_format():
  assert stats.needed_nonmembers(0.001) == 10_000 and stats.needed_nonmembers(0.01) == 1_000
  few = stats.tpr_at_fpr(*_case(200, 449), 0.001)
  assert not few["estimable"] and few["needed_nonmembers"] == 10_000
  assert stats.format_tpr(few) == "- (needs >= 10,000 non-members, has 449)"
  enough = stats.tpr_at_fpr(*_case(200, 10_000), 0.001)
  assert enough["estimable"] and enough["num_nonmembers"] == 10_000
  lo, hi = enough["ci"]
  assert stats.format_tpr(enough) == f"{enough['tpr']:.3f} [{lo:.3f}, {hi:.3f}]"
  assert 0 < enough["tpr"] < 1 and lo < enough["tpr"] < hi
  # The edge at level 0.01: 1,000 non-members expect 10 false positives, 999 fewer.
  assert stats.tpr_at_fpr(*_case(50, 1000), 0.01)["estimable"]
  assert not stats.tpr_at_fpr(*_case(50, 999), 0.01)["estimable"]


def _psi(members, nonmembers):
  """[M, N] 1 where the member scores higher, 0.5 on a tie, 0 below."""
  return (members[:, None] > nonmembers[None]) + 0.5 * (members[:, None] == nonmembers[None])


def _direct_components(scores, is_member):
  """DeLong's structural components V10 [M] and V01 [N] from every member / non-member pair."""
  psi = _psi(scores[is_member], scores[~is_member])
  return psi.mean(axis=1), psi.mean(axis=0)


def _tied_pair(seed, n=300):
  rng = np.random.default_rng(seed)
  is_member = rng.random(n) < 0.45
  shared = rng.normal(size=n)
  scores_a = np.round(shared + 0.6 * is_member + 0.5 * rng.normal(size=n), 1)  # rounding makes many ties
  scores_b = np.round(shared + 0.9 * is_member + 0.5 * rng.normal(size=n), 1)
  return is_member, scores_a, scores_b


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_auc_matches_sklearn_and_the_pairwise_variance(seed):
  is_member, scores, _ = _tied_pair(seed)
  auc, variance = stats.delong_auc(scores, is_member)
  assert auc == pytest.approx(skm.roc_auc_score(is_member, scores), abs=1e-12)
  v10, v01 = _direct_components(scores, is_member)
  m, n = len(v10), len(v01)
  s10 = ((v10 - v10.mean()) ** 2).sum() / (m - 1)
  s01 = ((v01 - v01.mean()) ** 2).sum() / (n - 1)
  assert variance == pytest.approx(s10 / m + s01 / n, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_paired_matches_the_direct_covariance(seed):
  is_member, scores_a, scores_b = _tied_pair(seed)
  result = stats.delong_paired(is_member, scores_a, scores_b)
  (a10, a01), (b10, b01) = _direct_components(scores_a, is_member), _direct_components(scores_b, is_member)
  cov = lambda x, y: ((x - x.mean()) * (y - y.mean())).sum() / (len(x) - 1)
  m, n = len(a10), len(a01)
  s10 = np.array([[cov(a10, a10), cov(a10, b10)], [cov(b10, a10), cov(b10, b10)]])
  s01 = np.array([[cov(a01, a01), cov(a01, b01)], [cov(b01, a01), cov(b01, b01)]])
  contrast = np.array([-1.0, 1.0])
  variance = contrast @ (s10 / m + s01 / n) @ contrast
  difference = skm.roc_auc_score(is_member, scores_b) - skm.roc_auc_score(is_member, scores_a)
  assert result["se"] ** 2 == pytest.approx(variance, rel=1e-10)
  assert result["difference"] == pytest.approx(difference, abs=1e-12)
  assert result["auc_b"] - result["auc_a"] == pytest.approx(result["difference"], abs=1e-15)
  z = difference / math.sqrt(variance)
  assert result["z"] == pytest.approx(z, rel=1e-9)
  assert result["p_value"] == pytest.approx(2 * (1 - scipy_stats.norm.cdf(abs(z))), rel=1e-9)
  half = 1.959963984540054 * math.sqrt(variance)
  assert result["ci"] == pytest.approx((difference - half, difference + half), rel=1e-9)


def test_delong_paired_on_identical_scores():
  is_member, scores, _ = _tied_pair(0)
  result = stats.delong_paired(is_member, scores, scores.copy())
  assert (result["difference"], result["se"], result["z"], result["p_value"]) == (0.0, 0.0, 0.0, 1.0)
  assert result["ci"] == (0.0, 0.0)


def test_delong_paired_p_values_are_uniform_under_the_null():
  """Two correlated score sets of the same AUC on 200 examples, 300 times: about 5 % of p-values below 0.05."""
  rng = np.random.default_rng(7)
  is_member = np.arange(200) < 100
  p_values = []
  for _ in range(300):
    shared = rng.normal(size=(200,))
    scores_a = shared + 0.7 * rng.normal(size=200) + 0.8 * is_member
    scores_b = shared + 0.7 * rng.normal(size=200) + 0.8 * is_member
    p_values.append(stats.delong_paired(is_member, scores_a, scores_b)["p_value"])
  p_values = np.array(p_values)
  assert 0.02 <= (p_values < 0.05).mean() <= 0.09
  assert 0.4 <= (p_values < 0.5).mean() <= 0.6


def test_delong_refuses_too_few_examples_and_mismatched_scores():
  with pytest.raises(AttackError, match=">= 2 members"):
    stats.delong_auc(np.array([0.1, 0.2, 0.3]), np.array([True, False, False]))
  with pytest.raises(AttackError, match="is_member: expected shape"):
    stats.delong_paired(np.array([True, True, False, False]), np.zeros(4), np.zeros(5))


def _loop_holm(p_values):
  """Textbook Holm: sort the m non-NaN p-values, multiply the i-th smallest (i from 0) by m - i, running max, cap 1."""
  p_values = list(p_values)
  valid = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
  adjusted, running = [math.nan] * len(p_values), 0.0
  for rank, (p, i) in enumerate(valid):
    running = max(running, (len(valid) - rank) * p)
    adjusted[i] = min(1.0, running)
  return adjusted


def test_holm_hand_case():
  # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06.
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_the_loop_with_nan(seed):
  rng = np.random.default_rng(seed)
  p_values = rng.random(12) ** 3
  p_values[rng.random(12) < 0.25] = np.nan
  adjusted = stats.holm(p_values)
  np.testing.assert_allclose(adjusted, _loop_holm(p_values), rtol=1e-12)
  assert np.array_equal(np.isnan(adjusted), np.isnan(p_values))
  assert len(stats.holm([])) == 0


def test_holm_refuses_values_outside_zero_one():
  with pytest.raises(AttackError, match=r"in \[0, 1\]"):
    stats.holm([0.2, 1.5])


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_paired_over_models_matches_scipy_ttest_rel(alpha):
  rng = np.random.default_rng(4)
  values_a = rng.normal(0.6, 0.02, size=6)
  values_b = values_a + rng.normal(0.01, 0.01, size=6)
  result = stats.paired_over_models(values_b, values_a, alpha)
  expected = scipy_stats.ttest_rel(values_b, values_a)
  assert result["t"] == pytest.approx(expected.statistic, rel=1e-10)
  assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)
  differences = values_b - values_a
  mean, sd = differences.mean(), differences.std(ddof=1)
  half = scipy_stats.t.ppf(1 - alpha / 2, 5) * sd / math.sqrt(6)
  assert result["ci"] == pytest.approx((mean - half, mean + half), rel=1e-10)
  interval = expected.confidence_interval(1 - alpha)
  assert result["ci"] == pytest.approx((interval.low, interval.high), rel=1e-10)
  assert (result["mean_difference"], result["sd"], result["n"]) == (pytest.approx(mean), pytest.approx(sd), 6)


def test_paired_over_models_zero_spread_and_too_few_pairs():
  same = stats.paired_over_models([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
  assert (same["p_value"], same["ci"], same["t"]) == (1.0, (0.0, 0.0), 0.0)
  shifted = stats.paired_over_models([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
  assert (shifted["p_value"], shifted["ci"], shifted["t"]) == (0.0, (0.5, 0.5), math.inf)
  with pytest.raises(AttackError, match="n >= 2"):
    stats.paired_over_models([0.7], [0.6])


@pytest.mark.parametrize("k,n,p0", [(70, 100, 0.5), (55, 100, 0.5), (3, 10, 0.1), (0, 20, 0.1), (20, 20, 0.9),
                                    (12, 1000, 0.01)])
@pytest.mark.parametrize("alpha", [0.05, 0.005])
def test_binomial_helpers_match_scipy(k, n, p0, alpha):
  test = scipy_stats.binomtest(k, n, p0)
  assert stats.binomial_p_value(k, n, p0) == pytest.approx(test.pvalue, rel=1e-12)
  interval = test.proportion_ci(1 - alpha, method="exact")
  assert stats.binomial_excludes(k, n, p0, alpha) == (not interval.low <= p0 <= interval.high)


def test_binomial_excludes_after_bonferroni():
  # 70 of 100 against chance 0.5 stays significant over 10 classes; 60 of 100 does not (its p is about 0.057).
  assert stats.binomial_excludes(70, 100, 0.5, 0.05 / 10)
  assert stats.binomial_excludes(60, 100, 0.5, 0.05) is False
