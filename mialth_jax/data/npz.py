"""Any local .npz holding x_train, y_train, x_test, y_test (uint8 HWC images), e.g. the CIFAR subsets."""
import os

import numpy as np

from mialth_jax.data import base
from mialth_jax.utils import io

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path: str) -> dict[str, np.ndarray]:
  if not path:
    raise base.DataError("data.path is empty: the npz dataset needs a file with x_train, y_train, x_test, y_test")
  if not os.path.isfile(path):
    raise base.DataError(f"data.path={path}: no such file (the CIFAR `:subset` configs read "
                         "$MIALTH_DATA_DIR/<name>_small.npz, else ../shared/data from the launch folder)")
  try:
    arrays = io.read_npz(path)  # without pickle: object arrays and non-npz files are refused
  except io.UnreadableFileError as e:
    raise base.DataError(str(e)) from e
  missing = [k for k in REQUIRED_KEYS if k not in arrays]
  if missing:
    raise base.DataError(f"{path}: missing keys {missing}; expected {list(REQUIRED_KEYS)}")
  return {k: arrays[k] for k in (*REQUIRED_KEYS, "class_names") if k in arrays}


def _refuse_channels_first(name: str, shape: tuple[int, ...]) -> None:
  """NCHW images (N, 3, 32, 32) would be read as 3x32 images with 32 channels and train without complaint."""
  if shape[-1] not in (1, 3, 4) and any(d in (1, 3) for d in shape[1:3]):
    raise base.DataError(f"{name}: images of shape {shape} look channels-first (NCHW); expected NHWC uint8 images "
                         "[N, H, W, C] with C = 1, 3 or 4")


def _refuse_unseen_test_labels(path: str, arrays: dict, names: tuple[str, ...]) -> None:
  """Without class_names the classes are the labels seen: a test label that no training image has is refused (a
  typo, or the wrong file), since the model would get an output for a class it never trains on."""
  unseen = np.setdiff1d(arrays["y_test"], arrays["y_train"])
  if unseen.size and not names:
    raise base.DataError(f"{path}: y_test holds labels {unseen.tolist()} that y_train lacks; add class_names "
                         "(one name per class) to the npz to declare the classes, or fix the labels")


def load(path: str) -> base.Dataset:
  """Loads and validates an npz dataset; the class count is the largest label + 1 (or len(class_names))."""
  arrays = _read(path)
  if not (arrays["y_train"].size and arrays["y_test"].size):
    raise base.DataError(f"{path}: the train and test splits must hold at least one image each")
  names = tuple(str(n) for n in arrays.get("class_names", ()))
  num_classes = len(names) or int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
  for split in ("train", "test"):
    base.validate_arrays(f"{path}:{split}", arrays[f"x_{split}"], arrays[f"y_{split}"], num_classes)
    _refuse_channels_first(f"{path}:{split}", arrays[f"x_{split}"].shape)
  _refuse_unseen_test_labels(path, arrays, names)
  if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
    raise base.DataError(f"{path}: train images {arrays['x_train'].shape[1:]} and test images "
                         f"{arrays['x_test'].shape[1:]} differ in shape")
  name = os.path.splitext(os.path.basename(path))[0]
  return base.Dataset(name=name, x_train=arrays["x_train"], y_train=arrays["y_train"].astype(np.int32),
                      x_test=arrays["x_test"], y_test=arrays["y_test"].astype(np.int32), num_classes=num_classes,
                      image_shape=tuple(arrays["x_train"].shape[1:]), class_names=names)
