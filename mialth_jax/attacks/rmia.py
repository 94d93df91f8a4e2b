"""RMIA, Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks" (ICML 2024).

x is compared with population examples z that the target did not train on:

  LR(x) = Pr(x | theta) / Pr(x),   score(x) = fraction of z with LR(x) / LR(z) > gamma,

Pr(x | theta) the target's softmax probability of x's true label and Pr(x) its average over reference models: online
over all of them (IN and OUT, so 0.5 Pr_IN + 0.5 Pr_OUT for a zoo of random halves), offline over the OUT models only,
with the authors' linear approximation of the missing IN models, Pr(x) = 0.5 ((1 + a) Pr_OUT(x) + (1 - a)). Online,
the population must be drawn like the attacked examples (pool examples in the zoo's random halves): for z that no
reference model trained on, the plain mean is Pr_OUT(z) alone and every LR(z) comes out too high.
Definitions follow the authors' code (privacytrustlab/ml_privacy_meter: attacks.py run_rmia and tune_offline_a;
research/2024_rmia/main.py aggregate_signals at commit d327341 for augmented queries):
- gamma defaults to 2.0, the research code's default (README, every attack config); the current library compares
  with 1.0. It applies to the ratio, compared in log space here (no underflow of confident probabilities).
- a = None picks a from {0, 0.1, ..., 1} by the highest AUC when the first reference model (after `exclude`) is
  attacked as the target by the others (tune_offline_a; at most 2,000 pool examples and 2,000 population examples,
  seeded); `a_` records the choice.
- With A queries per example, each query votes LR_k(x) / LR_k(z) > gamma and a pair counts when more than half vote
  yes (main.py takes torch.mode over the queries). An example is never compared with itself.
The research code's trimmed mean over models, temperature and soft-margin Taylor signal are not used: plain mean and
the softmax at temperature 1, as in the paper's definition and the current library.
"""
import numbers

import numpy as np
from scipy import special

from mialth_jax.attacks import contracts, metrics
from mialth_jax.attacks import reference as reference_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.attacks.registry import ATTACKS

A_GRID = np.round(np.arange(11) / 10, 1)
_TUNE_EXAMPLES = 2000
_PAIRS_PER_CHUNK = 2 ** 20  # x-z pairs compared at once: a few MB of votes


def log_out_mean(log_p: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """log Pr_OUT [N, A]: log of the mean probability over the models that did not train on each example (NaN: none)."""
  out = ~keep
  with np.errstate(divide="ignore", invalid="ignore"):
    return special.logsumexp(np.where(out[:, :, None], log_p, -np.inf), axis=0) - np.log(out.sum(0))[:, None]


def offline_marginal(log_out: np.ndarray, a: float) -> np.ndarray:
  """log Pr(x) = log(0.5 (1 + a) Pr_OUT(x) + 0.5 (1 - a)), from log Pr_OUT."""
  with np.errstate(divide="ignore", invalid="ignore"):  # a = 1: log 0; no OUT model: NaN, refused when scored
    return np.logaddexp(np.log((1 + a) / 2) + log_out, np.log((1 - a) / 2))


def pairwise_scores(lr_x: np.ndarray, lr_z: np.ndarray, log_gamma: float, x_rows: np.ndarray,
                    z_rows: np.ndarray) -> np.ndarray:
  """Fraction [M] of population z (other than x itself) with log LR(x) > log LR(z) + log gamma on most queries.

  lr_x [M, A] and lr_z [P, A] are log likelihood ratios; x_rows and z_rows their pool rows (to skip x = z).
  """
  num_queries = lr_x.shape[1]
  bar = lr_z + log_gamma
  chunk = max(1, _PAIRS_PER_CHUNK // max(1, len(lr_z)))
  scores = np.empty(len(lr_x))
  for start in range(0, len(lr_x), chunk):
    block = slice(start, start + chunk)
    votes = np.zeros((len(lr_x[block]), len(lr_z)), np.int16)
    for k in range(num_queries):
      votes += lr_x[block, k, None] > bar[None, :, k]
    others = x_rows[block, None] != z_rows[None, :]
    if not others.any(axis=1).all():
      raise AttackError("RMIA population: holds no example other than the one scored")
    scores[block] = np.count_nonzero((votes * 2 > num_queries) & others, axis=1) / np.count_nonzero(others, axis=1)
  return scores


def tune_a(log_p: np.ndarray, keep: np.ndarray, log_gamma: float, ids: np.ndarray) -> float:
  """The a of A_GRID with the best AUC when model 0 of log_p [S, N, A] is the target and the others calibrate.

  The examples are drawn by their ids (pool example ids [N]), so the choice does not depend on the pool's order.
  """
  if len(log_p) < 2:
    raise AttackError(f"RMIA: tuning a needs 2 or more reference models, got {len(log_p)}; set option a")
  log_out = log_out_mean(log_p[1:], keep[1:])
  usable = ~np.isnan(log_out).any(axis=1)
  rng = np.random.default_rng(0)
  pick = lambda rows: np.sort(rng.permutation(rows[np.argsort(ids[rows])])[:_TUNE_EXAMPLES])
  x_rows = pick(np.flatnonzero(usable))
  z_rows = pick(np.flatnonzero(usable & ~keep[0]))
  member = keep[0, x_rows]
  if member.all() or not member.any() or len(z_rows) == 0:
    raise AttackError("RMIA: tuning a needs pool examples that the first reference model did and did not train on, "
                      "with OUT models among the others; set option a")
  aucs = []
  for a in A_GRID:
    lr = log_p[0] - offline_marginal(log_out, a)
    fpr, tpr, _ = metrics.roc_curve(pairwise_scores(lr[x_rows], lr[z_rows], log_gamma, x_rows, z_rows), member)
    aucs.append((np.diff(fpr) * (tpr[1:] + tpr[:-1])).sum() / 2)
  return float(A_GRID[int(np.argmax(aucs))])


@ATTACKS.register("rmia")
class RMIA(contracts.ReferenceAttack):
  """RMIA scores in [0, 1] (higher = more likely a member); `predict_examples` calls x a member when it beats more
  than half of the population by the factor gamma (`decision_threshold` 0.5)."""
  decision_threshold = 0.5

  def __init__(self, *, online: bool = True, gamma: float = 2.0, a: float | None = None):
    if not isinstance(online, (bool, np.bool_)):
      raise AttackError(f"attack rmia: option online must be true or false, got {online!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma > 0:
      raise AttackError(f"attack rmia: option gamma must be a number > 0, got {gamma!r}")
    if a is not None and (online or isinstance(a, bool) or not isinstance(a, numbers.Real) or not 0 <= a <= 1):
      raise AttackError(f"attack rmia: option a must be None (tuned) or a number in [0, 1], and only offline "
                        f"(online=False); got a={a!r}, online={online}")
    self.online = bool(online)
    self.gamma = float(gamma)
    self.a = a

  def fit_reference(self, reference: reference_lib.ReferenceOutputs, exclude: int | None = None) -> "RMIA":
    """Computes log Pr(x) of every pool example from the reference models, leaving out model `exclude` (the target);
    offline with a = None, also tunes a (`a_`)."""
    models = reference.models(exclude)
    if len(models) == 0:
      raise AttackError("RMIA needs at least one reference model besides the target")
    log_p, keep = reference.true_class_log_prob[models], reference.keep[models]
    if self.online:
      self.a_ = None
      self.log_marginal_ = special.logsumexp(log_p, axis=0) - np.log(len(models))
    else:
      self.a_ = float(self.a) if self.a is not None else tune_a(log_p, keep, np.log(self.gamma), reference.ids)
      self.log_marginal_ = offline_marginal(log_out_mean(log_p, keep), self.a_)
    self.reference_ = reference
    return self

  def _log_ratios(self, logits, labels, pool_rows, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(log LR [M, A], rows) of a target's outputs on pool examples."""
    logits, labels, rows = reference_lib.fitted_pool(self).check_queries(logits, labels, pool_rows, what)
    log_marginal = self.log_marginal_[rows]
    if np.isnan(log_marginal).any():
      raise AttackError(f"offline RMIA: {int(np.isnan(log_marginal).any(axis=1).sum())} {what} examples have no OUT "
                        "reference model")
    return reference_lib.true_class_log_prob(logits, labels) - log_marginal, rows

  def score_examples(self, target_logits, labels, pool_rows, population=None) -> np.ndarray:
    """float64 [M] scores of the target's logits [M, A, C] on pool examples `pool_rows`, against `population`:
    (logits [P, A, C], labels [P], pool_rows [P]) of the target on pool examples it did not train on."""
    if population is None or len(population) != 3:
      raise AttackError("RMIA: score_examples needs population=(logits, labels, pool_rows) of examples the target "
                        "did not train on")
    lr_x, x_rows = self._log_ratios(target_logits, labels, pool_rows, "target")
    lr_z, z_rows = self._log_ratios(*population, "population")
    return pairwise_scores(lr_x, lr_z, np.log(self.gamma), x_rows, z_rows)
