"""RMIA's signal Pr(x | theta) of a model's logits: the softmax of the true class, or the authors' soft-margins.

The authors' research code (privacytrustlab/ml_privacy_meter, research/2024_rmia at commit d327341, signals.py
convert_signals) computes the signal from the logits divided by a temperature T, u = z / T:

  'softmax'             p_y = softmax(u)_y
  'soft-margin'         the softmax with the true class's u lowered by a margin m:
                        exp(u_y - m) / (sum_{j != y} exp(u_j) + exp(u_y - m))
  'taylor-soft-margin'  the same with exp replaced by its Taylor polynomial T(u) = 1 + u + u^2/2! + u^3/3!
                        (get_taylor with taylor_n = 4)

Its image configs (attack_configs/{cifar10,cifar100,cinic10}/rmia_*.yaml) all run 'taylor-soft-margin'
(sm_taylor_softmax_relative) at temperature 2.0 with taylor_m 0.6 and taylor_n 4; purchase100 runs 'softmax'
(softmax_relative) at temperature 2.0. The library (HEAD get_signals.py get_softmax) uses the softmax at temperature 1.

Here m = 0.6 and the order 4 are fixed at the values of every research config. softmax and soft-margin are positive and
held as logs (`log_softmax_true`: p_y = 1 - 1e-20 and 1 - 1e-30 keep their order, both 1.0 in linear space, and a
confident mistake's p_y = e^-800 does not underflow); taylor-soft-margin can be <= 0 (T(u) < 0 for u below about
-1.6), so it is held as it is and compared as the authors do (main.py: outer(ratio_x, 1 / ratio_z) > gamma).
"""
import math

import numpy as np
from scipy import special

from mialth_jax.attacks import reference as reference_lib
from mialth_jax.attacks.inputs import AttackError

SIGNALS = ("softmax", "soft-margin", "taylor-soft-margin")
MARGIN, TAYLOR_ORDER = 0.6, 4  # taylor_m and taylor_n of every research config


class LogSpace:
  """Positive signals (softmax, soft-margin) held as logs; LR(x) / LR(z) > gamma compared as a difference."""

  @staticmethod
  def mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log of the mean signal [N, A] over the models where mask [S, N], from log signals [S, N, A] (NaN: none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
      return special.logsumexp(np.where(mask[:, :, None], values, -np.inf), axis=0) - np.log(mask.sum(0))[:, None]

  @staticmethod
  def offline(mean_out: np.ndarray, a: float) -> np.ndarray:
    """log Pr(x) = log(0.5 (1 + a) Pr_OUT(x) + 0.5 (1 - a)), from log Pr_OUT."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a = 1: log 0; no OUT model: NaN, refused when scored
      return np.logaddexp(np.log((1 + a) / 2) + mean_out, np.log((1 - a) / 2))

  @staticmethod
  def ratio(values: np.ndarray, marginal: np.ndarray) -> np.ndarray:
    return values - marginal

  @staticmethod
  def beats(lr_x: np.ndarray, lr_z: np.ndarray, gamma: float) -> np.ndarray:
    """bool [M, P]: LR(x) / LR(z) > gamma, from log LR(x) [M] and log LR(z) [P]."""
    return lr_x[:, None] > lr_z[None, :] + np.log(gamma)


class LinearSpace:
  """Signals that can be <= 0 (taylor-soft-margin) held as they are, with the authors' arithmetic."""

  @staticmethod
  def mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean signal [N, A] over the models where mask [S, N] (NaN: none)."""
    with np.errstate(invalid="ignore"):
      return np.where(mask[:, :, None], values, 0.0).sum(0) / mask.sum(0)[:, None]

  @staticmethod
  def offline(mean_out: np.ndarray, a: float) -> np.ndarray:
    return (1 + a) / 2 * mean_out + (1 - a) / 2

  @staticmethod
  def ratio(values: np.ndarray, marginal: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
      return values / marginal

  @staticmethod
  def beats(lr_x: np.ndarray, lr_z: np.ndarray, gamma: float) -> np.ndarray:
    """bool [M, P]: LR(x) * (1 / LR(z)) > gamma, as main.py computes it (torch.outer(ratio_x, 1 / ratio_z))."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
      return lr_x[:, None] * (1 / lr_z)[None, :] > gamma


SPACES = {"softmax": LogSpace, "soft-margin": LogSpace, "taylor-soft-margin": LinearSpace}


def taylor_exp(u: np.ndarray) -> np.ndarray:
  """signals.py get_taylor(u, taylor_n): sum of u^k / k! for k < TAYLOR_ORDER."""
  return sum(u ** k / math.factorial(k) for k in range(TAYLOR_ORDER))


def log_softmax_true(u: np.ndarray, index: np.ndarray) -> np.ndarray:
  """log softmax(u)_y [...] of u [..., C] at the true class `index` [..., 1], as -log(1 + sum_{j != y} e^(u_j - u_y)):
  to float64's relative precision for p_y near 1 too, where u_y - logsumexp(u) rounds to 0 once 1 - p_y is below
  ulp(u_y) (about 1e-14 for u_y = 40)."""
  true = np.take_along_axis(u, index, axis=-1)[..., 0]
  others = u.copy()
  np.put_along_axis(others, index, -np.inf, axis=-1)
  return -np.logaddexp(0.0, special.logsumexp(others, axis=-1) - true)


def signal_values(logits, labels, signal: str, temperature: float) -> np.ndarray:
  """float64 [N, ...]: `signal` of logits [N, ..., C] with true labels [N] at `temperature`, held as SPACES[signal]
  holds it (log for softmax and soft-margin, the value for taylor-soft-margin); formulas in the module docstring."""
  u = np.array(logits, np.float64) / temperature
  if u.shape[-1] < 2:
    raise AttackError(f"RMIA logits: expected at least 2 classes, got shape {u.shape}")
  labels = np.asarray(labels, np.int64)
  index = np.broadcast_to(labels.reshape(labels.shape + (1,) * (u.ndim - labels.ndim)), u.shape[:-1] + (1,))
  if signal != "softmax":
    np.put_along_axis(u, index, np.take_along_axis(u, index, axis=-1) - MARGIN, axis=-1)
  if signal == "taylor-soft-margin":
    t = taylor_exp(u)
    return np.take_along_axis(t, index, axis=-1)[..., 0] / t.sum(axis=-1)
  return log_softmax_true(u, index)


def reference_signals(reference: reference_lib.ReferenceOutputs, models: np.ndarray, signal: str,
                      temperature: float) -> np.ndarray:
  """float64 [S', N, A]: the signal of reference models `models`, computed once per pool, signal and temperature."""
  every = reference.per_model(("rmia", signal, float(temperature)),
                              lambda logits: signal_values(logits, reference.labels, signal, temperature))
  return every[models]
