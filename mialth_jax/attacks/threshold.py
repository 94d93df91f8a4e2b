"""Threshold attacks: one statistic of the target's output, thresholded; no model is trained.

threshold_loss        score = -cross-entropy (Yeom et al. 2018)
threshold_confidence  score = the largest probability
threshold_entropy     score = -entropy of the softmax
threshold_mentropy    score = -modified entropy (Song & Mittal 2021), which uses the true label

The threshold maximises accuracy on attack-train. With `per_class`, each true class gets its own threshold (the
label-aware variant of Song & Mittal) and the score becomes `statistic - threshold[class]`, so scores of different
classes are comparable and `predict` is `score >= 0`.
"""
import abc

import numpy as np
from scipy import special

from mialth_jax.attacks import contracts, metrics
from mialth_jax.attacks.features import check_membership
from mialth_jax.attacks.inputs import AttackInputs
from mialth_jax.attacks.registry import ATTACKS
from mialth_jax.utils import numerics

_LOG_FLOOR = 1e-30  # log(1 - p) of a near-certain probability: the floor Song & Mittal's reference code uses


def best_threshold(scores: np.ndarray, is_member: np.ndarray) -> float:
  """The t maximising the accuracy of `scores >= t`, halfway between two observed scores.

  Ties in accuracy go to the highest such t (fewest examples called members), so the choice is deterministic. Calling
  no one (everyone) a member gives a threshold 1 above (below) the largest (smallest) score.
  """
  fpr, tpr, cuts = metrics.roc_curve(scores, is_member)
  num_members = int(is_member.sum())
  correct = np.round(tpr * num_members) + np.round((1 - fpr) * (len(scores) - num_members))
  k = int(np.argmax(correct))
  values = cuts[1:]  # the distinct scores, descending
  if k == 0:
    return float(values[0] + 1)
  if k == len(values):
    return float(values[-1] - 1)
  return float((values[k - 1] + values[k]) / 2)


def _log_softmax(inputs: AttackInputs) -> np.ndarray:
  # Recomputed in float64 from the logits: float32 probabilities of confident outputs round to 1.0 and would tie.
  return numerics.log_softmax(inputs.logits)


def modified_entropy(inputs: AttackInputs) -> np.ndarray:
  """Song & Mittal's Mentr: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i); low for confident, correct outputs."""
  log_probs = _log_softmax(inputs)
  probs = np.exp(log_probs)
  rows = np.arange(len(inputs))
  log_not = np.log(np.maximum(1 - probs, _LOG_FLOOR))
  p_y = probs[rows, inputs.labels]
  log_p_y = log_probs[rows, inputs.labels]
  others = (probs * log_not).sum(axis=1) - p_y * log_not[rows, inputs.labels]
  return -(1 - p_y) * log_p_y - others


class ThresholdAttack(contracts.LabelledOutputsAttack):
  """Thresholds `statistic(inputs)` (higher = member) at the accuracy-maximising value on attack-train."""

  def __init__(self, *, per_class: bool = False):
    self.per_class = per_class

  @abc.abstractmethod
  def statistic(self, inputs: AttackInputs) -> np.ndarray:
    """float64 [N]: the thresholded statistic, higher for members."""

  def fit(self, inputs: AttackInputs, is_member: np.ndarray) -> "ThresholdAttack":
    """Chooses the global threshold, and with per_class one per class holding both members and non-members."""
    is_member = check_membership(inputs, is_member)
    stat = self.statistic(inputs)
    self.threshold_ = best_threshold(stat, is_member)
    self.class_thresholds_ = {}
    if self.per_class:
      for c in np.unique(inputs.labels):
        chosen = inputs.labels == c
        if 0 < is_member[chosen].sum() < chosen.sum():  # otherwise the global threshold stands in
          self.class_thresholds_[int(c)] = best_threshold(stat[chosen], is_member[chosen])
    return self

  def _thresholds(self, labels: np.ndarray) -> np.ndarray:
    """The threshold that applies to each example: its class's, or the global one."""
    if not self.per_class:
      return np.full(len(labels), self.threshold_)
    return np.array([self.class_thresholds_.get(int(c), self.threshold_) for c in labels], np.float64)

  def score(self, inputs: AttackInputs) -> np.ndarray:
    """float64 [N]; higher means more likely a member."""
    stat = self.statistic(inputs)
    return stat - self._thresholds(inputs.labels) if self.per_class else stat

  def predict(self, inputs: AttackInputs) -> np.ndarray:
    """bool [N]: statistic at or above the applicable threshold."""
    return self.statistic(inputs) >= self._thresholds(inputs.labels)


@ATTACKS.register("threshold_loss")
class LossThreshold(ThresholdAttack):
  def statistic(self, inputs: AttackInputs) -> np.ndarray:
    return -inputs.loss.astype(np.float64)


@ATTACKS.register("threshold_confidence")
class ConfidenceThreshold(ThresholdAttack):
  def statistic(self, inputs: AttackInputs) -> np.ndarray:
    return np.exp(_log_softmax(inputs).max(axis=1))


@ATTACKS.register("threshold_entropy")
class EntropyThreshold(ThresholdAttack):
  def statistic(self, inputs: AttackInputs) -> np.ndarray:
    return -special.entr(np.exp(_log_softmax(inputs))).sum(axis=1)


@ATTACKS.register("threshold_mentropy")
class MentropyThreshold(ThresholdAttack):
  def statistic(self, inputs: AttackInputs) -> np.ndarray:
    return -modified_entropy(inputs)
