"""The three kinds of attack, as abstract base classes: what a protocol may call on an attack of each kind.

An attack class subclasses exactly one of them; `attacks.registry.ATTACKS` refuses, when it is registered, a class
that follows none (or several) or leaves one of its contract's methods unwritten. Protocols pick their attacks by
contract (`registry.of_contract(configs, contracts.ReferenceAttack)`).

  LabelledOutputsAttack  learns member vs non-member from the outputs of a model on labelled examples (the paper's
                         MLP, threshold and scikit-learn attacks): fit(AttackInputs, is_member), score, predict.
  ReferenceAttack        calibrates every example on reference models that did and did not train on it
                         (likelihood-ratio tests): fit_reference(ReferenceOutputs), then score_examples on the
                         target's logits.
  TargetQueryAttack      queries the target model itself (white-box gradients, perturbations, label-only
                         queries): statistic(target, ids) gives one value or feature row per example, then
                         fit / score / predict work on those values.

Scores are float64 [N], higher meaning more likely a member; predictions bool [N].
"""
import abc

import numpy as np

from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.attacks.reference import ReferenceOutputs


class LabelledOutputsAttack(abc.ABC):
  """An attack learnt from a model's outputs on examples whose membership is known (attack-train)."""

  @abc.abstractmethod
  def fit(self, inputs: AttackInputs, is_member: np.ndarray) -> "LabelledOutputsAttack":
    """Learns member vs non-member from attack-train's outputs and bool is_member [N]; returns self."""

  @abc.abstractmethod
  def score(self, inputs: AttackInputs) -> np.ndarray:
    """float64 [N]; higher means more likely a member."""

  @abc.abstractmethod
  def predict(self, inputs: AttackInputs) -> np.ndarray:
    """bool [N]: the attack's own decision."""


class ReferenceAttack(abc.ABC):
  """An attack calibrated on reference models; `decision_threshold` is its stated rule (member: score above it).

  decision_threshold None marks a score-only attack, whose score has no threshold that means "member" (e.g. the fraction
  of a population that an example beats): it predicts no members (`predict_examples` refuses), and a result of it has
  no accuracy / precision rows, only the rows read from its scores' ranking (AUC, TPR at low FPR).

  The target's outputs come as (logits [M, A, C] under A queries, labels [M], pool_rows [M]) with pool_rows =
  `reference.rows(ids)`; an attack may also compare with `population`, the same triple for examples the target did
  not train on.
  """
  decision_threshold: float | None  # set by the class or its __init__; None: score-only

  @abc.abstractmethod
  def fit_reference(self, reference: ReferenceOutputs, exclude: int | None = None) -> "ReferenceAttack":
    """Calibrates on the reference models, leaving out model `exclude` (the target, when it is one of them)."""

  @abc.abstractmethod
  def score_examples(self, target_logits, labels, pool_rows, population=None) -> np.ndarray:
    """float64 [M] scores of the target's logits on pool examples `pool_rows`."""

  @property
  def fitted_settings(self) -> dict:
    """After fit_reference: what it chose that a result must record (JSON-able, e.g. a hyperparameter tuned on the
    reference models); {} for an attack that chooses nothing."""
    return {}

  def predict_examples(self, target_logits, labels, pool_rows, population=None) -> np.ndarray:
    """Members by the attack's stated rule: score above `decision_threshold`; refused for a score-only attack."""
    if self.decision_threshold is None:
      raise AttackError(f"attack {type(self).__name__} is score-only (decision_threshold None): it has no rule that "
                        "predicts members; use score_examples")
    return self.score_examples(target_logits, labels, pool_rows, population) > self.decision_threshold

  def fit(self, inputs, is_member):
    """Refused: a protocol that fits attacks on labelled outputs was handed this one."""
    raise AttackError(f"attack {type(self).__name__} learns from reference models (contracts.ReferenceAttack): "
                      "its protocol must call fit_reference and score_examples, not fit(inputs, is_member)")


class TargetQueryAttack(abc.ABC):
  """An attack on a signal read by querying the target (`attacks.target.Target`) on examples named by their ids."""

  @abc.abstractmethod
  def statistic(self, target, ids: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """float64 [N] (or [N, F]): the signal of each example, queried `batch_size` examples at a time."""

  @abc.abstractmethod
  def fit(self, values: np.ndarray, is_member: np.ndarray) -> "TargetQueryAttack":
    """Learns member vs non-member from attack-train's `statistic` values; returns self."""

  @abc.abstractmethod
  def score(self, values: np.ndarray) -> np.ndarray:
    """float64 [N] from `statistic` values; higher means more likely a member."""

  @abc.abstractmethod
  def predict(self, values: np.ndarray) -> np.ndarray:
    """bool [N]: the attack's own decision on `statistic` values."""

  @property
  def members_(self) -> str | None:
    """After fit: "higher" or "lower", the side of a one-value statistic that attack-train's members lay on (the
    report shows it); None for an attack without such a side."""
    return None


CONTRACTS = (LabelledOutputsAttack, ReferenceAttack, TargetQueryAttack)


def contract_of(cls: type) -> type:
  """The one contract `cls` follows; refuses a class that follows none or several, or lacks a contract method."""
  name = getattr(cls, "__name__", repr(cls))
  followed = [c for c in CONTRACTS if isinstance(cls, type) and issubclass(cls, c)]
  if len(followed) != 1:
    listed = ", ".join(f"contracts.{c.__name__}" for c in (followed or CONTRACTS))
    raise AttackError(f"attack class {name} must subclass exactly one attack contract; "
                      f"{'it follows ' + listed if followed else 'it follows none of ' + listed}")
  missing = sorted(getattr(cls, "__abstractmethods__", ()))
  if missing:
    raise AttackError(f"attack class {name} follows contracts.{followed[0].__name__} but lacks "
                      f"{', '.join(missing)}")
  return followed[0]
