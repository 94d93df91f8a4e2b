"""RMIA, Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks" (ICML 2024).

x is compared with population examples z that the target did not train on:

  LR(x) = Pr(x | theta) / Pr(x),   score(x) = fraction of z with LR(x) / LR(z) > gamma,

Pr(x | theta) the target's signal on x (option `signal`, below) and Pr(x) its average over reference models: online
over all of them (IN and OUT, so 0.5 Pr_IN + 0.5 Pr_OUT for a zoo of random halves), offline over the OUT models only,
with the authors' linear approximation of the missing IN models, Pr(x) = 0.5 ((1 + a) Pr_OUT(x) + (1 - a)). Online,
the population must be drawn like the attacked examples (pool examples in the zoo's random halves): for z that no
reference model trained on, the plain mean is Pr_OUT(z) alone and every LR(z) comes out too high.

The authors' code, privacytrustlab/ml_privacy_meter, read for this module:
- research/2024_rmia at commit d327341 (the paper's code). signals.py computes the signal ('softmax', 'soft-margin',
  'taylor-soft-margin': rmia_signals.py) from the logits at a temperature. Every image config
  (attack_configs/{cifar10,cifar100,cinic10}/rmia_*.yaml) runs 'taylor-soft-margin' at temperature 2.0 with gamma 2.0,
  proportiontocut 0.2 (a trimmed mean over models) and a fixed offline_a 0.3; purchase100 runs 'softmax' at
  temperature 2.0 (offline_a 0.2).
  main.py aggregate_signals scores every pool example x against z = the target's non-members (population_indices =
  membership == False), so x and z overlap. Its scores are negated (lower = member, -count / |z|), and "to avoid
  overlapping cases" an x in z is rescaled to (-count - 1) / (|z| - 1): read as a score, (count + 1) / (|z| - 1), one
  win more for every non-member, though x vs itself (ratio 1, not > gamma) was never counted. Augmented queries vote:
  LR_k(x) / LR_k(z) > gamma per query, torch.mode over them.
- HEAD attacks.py (the library). Signals are the softmax at temperature 1.0 (get_signals.py get_softmax); run_rmia
  compares with gamma 1 (ratios > 1.0); tune_offline_a picks a from {0, 0.1, ..., 1} by the AUC of attacking another
  model (the target's pair) with x the auditing data set and z a population set that no model trained on (run_mia.py:
  the data set's test split), so tuning x and z are disjoint.

Here:
- `signal` is "softmax" (default), "soft-margin" or "taylor-soft-margin" (the authors' names, rmia_signals.py), at
  `temperature` (default 2.0, the research configs'); gamma defaults to 1.0 (the library's; the research code's is
  2.0). Chosen by a measurement on the digits and CIFAR-10 dense zoos, every zoo model attacked by the others
  (docs/rmia_settings.md): gamma 1 leads gamma 2 on digits in every setting and ties it on CIFAR-10; temperature 2
  has the higher AUC on both (CIFAR-10 finds more members at 1 % FPR at temperature 1); at gamma 1 softmax and
  soft-margin are within 0.002. An example is never compared with itself.
- a = None picks a from {0, 0.1, ..., 1} by the highest AUC when the first reference model (after `exclude`) is
  attacked as the target by the others, on disjoint x and z as in the library (`tune_rows`); `a_` and
  `fitted_settings` record the choice. With z among x, an x in z is divided by |z| - 1 and every other by |z|: tied
  counts break toward non-members, and the tuning AUCs follow the ties.
- Pr(x) is the plain mean over models (the paper's definition), not the research code's trimmed mean.
- Offline, an example that no reference model left out takes the mean Pr_OUT of the other examples (`fill_missing`).
- Score-only (`decision_threshold` None): a fraction of the population beaten has no threshold that means "member".
"""
import numbers

import numpy as np

from mialth_jax.attacks import contracts, metrics
from mialth_jax.attacks import reference as reference_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.attacks.registry import ATTACKS
from mialth_jax.attacks.rmia_signals import SIGNALS, SPACES, reference_signals, signal_values

A_GRID = np.round(np.arange(11) / 10, 1)
_TUNE_EXAMPLES = 2000
_PAIRS_PER_CHUNK = 2 ** 20  # x-z pairs compared at once: a few MB of votes


def pairwise_scores(lr_x: np.ndarray, lr_z: np.ndarray, gamma: float, space, x_rows: np.ndarray,
                    z_rows: np.ndarray) -> np.ndarray:
  """Fraction [M] of population z (other than x itself) with LR(x) / LR(z) > gamma on most queries.

  lr_x [M, A] and lr_z [P, A] are likelihood ratios held in `space`; x_rows and z_rows their pool rows (to skip x = z).
  """
  num_queries = lr_x.shape[1]
  chunk = max(1, _PAIRS_PER_CHUNK // max(1, len(lr_z)))
  scores = np.empty(len(lr_x))
  for start in range(0, len(lr_x), chunk):
    block = slice(start, start + chunk)
    votes = np.zeros((len(lr_x[block]), len(lr_z)), np.int16)
    for k in range(num_queries):
      votes += space.beats(lr_x[block, k], lr_z[:, k], gamma)
    others = x_rows[block, None] != z_rows[None, :]
    if not others.any(axis=1).all():
      raise AttackError("RMIA population: holds no example other than the one scored")
    scores[block] = np.count_nonzero((votes * 2 > num_queries) & others, axis=1) / np.count_nonzero(others, axis=1)
  return scores


def tune_rows(member: np.ndarray, usable: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(x_rows, z_rows): disjoint pool rows that tune a, for the model whose membership is member [N].

  z: half of the model's usable non-members (at most _TUNE_EXAMPLES); x: at most _TUNE_EXAMPLES of its usable
  members and its other usable non-members. The pool has no population that no model trained on (the library's z), so
  z is carved from the non-members. Draws are seeded and follow the examples' ids [N], not the pool's order.
  """
  rng = np.random.default_rng(0)
  shuffled = lambda rows: rng.permutation(rows[np.argsort(ids[rows])])
  non_members = shuffled(np.flatnonzero(usable & ~member))
  z_rows = non_members[:min(len(non_members) // 2, _TUNE_EXAMPLES)]
  x_rows = shuffled(np.r_[np.flatnonzero(usable & member), non_members[len(z_rows):]])[:_TUNE_EXAMPLES]
  return np.sort(x_rows), np.sort(z_rows)


def tune_a(values: np.ndarray, keep: np.ndarray, gamma: float, ids: np.ndarray, space) -> float:
  """The a of A_GRID with the best AUC when model 0 of values [S, N, A] (signals held in `space`) is the target and
  the others calibrate, on the rows of `tune_rows`; the first best on a tie, as the library's tune_offline_a."""
  if len(values) < 2:
    raise AttackError(f"RMIA: tuning a needs 2 or more reference models, got {len(values)}; set option a")
  mean_out = space.mean(values[1:], ~keep[1:])
  x_rows, z_rows = tune_rows(keep[0], ~np.isnan(mean_out).any(axis=1), ids)
  member = keep[0, x_rows]
  if member.all() or not member.any() or len(z_rows) == 0:
    raise AttackError("RMIA: tuning a needs pool examples that the first reference model did and did not train on, "
                      "with OUT models among the others; set option a")
  aucs = []
  for a in A_GRID:
    lr = space.ratio(values[0], space.offline(mean_out, a))
    aucs.append(metrics.roc_auc(pairwise_scores(lr[x_rows], lr[z_rows], gamma, space, x_rows, z_rows), member))
  return float(A_GRID[int(np.argmax(aucs))])


def _check_options(online, gamma, a, signal, temperature) -> None:
  """One AttackError per bad option, naming it and what it must be."""
  real = lambda v: not isinstance(v, bool) and isinstance(v, numbers.Real)
  if not isinstance(online, (bool, np.bool_)):
    raise AttackError(f"attack rmia: option online must be true or false, got {online!r}")
  if not real(gamma) or not gamma > 0:
    raise AttackError(f"attack rmia: option gamma must be a number > 0, got {gamma!r}")
  if a is not None and (online or not real(a) or not 0 <= a <= 1):
    raise AttackError(f"attack rmia: option a must be None (tuned) or a number in [0, 1], and only offline "
                      f"(online=False); got a={a!r}, online={online}")
  if not isinstance(signal, str) or signal not in SIGNALS:
    raise AttackError(f"attack rmia: option signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
  if not real(temperature) or not 0 < temperature < np.inf:
    raise AttackError(f"attack rmia: option temperature must be a finite number > 0, got {temperature!r}")


def fill_missing(mean_out: np.ndarray) -> np.ndarray:
  """Pr_OUT [N, A] with the examples that no reference model left out (NaN) given the mean over the other examples,
  per query, as LiRA fills missing statistics (advanced_mia.py does the same); with few reference models some
  examples have none. Where no example has one, the NaN stays and scoring refuses."""
  missing = np.isnan(mean_out).any(axis=1)
  if missing.any() and not missing.all():
    mean_out = mean_out.copy()
    mean_out[missing] = mean_out[~missing].mean(axis=0)
  return mean_out


@ATTACKS.register("rmia")
class RMIA(contracts.ReferenceAttack):
  """RMIA scores in [0, 1] (higher = more likely a member). Score-only: the fraction of the population that x beats
  by the factor gamma has no threshold that means "member", so `decision_threshold` is None."""
  decision_threshold = None

  def __init__(self, *, online: bool = True, gamma: float = 1.0, a: float | None = None, signal: str = "softmax",
               temperature: float = 2.0):
    _check_options(online, gamma, a, signal, temperature)
    self.online = bool(online)
    self.gamma = float(gamma)
    self.a = a
    self.signal = signal
    self.temperature = float(temperature)

  def fit_reference(self, reference: reference_lib.ReferenceOutputs, exclude: int | None = None) -> "RMIA":
    """Computes Pr(x) of every pool example from the reference models, leaving out model `exclude` (the target);
    offline with a = None, also tunes a (`a_`)."""
    models = reference.models(exclude)
    if len(models) == 0:
      raise AttackError("RMIA needs at least one reference model besides the target")
    space = SPACES[self.signal]
    values, keep = reference_signals(reference, models, self.signal, self.temperature), reference.keep[models]
    if self.online:
      self.a_ = None
      self.marginal_ = space.mean(values, np.ones_like(keep))
    else:
      self.a_ = float(self.a) if self.a is not None else tune_a(values, keep, self.gamma, reference.ids, space)
      self.marginal_ = space.offline(fill_missing(space.mean(values, ~keep)), self.a_)
    self.reference_ = reference
    return self

  @property
  def fitted_settings(self) -> dict:
    """Offline {"a": a_}, the a used (tuned when option a is None); online {} (nothing is chosen)."""
    reference_lib.fitted_pool(self)
    return {} if self.online else {"a": self.a_}

  def _ratios(self, logits, labels, pool_rows, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(LR [M, A] held in the signal's space, rows) of a target's outputs on pool examples."""
    logits, labels, rows = reference_lib.fitted_pool(self).check_queries(logits, labels, pool_rows, what)
    marginal = self.marginal_[rows]
    if np.isnan(marginal).any():
      raise AttackError(f"offline RMIA: {int(np.isnan(marginal).any(axis=1).sum())} {what} examples have no OUT "
                        "reference model")
    values = signal_values(logits, labels, self.signal, self.temperature)
    return SPACES[self.signal].ratio(values, marginal), rows

  def score_examples(self, target_logits, labels, pool_rows, population=None) -> np.ndarray:
    """float64 [M] scores of the target's logits [M, A, C] on pool examples `pool_rows`, against `population`:
    (logits [P, A, C], labels [P], pool_rows [P]) of the target on pool examples it did not train on."""
    if population is None or len(population) != 3:
      raise AttackError("RMIA: score_examples needs population=(logits, labels, pool_rows) of examples the target "
                        "did not train on")
    lr_x, x_rows = self._ratios(target_logits, labels, pool_rows, "target")
    lr_z, z_rows = self._ratios(*population, "population")
    return pairwise_scores(lr_x, lr_z, self.gamma, SPACES[self.signal], x_rows, z_rows)
