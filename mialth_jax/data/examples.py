"""Examples named by one global id across both splits, so any subset (members, shadow members) is one int array.

Ids [0, n_train) are train-split indices; ids [n_train, n_train + n_test) are test-split indices shifted by n_train.
"""
import numpy as np

from mialth_jax.data import base


class ExampleSource:
  """Random access to train and test images by global id, keeping the order of the ids asked for."""

  def __init__(self, dataset: base.Dataset):
    self.dataset = dataset
    self.num_train = len(dataset.y_train)

  def __len__(self) -> int:
    return self.num_train + len(self.dataset.y_test)

  def __getitem__(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    is_train = ids < self.num_train
    out = np.empty((len(ids), *self.dataset.image_shape), np.uint8)
    if is_train.any():
      out[is_train] = self.dataset.x_train[ids[is_train]]
    if (~is_train).any():
      out[~is_train] = self.dataset.x_test[ids[~is_train] - self.num_train]
    return out

  def labels(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    is_train = ids < self.num_train
    out = np.empty(len(ids), np.int32)
    out[is_train] = self.dataset.y_train[ids[is_train]]
    out[~is_train] = self.dataset.y_test[ids[~is_train] - self.num_train]
    return out

  def test_ids(self) -> np.ndarray:
    return np.arange(self.num_train, len(self), dtype=np.int64)
