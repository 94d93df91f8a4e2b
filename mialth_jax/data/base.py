"""The one dataset interface every source returns.

Images are uint8 NHWC. Small datasets (digits, CIFAR) hold numpy arrays that the trainer keeps on device for the whole
run; large ones (ImageNet) hold a random-access `ImageSource` read batch by batch on the host. Either way examples are
addressed by their integer index within a split, which is what member / non-member bookkeeping records.
"""
import dataclasses
from typing import Protocol

import numpy as np

from mialth_jax import errors


class ImageSource(Protocol):
  """Random access to a split: `len(source)` and `source[indices] -> uint8 [B, H, W, C]`."""

  def __len__(self) -> int: ...

  def __getitem__(self, indices: np.ndarray) -> np.ndarray: ...


class DataError(errors.UserError, ValueError):
  """Bad dataset setting or file; the message names it and says what was expected."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  x_train: ImageSource   # numpy uint8 [N, H, W, C] for in-memory datasets
  y_train: np.ndarray    # int32 [N]
  x_test: ImageSource
  y_test: np.ndarray
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...] = ()

  @property
  def in_memory(self) -> bool:
    return isinstance(self.x_train, np.ndarray) and isinstance(self.x_test, np.ndarray)


def validate_arrays(name: str, x: np.ndarray, y: np.ndarray, num_classes: int | None = None) -> None:
  """Refuses arrays that are not uint8 NHWC images with matching int labels in [0, num_classes)."""
  if x.dtype == object or y.dtype == object:
    raise DataError(f"{name}: object arrays are not accepted")
  if x.dtype != np.uint8 or x.ndim != 4:
    raise DataError(f"{name}: expected uint8 images of shape [N, H, W, C], got {x.dtype} {x.shape}")
  if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{name}: expected integer labels of shape [{x.shape[0]}], got {y.dtype} {y.shape}")
  if y.size and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
    raise DataError(f"{name}: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
