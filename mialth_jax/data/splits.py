"""Member / non-member bookkeeping: exactly which training images a model saw.

Members are a seeded subset of the train split (`data.num_train`). Non-members are every test image plus the training
images left unused. Both are recorded by index in `splits.npz`, so any attack can be traced back to its images.
"""
import dataclasses

import numpy as np

from mialth_jax.data import base
from mialth_jax.utils import io


@dataclasses.dataclass(frozen=True)
class Splits:
  members: np.ndarray        # int64 indices into the train split, sorted: the images trained on
  unused_train: np.ndarray   # int64 indices into the train split never trained on (non-members)
  test: np.ndarray           # int64 indices into the test split (non-members; the paper's choice)

  def to_arrays(self) -> dict[str, np.ndarray]:
    return dataclasses.asdict(self)


def make_splits(num_train_available: int, num_test: int, num_train: int, seed: int) -> Splits:
  """Draws `num_train` members (all when -1) from the train split with `default_rng(seed)`."""
  if num_train == -1:
    num_train = num_train_available
  if not 0 < num_train <= num_train_available:
    raise base.DataError(f"data.num_train={num_train}: expected -1 or 1..{num_train_available} "
                         "(the size of the train split)")
  order = np.random.default_rng([seed, 0x5EED]).permutation(num_train_available)
  return Splits(members=np.sort(order[:num_train]), unused_train=np.sort(order[num_train:]),
                test=np.arange(num_test, dtype=np.int64))


def save(path: str, splits: Splits) -> None:
  io.write_npz(path, **splits.to_arrays())


def load(path: str) -> Splits:
  return Splits(**{k: v.astype(np.int64) for k, v in io.read_npz(path).items()})
