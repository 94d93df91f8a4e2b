"""Feature vectors that learned attacks see, and the base class every learned attack shares (`FeatureAttack`).

confidence: the raw softmax vector (Shokri et al. 2017; Bagmar et al. 2021).
sorted_topk: the k largest probabilities, sorted descending (Salem et al. 2018, ML-Leaks): class-agnostic, so one attack
             serves every class.
loss:        the per-example cross-entropy, one column.
"""
import abc

import numpy as np

from mialth_jax.attacks import contracts
from mialth_jax.attacks.inputs import AttackError, AttackInputs

FEATURE_KINDS = ("confidence", "sorted_topk", "loss")


def check_kind(kind: str, top_k: int) -> None:
  """Refuses an unknown feature kind or a non-positive top_k, before any data is seen."""
  if kind not in FEATURE_KINDS:
    raise AttackError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")
  if kind == "sorted_topk" and top_k < 1:
    raise AttackError(f"top_k must be >= 1, got {top_k}")


def make_features(inputs: AttackInputs, kind: str, *, top_k: int = 3, with_label: bool = False) -> np.ndarray:
  """float32 [N, F] features of `kind`, optionally followed by a one-hot of the true label."""
  check_kind(kind, top_k)
  if kind == "confidence":
    x = inputs.probs
  elif kind == "sorted_topk":
    if top_k > inputs.num_classes:
      raise AttackError(f"top_k={top_k} exceeds the number of classes ({inputs.num_classes})")
    x = -np.sort(-inputs.probs, axis=1)[:, :top_k]
  else:
    x = inputs.loss[:, None]
  if with_label:
    x = np.concatenate([x, np.eye(inputs.num_classes, dtype=np.float32)[inputs.labels]], axis=1)
  return np.ascontiguousarray(x, np.float32)


def check_membership(inputs: AttackInputs, is_member: np.ndarray) -> np.ndarray:
  """is_member as a bool array matching `inputs`, with both members and non-members present."""
  is_member = np.asarray(is_member)
  if is_member.shape != (len(inputs),):
    raise AttackError(f"is_member: expected shape ({len(inputs)},), got {is_member.shape}")
  is_member = is_member.astype(bool)
  if is_member.all() or not is_member.any():
    raise AttackError(f"attack-train needs members and non-members; got {int(is_member.sum())} members "
                      f"of {len(is_member)}")
  return is_member


class FeatureAttack(contracts.LabelledOutputsAttack):
  """A learned attack over `make_features`; subclasses implement `fit_features(x, y)` and `score_features(x)`.

  predict() is `score >= threshold`: 0.5 for attacks scoring with a member probability, 0 for margin scores. The
  feature-level methods are public because attacks on other features (adversarial_features) learn with them.
  """
  threshold = 0.5

  def __init__(self, *, features: str = "confidence", top_k: int = 3, with_label: bool = False, seed: int = 0):
    check_kind(features, top_k)
    self.features = features
    self.top_k = top_k
    self.with_label = with_label
    self.seed = seed

  def _features(self, inputs: AttackInputs) -> np.ndarray:
    return make_features(inputs, self.features, top_k=self.top_k, with_label=self.with_label)

  def fit(self, inputs: AttackInputs, is_member: np.ndarray) -> "FeatureAttack":
    """Learns member vs non-member from attack-train; returns self."""
    self.fit_features(self._features(inputs), check_membership(inputs, is_member))
    return self

  def score(self, inputs: AttackInputs) -> np.ndarray:
    """float64 [N]; higher means more likely a member."""
    return np.asarray(self.score_features(self._features(inputs)), np.float64)

  def predict(self, inputs: AttackInputs) -> np.ndarray:
    """bool [N]: the attack's own decision."""
    return self.score(inputs) >= self.threshold

  @abc.abstractmethod
  def fit_features(self, x: np.ndarray, y: np.ndarray) -> None:
    """Learns from float32 features x [N, F] and bool membership y [N]."""

  @abc.abstractmethod
  def score_features(self, x: np.ndarray) -> np.ndarray:
    """Scores [N] of float32 features x [N, F] (compared with `threshold` by predict)."""
