"""Member / non-member bookkeeping: exactly which training images a model saw.

Members are a seeded subset of the train split (`data.num_train`). Non-members are every test image plus the training
images left unused. Both are recorded by index in `splits.npz`, so any attack can be traced back to its images.
"""
import dataclasses
import os

import numpy as np

from mialth_jax.data import base
from mialth_jax.utils import io
from mialth_jax.utils.registry import Registry

# Features whose runs train on other members than the seeded draw (e.g. experiments.onion leaves examples out):
# name -> fn(config, splits) -> Splits, applied in registration order by `draw`; each returns `splits` unchanged for a
# config that does not use it.
EDITS = Registry("member split edit")


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


def draw(config, dataset) -> Splits:
  """The run's member split: the seeded draw of `make_splits`, then every registered edit."""
  splits = make_splits(len(dataset.y_train), len(dataset.y_test), config.data.num_train, config.seed)
  for edit in EDITS.values():
    splits = edit(config, splits)
  return splits


def save(path: str, splits: Splits) -> None:
  io.write_npz(path, **splits.to_arrays())


def load(path: str) -> Splits:
  """Reads splits.npz, refusing anything but three 1-D arrays of distinct non-negative integer ids."""
  arrays = io.read_id_arrays(path, [f.name for f in dataclasses.fields(Splits)], base.DataError)
  for name, ids in arrays.items():
    if ids.size and (ids.min() < 0 or len(np.unique(ids)) != len(ids)):
      raise base.DataError(f"{path}: {name} must hold distinct non-negative ids")
  return Splits(**{k: v.astype(np.int64) for k, v in arrays.items()})


def record(path: str, splits: Splits, write: bool = True) -> None:
  """Saves the member split of a new run; for an existing run, checks that its recorded split is this one.

  The models of a run were trained on the recorded members, so a run must never be attacked with other ones.
  """
  if not os.path.exists(path):
    if write:
      save(path, splits)
    return
  recorded = load(path)
  differing = [k for k, v in splits.to_arrays().items() if not np.array_equal(v, getattr(recorded, k))]
  if differing:
    raise base.DataError(f"{path}: records other {', '.join(differing)} ids than this config draws "
                         "(data.num_train, seed); it belongs to another run")
