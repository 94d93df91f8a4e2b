"""What a target model reveals about N examples: the input of every membership-inference attack.

Probabilities and losses are derived from the logits in float64 with a log-softmax (a softmax followed by a log
underflows to -inf for confident models) and stored as float32.
"""
import dataclasses

import numpy as np

from mialth_jax import errors
from mialth_jax.utils import numerics


class AttackError(errors.UserError, ValueError):
  """Bad attack input, setting or request; the message is one line naming what was wrong."""


def _check_finite(name: str, array: np.ndarray) -> None:
  """Refuses NaN / Inf, naming the array and the number of rows holding one."""
  bad = ~np.isfinite(array)
  if bad.any():
    rows = int(bad.reshape(len(array), -1).any(axis=1).sum())
    raise AttackError(f"{name}: {rows} of {len(array)} rows hold NaN or Inf")


def _check_labels(labels: np.ndarray, num_examples: int, num_classes: int) -> None:
  if labels.shape != (num_examples,):
    raise AttackError(f"labels: expected shape ({num_examples},), got {labels.shape}")
  if num_examples and (labels.min() < 0 or labels.max() >= num_classes):
    raise AttackError(f"labels: values must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")


@dataclasses.dataclass(frozen=True, eq=False)
class AttackInputs:
  """Softmax, logits, true labels and per-example cross-entropy of N examples, row i describing example i."""
  probs: np.ndarray   # float32 [N, C]
  logits: np.ndarray  # float32 [N, C]
  labels: np.ndarray  # int32 [N]
  loss: np.ndarray    # float32 [N]

  def __post_init__(self):
    # Frozen: normalise dtypes through object.__setattr__ once, here, so every consumer sees the same types.
    for name, dtype in (("probs", np.float32), ("logits", np.float32), ("labels", np.int32), ("loss", np.float32)):
      object.__setattr__(self, name, np.asarray(getattr(self, name), dtype))
    n, c = self.logits.shape if self.logits.ndim == 2 else (-1, -1)
    if n < 0 or self.probs.shape != (n, c) or self.loss.shape != (n,):
      raise AttackError(f"inconsistent shapes: probs {self.probs.shape}, logits {self.logits.shape}, "
                        f"loss {self.loss.shape}; expected [N, C], [N, C], [N]")
    _check_labels(self.labels, n, c)
    for name in ("logits", "probs", "loss"):
      _check_finite(name, getattr(self, name))

  @classmethod
  def from_logits(cls, logits: np.ndarray, labels: np.ndarray) -> "AttackInputs":
    """Inputs from raw logits: softmax and cross-entropy via a float64 log-softmax."""
    logits64 = np.asarray(logits, np.float64)
    if logits64.ndim != 2:
      raise AttackError(f"logits: expected [N, C], got shape {logits64.shape}")
    _check_finite("logits", logits64)
    labels = np.asarray(labels, np.int64)
    _check_labels(labels, *logits64.shape)
    log_probs = numerics.log_softmax(logits64)
    loss = -np.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
    return cls(probs=np.exp(log_probs), logits=logits64, labels=labels, loss=loss)

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return self.probs.shape[1]

  def take(self, indices: np.ndarray) -> "AttackInputs":
    """The rows `indices`, in that order."""
    return AttackInputs(probs=self.probs[indices], logits=self.logits[indices], labels=self.labels[indices],
                        loss=self.loss[indices])
