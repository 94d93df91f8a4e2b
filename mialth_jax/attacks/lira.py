"""LiRA, the likelihood-ratio attack of Carlini et al., "Membership Inference Attacks From First Principles" (S&P 2022).

Each example gets its own Gaussians of the logit-scaled confidence phi = log p_y - log(1 - p_y) (one per augmentation
query), fitted on the reference models that trained on it (IN) and those that did not (OUT):

  online   score = mean over queries of  log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out)
  offline  score = mean over queries of  -log Pr[Z > phi],  Z ~ N(mu_out, sd_out)   (one-sided, the paper's Algorithm 1)

as in the authors' code (tensorflow/privacy research/mi_lira_2021/plot.py generate_ours, and its library version
tensorflow_privacy/.../membership_inference_attack/advanced_mia.py compute_score_lira): mu is the median over the
models, sd their standard deviation (ddof 0) plus 1e-30, the per-query log terms are averaged. `fixed_variance` uses one
sd per side: the spread of every model's phi around its example's median, over all examples (advanced_mia.py); plot.py
instead takes the raw spread of the IN values for both sides, which also counts how far examples' medians lie apart.
Their offline score is the two-sided log N(phi; mu_out, sd_out); the one-sided survival keeps "far above the OUT
models" (a member) apart from "far below" (a hard non-member), and log_ndtr keeps its rank where the CDF rounds to 1.

An example with no IN (OUT) model takes the mean over examples of the IN (OUT) medians, and one with fewer than two
takes the mean per-example sd (advanced_mia.py fills missing values the same way; a one-model sd would be 0).
"""
import numpy as np
from scipy import special

from mialth_jax.attacks import contracts, reference as reference_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.attacks.registry import ATTACKS

_SD_FLOOR = 1e-30  # added to every sd, as the reference code does
_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _fill(stat: np.ndarray, defined: np.ndarray) -> np.ndarray:
  """stat [N, A] with the rows that are not `defined` replaced by the mean of the defined rows, per query."""
  stat = stat.copy()
  stat[~defined] = stat[defined].mean(axis=0)
  return stat


def masked_median(values: np.ndarray, count: np.ndarray) -> np.ndarray:
  """np.nanmedian over axis 0 of values [S, N, A] holding count [N] numbers each (NaN elsewhere), by one sort (NaN
  last); NaN where count is 0."""
  ordered = np.sort(values, axis=0)
  middle = lambda k: np.take_along_axis(ordered, np.maximum(k, 0)[None, :, None], axis=0)[0]
  return np.where(count[:, None] > 0, (middle((count - 1) // 2) + middle(count // 2)) / 2, np.nan)


def fit_gaussians(phi: np.ndarray, mask: np.ndarray, fixed_variance: bool, side: str) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sd), each float64 [N, A]: per-example median and sd of phi [S, N, A] over the models where mask [S, N]."""
  count = mask.sum(axis=0)
  if not (count >= 2).any():
    raise AttackError(f"LiRA needs 2 or more {side} reference models for some pool example; the most any has is "
                      f"{int(count.max(initial=0))}")
  values = np.where(mask[:, :, None], phi, np.nan)
  mu = _fill(masked_median(values, count), count > 0)
  if fixed_variance:
    sd = np.full(phi.shape[1:], np.nanstd(values - mu))
  else:
    sd = np.full(phi.shape[1:], np.nan)
    sd[count >= 2] = np.nanstd(values[:, count >= 2], axis=0)
    sd = _fill(sd, count >= 2)
  return mu, sd + _SD_FLOOR


def _log_pdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
  z = (x - mu) / sd
  return -0.5 * z * z - np.log(sd) - _HALF_LOG_2PI


@ATTACKS.register("lira")
class LiRA(contracts.ReferenceAttack):
  """LiRA scores (higher = more likely a member); `predict_examples` thresholds them at `decision_threshold`.

  The rule: online, the IN likelihood exceeds the OUT one (score > 0); offline, phi lies above the OUT Gaussian's
  median on average over queries (score > log 2, i.e. Pr[Z > phi] < 1/2 for one query).
  """

  def __init__(self, *, online: bool = True, fixed_variance: bool = False):
    for name, value in (("online", online), ("fixed_variance", fixed_variance)):
      if not isinstance(value, (bool, np.bool_)):
        raise AttackError(f"attack lira: option {name} must be true or false, got {value!r}")
    self.online = bool(online)
    self.fixed_variance = bool(fixed_variance)
    self.decision_threshold = 0.0 if self.online else float(np.log(2))

  def fit_reference(self, reference: reference_lib.ReferenceOutputs, exclude: int | None = None) -> "LiRA":
    """Fits every pool example's Gaussians on the reference models, leaving out model `exclude` (the target)."""
    models = reference.models(exclude)
    phi, keep = reference.logit_scaled_confidence[models], reference.keep[models]
    self.out_ = fit_gaussians(phi, ~keep, self.fixed_variance, "OUT")
    self.in_ = fit_gaussians(phi, keep, self.fixed_variance, "IN") if self.online else None
    self.reference_ = reference
    return self

  def score_examples(self, target_logits, labels, pool_rows, population=None) -> np.ndarray:
    """float64 [M] scores of the target's logits [M, A, C] on pool examples `pool_rows`; `population` is unused
    (LiRA compares each example with its own reference models only)."""
    logits, labels, rows = reference_lib.fitted_pool(self).check_queries(target_logits, labels, pool_rows)
    phi = reference_lib.logit_scaled_confidence(logits, labels)
    mu_out, sd_out = (stat[rows] for stat in self.out_)
    if self.online:
      mu_in, sd_in = (stat[rows] for stat in self.in_)
      per_query = _log_pdf(phi, mu_in, sd_in) - _log_pdf(phi, mu_out, sd_out)
    else:
      per_query = -special.log_ndtr((mu_out - phi) / sd_out)
    return per_query.mean(axis=1)
