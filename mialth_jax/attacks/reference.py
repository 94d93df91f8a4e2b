"""What attacks that learn from many reference ("shadow") models, such as LiRA and RMIA, are fitted on.

Such an attack (`contracts.ReferenceAttack`) does not learn from one labelled set of outputs; it calibrates every
example against models that did and did not train on it. A protocol hands it `ReferenceOutputs` (S models' logits on
N pool examples, with the membership matrix `keep`) through `fit_reference(reference, exclude=None)`, then scores the
target's outputs on examples of that pool with `score_examples(target_logits [M, A, C], labels [M], pool_rows [M],
population=None)` (pool_rows = `reference.rows(ids)`; RMIA also needs `population`, the same triple for examples the
target did not train on).
"""
import dataclasses
import functools

import numpy as np

from mialth_jax.attacks.inputs import AttackError


def _true_and_rest(logits, labels) -> tuple[np.ndarray, np.ndarray]:
  """(log p_y, log(1 - p_y)) in float64 of logits [N, ..., C] whose true labels are labels [N].

  log p_y = z_y - logsumexp(z) (the log-softmax) and log(1 - p_y) = logsumexp_{j != y} z_j - logsumexp(z), each
  log-sum-exp shifted by its own maximum; never log(1 - exp(log p_y)), which is log(0) once p_y rounds to 1.0.
  """
  z = np.array(logits, np.float64)
  if z.shape[-1] < 2:
    raise AttackError(f"logits: expected at least 2 classes, got shape {z.shape}")
  labels = np.asarray(labels, np.int64)
  index = np.broadcast_to(labels.reshape(labels.shape + (1,) * (z.ndim - labels.ndim)), z.shape[:-1] + (1,))
  true = np.take_along_axis(z, index, axis=-1)[..., 0]
  np.put_along_axis(z, index, -np.inf, axis=-1)
  top = z.max(axis=-1)
  rest = top + np.log(np.exp(z - top[..., None]).sum(axis=-1))
  total = np.logaddexp(true, rest)
  return true - total, rest - total


def true_class_log_prob(logits, labels) -> np.ndarray:
  """float64 log p_y of logits [N, ..., C] with labels [N]: RMIA's Pr(x | theta), in log space."""
  return _true_and_rest(logits, labels)[0]


def logit_scaled_confidence(logits, labels) -> np.ndarray:
  """LiRA's phi = log p_y - log(1 - p_y) in float64, of logits [N, ..., C] with labels [N]; finite for finite logits.

  The reference code (research/mi_lira_2021/score.py) computes log(p_y + 1e-45) - log(sum_{j != y} p_j + 1e-45) from a
  float64 softmax: the same where no probability underflows, while its 1e-45 floor caps |phi| at about 103.6.
  """
  log_p, log_rest = _true_and_rest(logits, labels)
  return log_p - log_rest


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceOutputs:
  """Outputs of S reference models on a pool of N examples, each queried A times (augmentations; A = 1: as is)."""
  ids: np.ndarray      # int64 [N]: global example ids of the pool
  labels: np.ndarray   # int32 [N]: their true labels
  logits: np.ndarray   # float32 [S, N, A, C]
  keep: np.ndarray     # bool [S, N]: keep[s, n] is True when reference model s trained on example n
  _per_model: dict = dataclasses.field(default_factory=dict, init=False, repr=False)  # per_model's results

  def __post_init__(self):
    for name, dtype in (("ids", np.int64), ("labels", np.int32), ("logits", np.float32), ("keep", bool)):
      object.__setattr__(self, name, np.asarray(getattr(self, name), dtype))
    if self.logits.ndim != 4:
      raise AttackError(f"reference logits: expected [S, N, A, C], got shape {self.logits.shape}")
    s, n, _, c = self.logits.shape
    expected = {"ids": (n,), "labels": (n,), "keep": (s, n)}
    for name, shape in expected.items():
      if getattr(self, name).shape != shape:
        raise AttackError(f"reference {name}: expected shape {shape} for logits {self.logits.shape}, got "
                          f"{getattr(self, name).shape}")
    if n and (self.labels.min() < 0 or self.labels.max() >= c):
      raise AttackError(f"reference labels: values must lie in [0, {c})")
    if not np.isfinite(self.logits).all():
      raise AttackError("reference logits: hold NaN or Inf")

  @property
  def num_models(self) -> int:
    return self.logits.shape[0]

  @functools.cached_property
  def _log_p_and_rest(self) -> tuple[np.ndarray, np.ndarray]:
    """(log p_y, log(1 - p_y)), each float64 [S, N, A]: computed once, model by model (one float64 [N, A, C] at a
    time), and shared by every fit_reference on this pool (e.g. one per leave-one-out target)."""
    pairs = [_true_and_rest(m, self.labels) for m in self.logits]
    return tuple(np.array([p[i] for p in pairs], np.float64).reshape(self.logits.shape[:3]) for i in (0, 1))

  def per_model(self, key, compute) -> np.ndarray:
    """[S, ...]: compute(one model's logits [N, A, C]) for every model, stacked; computed once per `key` for this
    pool and shared by every fit on it (e.g. one per leave-one-out target)."""
    if key not in self._per_model:
      self._per_model[key] = np.stack([compute(m) for m in self.logits])
    return self._per_model[key]

  @property
  def logit_scaled_confidence(self) -> np.ndarray:
    """float64 [S, N, A]: LiRA's phi of every model, example and query."""
    log_p, log_rest = self._log_p_and_rest
    return log_p - log_rest

  @property
  def true_class_log_prob(self) -> np.ndarray:
    """float64 [S, N, A]: log p_y of every model, example and query."""
    return self._log_p_and_rest[0]

  def rows(self, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in the pool; ids outside it raise."""
    order = np.argsort(self.ids)
    found = order[np.clip(np.searchsorted(self.ids, ids, sorter=order), 0, len(order) - 1)]
    if len(ids) and not np.array_equal(self.ids[found], ids):
      raise AttackError(f"{int((self.ids[found] != ids).sum())} of {len(ids)} ids are not in the reference pool")
    return found

  def models(self, exclude: int | None) -> np.ndarray:
    """Indices of the models that calibrate an attack: all but `exclude` (the target, when it is one of them)."""
    if exclude is not None and not (isinstance(exclude, (int, np.integer)) and 0 <= exclude < self.num_models):
      raise AttackError(f"exclude: expected None or a model index in [0, {self.num_models}), got {exclude!r}")
    return np.array([s for s in range(self.num_models) if s != exclude], np.int64)

  def check_queries(self, logits, labels, pool_rows, what: str = "target") -> tuple[np.ndarray, np.ndarray,
                                                                                 np.ndarray]:
    """(float64 logits [M, A, C], labels, rows) of a target's outputs on pool examples, checked against the pool.

    The labels must be the pool's labels at pool_rows: a mismatch means the rows are not the examples queried.
    """
    logits, rows = np.asarray(logits, np.float64), np.asarray(pool_rows)
    m = len(rows)
    if logits.shape != (m, *self.logits.shape[2:]) or np.shape(labels) != (m,) or rows.ndim != 1:
      raise AttackError(f"{what} outputs: expected logits [M, A, C] = [{m}, {self.logits.shape[2]}, "
                        f"{self.logits.shape[3]}], labels [M] and pool_rows [M], got {logits.shape}, "
                        f"{np.shape(labels)} and {rows.shape}")
    if m and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= len(self.ids)):
      raise AttackError(f"{what} pool_rows: expected integer positions in [0, {len(self.ids)})")
    if not np.isfinite(logits).all():
      raise AttackError(f"{what} logits: hold NaN or Inf")
    if not np.array_equal(labels, self.labels[rows]):
      raise AttackError(f"{what} labels: {int((labels != self.labels[rows]).sum())} of {m} differ from the reference "
                        "pool's labels at pool_rows")
    return logits, np.asarray(labels, np.int64), rows.astype(np.int64)


def fitted_pool(attack) -> ReferenceOutputs:
  """The ReferenceOutputs `attack` was fitted on (its `reference_`); refuses an attack not yet fitted."""
  if not hasattr(attack, "reference_"):
    raise RuntimeError(f"{type(attack).__name__}: call fit_reference before scoring")
  return attack.reference_
