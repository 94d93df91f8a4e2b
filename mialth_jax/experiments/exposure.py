"""Which examples pruning exposes: per-example membership exposure over the zoo, from the leave-one-out scores that
experiments.zoo_targets stores (nothing is trained or attacked again).

For each pool example n and zoo kind (dense, a ticket, a control), zoo model s is one observation: its leave-one-out
score of n (the attack calibrated on the other S - 1 models of the kind), IN where s trained on n, OUT where it did
not. RMIA's population half never has an OUT score (zoo_targets scores it only as a member), so its exposure is
undefined and left NaN. Per example:

- exposure: mean score IN - mean score OUT, Welch's 95 % interval over the models and Welch's one-sided test of
  "IN exceeds OUT"; Benjamini-Hochberg over the examples at `fdr` marks the detectably exposed.
- caught: the share of its IN models whose score exceeds that model's threshold at FPR `fpr`, set on the model's
  non-members (other examples: n is its member); false alarms: the share of its OUT models above a threshold set on
  that model's other non-members (n left out).
- change (a non-dense kind k vs dense; zoo model s of k was pruned from, or trained beside, dense model s on the same
  examples): the per-model difference of scores e_s = k_s - dense_s, mean over IN - mean over OUT (equal to exposure
  under k minus exposure under dense), Welch's two-sided test and BH over examples: rises / falls.
- rank stability: Spearman's rho between the exposure measured on the first and on the second half of the zoo (the
  two halves share no model), with the Bonett-Wright interval.
"""
import dataclasses
import math

import numpy as np
from scipy import stats as scipy_stats

from mialth_jax.attacks.inputs import AttackError


@dataclasses.dataclass(frozen=True)
class ZooScores:
  """One attack's leave-one-out scores of the S zoo models of one kind on the N pool examples."""
  scores: np.ndarray   # float64 [S, N]; NaN: not scored (RMIA's population of that model)
  member: np.ndarray   # bool [S, N]: zoo model s trained on example n

  def __post_init__(self):
    if self.scores.ndim != 2 or self.scores.shape != self.member.shape:
      raise AttackError(f"ZooScores: scores {self.scores.shape} and member {self.member.shape} must be one [S, N]")
    if np.isnan(self.scores[self.member]).any():
      raise AttackError("ZooScores: a member has no score (only non-members may be unscored)")

  @property
  def inside(self) -> np.ndarray:
    return self.member

  @property
  def outside(self) -> np.ndarray:
    return ~self.member & ~np.isnan(self.scores)


def welch(values: np.ndarray, first: np.ndarray, second: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
  """Per column of values [S, N]: mean over the rows in `first` minus the mean over the rows in `second` (bool
  [S, N]), with Welch's t, degrees of freedom and 1 - alpha interval. The difference needs one row on each side, the
  rest two (NaN otherwise); zero spread on both sides gives t = +-inf (0 for no difference) and a zero-width interval."""
  values = np.where(first | second, values, 0.0)
  n1, n2 = first.sum(0).astype(np.float64), second.sum(0).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    m1, m2 = (values * first).sum(0) / n1, (values * second).sum(0) / n2
    v1 = (((values - m1) ** 2) * first).sum(0) / (n1 - 1)
    v2 = (((values - m2) ** 2) * second).sum(0) / (n2 - 1)
    difference = m1 - m2
    se2 = v1 / n1 + v2 / n2
    se = np.sqrt(se2)
    df = se2 ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    testable = (n1 >= 2) & (n2 >= 2)
    flat = testable & (se == 0)
    df = np.where(flat, n1 + n2 - 2, np.where(testable, df, np.nan))
    t = np.where(flat, np.sign(difference) * np.inf, difference / se)
    t = np.where(flat & (difference == 0), 0.0, np.where(testable, t, np.nan))
    half = np.where(flat, 0.0, scipy_stats.t.ppf(1 - alpha / 2, df) * se)
  return {"difference": difference, "low": difference - half, "high": difference + half, "t": t, "df": df,
          "n_first": n1.astype(int), "n_second": n2.astype(int)}


def benjamini_hochberg(p_values: np.ndarray, fdr: float) -> tuple[np.ndarray, np.ndarray]:
  """(adjusted p [N], rejected bool [N]) of the Benjamini-Hochberg step-up procedure at false discovery rate `fdr`;
  NaN entries are not tested and do not count in m."""
  p = np.asarray(p_values, np.float64)
  adjusted = np.full_like(p, np.nan)
  valid = np.flatnonzero(~np.isnan(p))
  order = valid[np.argsort(p[valid], kind="stable")]
  m = len(order)
  ranked = p[order] * m / np.arange(1, m + 1)
  adjusted[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
  return adjusted, ~np.isnan(adjusted) & (adjusted <= fdr)


def thresholds(scores: np.ndarray, member: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
  """(threshold [S], own [S, N]) at FPR `level`: threshold[s] is the lowest value whose share of model s's scored
  non-members strictly above it is <= level (its floor(level * M) + 1-th largest of M); own[s, n], for a scored
  non-member n of s, is the same threshold set on s's other non-members (n left out); NaN elsewhere."""
  num_models, num_examples = scores.shape
  threshold, own = np.full(num_models, np.nan), np.full((num_models, num_examples), np.nan)
  for s in range(num_models):
    rows = np.flatnonzero(~member[s] & ~np.isnan(scores[s]))
    if len(rows) < 2:
      continue
    order = rows[np.argsort(-scores[s, rows], kind="stable")]
    ordered = scores[s, order]
    threshold[s] = ordered[math.floor(level * len(rows))]
    k = math.floor(level * (len(rows) - 1))  # 0-based rank among the M - 1 others
    own[s, order] = np.where(np.arange(len(rows)) <= k, ordered[min(k + 1, len(rows) - 1)], ordered[k])
  return threshold, own


def caught(zoo: ZooScores, level: float) -> np.ndarray:
  """bool [S, N]: score above model s's threshold at FPR `level`, set on non-members other than n (thresholds)."""
  threshold, own = thresholds(zoo.scores, zoo.member, level)
  applied = np.where(zoo.member, threshold[:, None], own)
  with np.errstate(invalid="ignore"):
    return zoo.scores > applied


def exposure(zoo: ZooScores, hit: np.ndarray, fdr: float) -> dict[str, np.ndarray]:
  """Per example of one kind: exposure (Welch interval, one-sided p, BH-adjusted q, `exposed`), n_in, n_out, and the
  shares of its IN models that catch it (`caught_in`) and of its OUT models that flag it (`flagged_out`), from
  hit [S, N] (`caught`)."""
  found = welch(zoo.scores, zoo.inside, zoo.outside)
  p = scipy_stats.t.sf(found["t"], found["df"])
  q, exposed = benjamini_hochberg(p, fdr)
  with np.errstate(invalid="ignore", divide="ignore"):
    caught_in = (hit & zoo.inside).sum(0) / zoo.inside.sum(0)
    flagged_out = (hit & zoo.outside).sum(0) / zoo.outside.sum(0)
  return {"exposure": found["difference"], "low": found["low"], "high": found["high"], "p": p, "q": q,
          "exposed": exposed, "n_in": found["n_first"], "n_out": found["n_second"], "caught_in": caught_in,
          "flagged_out": flagged_out}


def change(dense: ZooScores, pruned: ZooScores, fdr: float) -> dict[str, np.ndarray]:
  """Per example: exposure under `pruned` minus under dense from the paired per-model differences, Welch's interval,
  two-sided p, BH-adjusted q, `rises` and `falls` (detected at `fdr`)."""
  if not (np.array_equal(dense.member, pruned.member) and np.array_equal(dense.outside, pruned.outside)):
    raise AttackError("change: the two kinds' zoo models must be paired (the same members and scored examples)")
  found = welch(pruned.scores - dense.scores, dense.inside, dense.outside)
  p = 2 * scipy_stats.t.sf(np.abs(found["t"]), found["df"])
  q, detected = benjamini_hochberg(p, fdr)
  return {"change": found["difference"], "low": found["low"], "high": found["high"], "p": p, "q": q,
          "rises": detected & (found["difference"] > 0), "falls": detected & (found["difference"] < 0)}


def halves(num_models: int) -> np.ndarray:
  """bool [S]: the first half of the zoo (the second is its complement)."""
  return np.arange(num_models) < num_models // 2


def spearman(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> dict:
  """Spearman's rho over the entries finite in both, with the Bonett-Wright (2000) 1 - alpha interval (Fisher z,
  standard error sqrt((1 + rho^2 / 2) / (n - 3)))."""
  kept = np.isfinite(a) & np.isfinite(b)
  n = int(kept.sum())
  if n < 4:
    return {"rho": float("nan"), "ci": (float("nan"), float("nan")), "n": n}
  rho = float(scipy_stats.spearmanr(a[kept], b[kept]).statistic)
  z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), math.sqrt((1 + rho ** 2 / 2) / (n - 3))
  half = scipy_stats.norm.ppf(1 - alpha / 2) * se
  return {"rho": rho, "ci": (float(np.tanh(z - half)), float(np.tanh(z + half))), "n": n}


def split_halves(values: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The mean difference `first` - `second` of values [S, N] measured on each half of the zoo's models."""
  half = halves(values.shape[0])[:, None]
  return tuple(welch(values, first & part, second & part)["difference"] for part in (half, ~half))


def exposure_stability(zoo: ZooScores) -> dict:
  return spearman(*split_halves(zoo.scores, zoo.inside, zoo.outside))


def change_stability(dense: ZooScores, pruned: ZooScores) -> dict:
  return spearman(*split_halves(pruned.scores - dense.scores, dense.inside, dense.outside))


def top(values: np.ndarray, count: int) -> np.ndarray:
  """Indices of the `count` largest finite values, largest first (ties: the lower index first)."""
  finite = np.flatnonzero(np.isfinite(values))
  return finite[np.argsort(-values[finite], kind="stable")][:count]


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> dict:
  """Share of the top `fraction` of examples by `a` that are also in the top `fraction` by `b`, over the examples
  finite in both, with the share expected by chance (the fraction itself)."""
  both = np.isfinite(a) & np.isfinite(b)
  count = max(1, round(fraction * both.sum()))
  first, second = top(np.where(both, a, np.nan), count), top(np.where(both, b, np.nan), count)
  return {"overlap": len(np.intersect1d(first, second)) / count, "count": int(count), "chance": count / both.sum()}
