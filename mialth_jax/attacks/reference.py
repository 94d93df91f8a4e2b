"""The contract of attacks that learn from many reference ("shadow") models, such as LiRA and RMIA.

Such an attack does not learn from one labelled set of outputs (`fit(inputs, is_member)`); it calibrates every
example against models that did and did not train on it. A protocol hands it `ReferenceOutputs` (S models' logits on
N pool examples, with the membership matrix `keep`) through `fit_reference`, then scores the target's outputs on
examples of that pool with `score_examples(inputs, pool_rows)`. Attack classes declare which kind they are with
`learns_from = "references"` (the default, `"labelled_outputs"`, is the `fit(inputs, is_member)` kind).
"""
import dataclasses

import numpy as np

from mialth_jax.attacks.inputs import AttackError


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceOutputs:
  """Outputs of S reference models on a pool of N examples, each queried A times (augmentations; A = 1: as is)."""
  ids: np.ndarray      # int64 [N]: global example ids of the pool
  labels: np.ndarray   # int32 [N]: their true labels
  logits: np.ndarray   # float32 [S, N, A, C]
  keep: np.ndarray     # bool [S, N]: keep[s, n] is True when reference model s trained on example n

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

  def rows(self, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in the pool; ids outside it raise."""
    order = np.argsort(self.ids)
    found = order[np.clip(np.searchsorted(self.ids, ids, sorter=order), 0, len(order) - 1)]
    if len(ids) and not np.array_equal(self.ids[found], ids):
      raise AttackError(f"{int((self.ids[found] != ids).sum())} of {len(ids)} ids are not in the reference pool")
    return found
