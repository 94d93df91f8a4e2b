"""The statistics behind the report's claims: exact binomial intervals, TPR at low FPR with the count it needs, DeLong's
test of two AUCs on the same examples, Holm's correction and a paired t-test over pairs of models. numpy / scipy only.

TPR at FPR <= level rests on the few non-members above the threshold: at level 0.001 and 1,000 non-members that is one
example, and the TPR read there is noise. It is reported only where the non-members would give at least
MIN_EXPECTED_FALSE_POSITIVES false positives at the level (num_nonmembers * level >= 10).

DeLong et al. (1988), computed with midranks as in Sun & Xu (2014), "Fast implementation of DeLong's algorithm for
comparing the areas under correlated receiver operating characteristic curves": O(N log N), ties counted as half a win.
"""
import math

import numpy as np
from scipy import stats as scipy_stats

from mialth_jax.attacks import metrics
from mialth_jax.attacks.inputs import AttackError

MIN_EXPECTED_FALSE_POSITIVES = 10


def _check_alpha(alpha: float) -> None:
  if not 0 < alpha < 1:
    raise AttackError(f"alpha: expected a level in (0, 1), got {alpha}")


def _check_count(k: int, n: int) -> None:
  if not (int(k) == k and int(n) == n and 0 <= k <= n and n >= 1):
    raise AttackError(f"binomial count: expected integers 0 <= k <= n with n >= 1, got k={k}, n={n}")


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
  """Exact (Clopper-Pearson) 1 - alpha interval of a binomial proportion k / n; 0 at k = 0 and 1 at k = n."""
  _check_count(k, n)
  _check_alpha(alpha)
  lo = 0.0 if k == 0 else float(scipy_stats.beta.ppf(alpha / 2, k, n - k + 1))
  hi = 1.0 if k == n else float(scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
  return lo, hi


def binomial_p_value(k: int, n: int, p0: float) -> float:
  """Two-sided exact binomial test of "the proportion is p0" (scipy.stats.binomtest)."""
  _check_count(k, n)
  return float(scipy_stats.binomtest(int(k), int(n), p0).pvalue)


def binomial_excludes(k: int, n: int, p0: float, alpha: float) -> bool:
  """Whether the Clopper-Pearson 1 - alpha interval of k / n excludes p0 (pass alpha / m for a Bonferroni bound)."""
  lo, hi = clopper_pearson(k, n, alpha)
  return bool(p0 < lo or p0 > hi)


def _check_scores(scores, is_member, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
  """Finite float scores [N] and bool is_member [N] holding members and non-members."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1 or not np.isfinite(scores).all():
    raise AttackError(f"{name}: expected a finite 1-D array, got shape {scores.shape}")
  if np.shape(is_member) != scores.shape:
    raise AttackError(f"is_member: expected shape {scores.shape} like {name}, got {np.shape(is_member)}")
  is_member = np.asarray(is_member, bool)
  if is_member.all() or not is_member.any():
    raise AttackError(f"expected members and non-members; got {int(is_member.sum())} members of {len(scores)}")
  return scores, is_member


def needed_nonmembers(level: float) -> int:
  """The fewest non-members that give MIN_EXPECTED_FALSE_POSITIVES false positives at FPR `level`."""
  return math.ceil(round(MIN_EXPECTED_FALSE_POSITIVES / level, 9))  # round: 10 / 0.001 must give 10,000


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, level: float, alpha: float = 0.05) -> dict:
  """TPR at the lowest threshold whose FPR stays <= level (the highest TPR there), over every point of the ROC curve.

  Keys: tpr, fpr (achieved), ci (Clopper-Pearson 1 - alpha on true positives over members), num_members,
  num_nonmembers, estimable (enough non-members for MIN_EXPECTED_FALSE_POSITIVES at the level), needed_nonmembers.
  """
  if not 0 < level <= 1:
    raise AttackError(f"level: expected an FPR in (0, 1], got {level}")
  scores, is_member = _check_scores(scores, is_member)
  fpr, tpr, _ = metrics.roc_curve(scores, is_member)
  at = np.flatnonzero(fpr <= level)[-1]  # fpr rises along the curve; (0, 0) always qualifies
  measured = tpr_measure(tpr[at], int(is_member.sum()), int((~is_member).sum()), level, alpha)
  return {**measured, "fpr": float(fpr[at])}


def tpr_measure(tpr: float, num_members: int, num_nonmembers: int, level: float, alpha: float = 0.05) -> dict:
  """A TPR read at FPR <= `level`: tpr, ci (Clopper-Pearson 1 - alpha on its round(tpr * num_members) true positives),
  num_members, num_nonmembers, estimable (enough non-members for MIN_EXPECTED_FALSE_POSITIVES at the level),
  needed_nonmembers."""
  needed = needed_nonmembers(level)
  return {"tpr": float(tpr), "ci": clopper_pearson(int(round(tpr * num_members)), num_members, alpha),
          "num_members": num_members, "num_nonmembers": num_nonmembers, "estimable": num_nonmembers >= needed,
          "needed_nonmembers": needed}


def format_tpr(result: dict) -> str:
  """"0.123 [0.101, 0.148]" for a tpr_at_fpr result, or "-" and why where it is not estimable."""
  if not result["estimable"]:
    return f"- (needs >= {result['needed_nonmembers']:,} non-members, has {result['num_nonmembers']:,})"
  lo, hi = result["ci"]
  return f"{result['tpr']:.3f} [{lo:.3f}, {hi:.3f}]"


def _placements(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """DeLong's placement values of each row of scores [K, N]: V10 [K, M] per member, the share of non-members it beats
  (ties half), and V01 [K, N - M] per non-member, the share of members that beat it (ties half). Sun & Xu's midranks."""
  members, nonmembers = scores[:, is_member], scores[:, ~is_member]
  m, n = members.shape[1], nonmembers.shape[1]
  overall = scipy_stats.rankdata(np.concatenate([members, nonmembers], axis=1), axis=1)
  v10 = (overall[:, :m] - scipy_stats.rankdata(members, axis=1)) / n
  v01 = 1 - (overall[:, m:] - scipy_stats.rankdata(nonmembers, axis=1)) / m
  return v10, v01


def _check_delong_counts(is_member: np.ndarray) -> None:
  m, n = int(is_member.sum()), int((~is_member).sum())
  if m < 2 or n < 2:
    raise AttackError(f"DeLong's variance needs >= 2 members and >= 2 non-members; got {m} and {n}")


def _variance(v10: np.ndarray, v01: np.ndarray) -> float:
  """S10 / M + S01 / N of one row of placement values (sample variances, ddof 1)."""
  return float(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))


def _normal_interval(value: float, se: float, alpha: float = 0.05) -> tuple[float, float]:
  half = float(scipy_stats.norm.ppf(1 - alpha / 2)) * se
  return value - half, value + half


def delong_interval(scores: np.ndarray, is_member: np.ndarray, alpha: float = 0.05) -> tuple[float, tuple]:
  """(AUC, its 1 - alpha normal interval from DeLong's variance)."""
  auc, variance = delong_auc(scores, is_member)
  return auc, _normal_interval(auc, math.sqrt(variance), alpha)


def delong_auc(scores: np.ndarray, is_member: np.ndarray) -> tuple[float, float]:
  """(AUC, DeLong variance of the AUC); higher scores = more likely a member, ties count half."""
  scores, is_member = _check_scores(scores, is_member)
  _check_delong_counts(is_member)
  v10, v01 = _placements(scores[None], is_member)
  return float(v10.mean()), _variance(v10[0], v01[0])


def delong_paired(is_member: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict:
  """DeLong's test of AUC_b - AUC_a, both score sets on the same examples (in the same order).

  Keys: auc_a, auc_b, difference (b - a), se, ci (95 % normal), z, p_value (two-sided). With a difference of variance
  0 (identical scores, say) the normal test says nothing: z 0 and p 1 for a zero difference, else z +-inf and p 0.
  """
  scores_a, is_member = _check_scores(scores_a, is_member, "scores_a")
  scores_b, _ = _check_scores(scores_b, is_member, "scores_b")
  _check_delong_counts(is_member)
  v10, v01 = _placements(np.stack([scores_a, scores_b]), is_member)
  auc_a, auc_b = v10.mean(axis=1).tolist()
  difference = auc_b - auc_a
  # Var(b - a) = S10[bb] + S10[aa] - 2 S10[ab] (over M, likewise S01 over N), as the variance of the row difference.
  se = math.sqrt(_variance(v10[1] - v10[0], v01[1] - v01[0]))
  if se == 0:
    z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
  else:
    z = difference / se
  p_value = 1.0 if z == 0 else float(2 * scipy_stats.norm.sf(abs(z)))
  ci = _normal_interval(difference, se)
  return {"auc_a": auc_a, "auc_b": auc_b, "difference": difference, "se": se, "ci": ci, "z": z, "p_value": p_value}


def holm(p_values) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values in the given order: the i-th smallest of m times (m - i) (i from 0), made
  non-decreasing along the sorted order, capped at 1. NaN entries pass through and do not count in m."""
  p = np.asarray(p_values, np.float64)
  if p.ndim != 1 or ((p < 0) | (p > 1)).any():
    raise AttackError(f"p_values: expected a 1-D array of values in [0, 1] (or NaN), got {p_values!r}")
  adjusted = np.full_like(p, np.nan)
  valid = np.flatnonzero(~np.isnan(p))
  order = valid[np.argsort(p[valid], kind="stable")]
  m = len(order)
  adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
  return adjusted


def paired_over_models(values_b, values_a, alpha: float = 0.05) -> dict:
  """Paired comparison of a metric over n pairs of models (pair i: values_b[i] and values_a[i]), b - a.

  Keys: mean_difference, ci (Student t, 1 - alpha), sd (of the differences, ddof 1), n, t, p_value (two-sided paired
  t-test). Differences of zero spread give a zero-width interval, p 1 if their mean is 0 and p 0 otherwise.
  """
  _check_alpha(alpha)
  b, a = np.asarray(values_b, np.float64), np.asarray(values_a, np.float64)
  if b.ndim != 1 or b.shape != a.shape or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise AttackError(f"paired_over_models: expected two finite 1-D arrays of one length n >= 2, got shapes "
                      f"{b.shape} and {a.shape}")
  differences = b - a
  n, mean, sd = len(differences), float(differences.mean()), float(differences.std(ddof=1))
  if sd == 0:
    t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return {"mean_difference": mean, "ci": (mean, mean), "sd": 0.0, "n": n, "t": t,
            "p_value": 1.0 if mean == 0 else 0.0}
  se = sd / math.sqrt(n)
  t = mean / se
  half = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * se
  return {"mean_difference": mean, "ci": (mean - half, mean + half), "sd": sd, "n": n, "t": t,
          "p_value": float(2 * scipy_stats.t.sf(abs(t), n - 1))}
