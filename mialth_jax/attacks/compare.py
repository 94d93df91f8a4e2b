"""Does one model leak more than another? A paired bootstrap over the attack-test examples both were attacked on.

The two models are scored on the same examples, so their metrics are correlated: resampling each model on its own
would overstate the noise of their difference. Each bootstrap resample draws the examples once and weighs both models'
scores with the same draw, which is what makes a small difference detectable.

The two-sided p-value is the percentile bootstrap's: twice the smaller share of resampled differences on either side
of zero, counted with the +1 of Monte Carlo tests so it is never 0 (at least 2 / (B + 1)), and 1 when the two models'
scores are identical. It agrees with the 95 % percentile interval: the interval excludes 0 when p < 0.05 (up to ties).
"""
import dataclasses

import numpy as np

from mialth_jax.attacks import metrics as metrics_lib
from mialth_jax.attacks.inputs import AttackError

METRICS = ("roc_auc", "accuracy")


@dataclasses.dataclass(frozen=True)
class Difference:
  """One metric of two models on the same examples: `other - base`, its 95 % interval and p-value."""
  base: float
  other: float
  difference: float
  ci: tuple[float, float]
  p_value: float

  @property
  def direction(self) -> str:
    """"higher" / "lower" (other vs base) only when the interval excludes 0."""
    return "higher" if self.ci[0] > 0 else "lower" if self.ci[1] < 0 else "no detectable difference"


def _p_value(differences: np.ndarray) -> float:
  """Two-sided percentile-bootstrap p-value of "no difference"."""
  n = len(differences)
  below = (differences <= 0).sum()
  above = (differences >= 0).sum()
  return float(min(1.0, 2 * (min(below, above) + 1) / (n + 1)))


def paired_difference(is_member: np.ndarray, base_scores: np.ndarray, base_predicted: np.ndarray,
                      other_scores: np.ndarray, other_predicted: np.ndarray, *, num_bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, Difference]:
  """{metric: Difference} of ROC AUC and accuracy, `other - base`, both models attacked on the same examples
  (`is_member` is their common ground truth; scores rank, higher = more likely a member)."""
  if np.shape(base_scores) != np.shape(other_scores):
    raise AttackError(f"paired comparison needs scores of the same examples; got {np.shape(base_scores)} and "
                      f"{np.shape(other_scores)}")
  if num_bootstrap < 1:
    raise AttackError(f"paired comparison needs num_bootstrap >= 1, got {num_bootstrap}")
  models = ((base_scores, base_predicted), (other_scores, other_predicted))
  ones = np.ones((1, len(base_scores)))
  observed = [metrics_lib.resampled_metrics(s, is_member, p, ones) for s, p in models]
  resampled = {name: [] for name in METRICS}
  for weights in metrics_lib.resample_weights(len(base_scores), num_bootstrap, seed):
    base, other = (metrics_lib.resampled_metrics(s, is_member, p, weights) for s, p in models)
    for name in METRICS:
      resampled[name].append(other[name] - base[name])
  result = {}
  for name in METRICS:
    differences = np.concatenate(resampled[name])
    differences = differences[~np.isnan(differences)]  # resamples without members or without non-members
    base = float(observed[0][name][0])
    other = float(observed[1][name][0])
    low, high = np.percentile(differences, [2.5, 97.5]).tolist()
    result[name] = Difference(base, other, other - base, (low, high), _p_value(differences))
  return result
