"""scikit-learn's digits (1,797 8x8 greyscale images, 10 classes): the embedded default, no download needed."""
import numpy as np
from sklearn import datasets, model_selection

from mialth_jax.data import base

SPLIT_SEED = 0  # the train/test split is part of the dataset's definition, not of a run's seed


def load(test_fraction: float = 0.5) -> base.Dataset:
  """Returns digits as uint8 [N, 8, 8, 1] with a fixed stratified train/test split."""
  if not 0.0 < test_fraction < 1.0:
    raise base.DataError(f"data.digits_test_fraction must lie in (0, 1), got {test_fraction}")
  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, labels, test_size=test_fraction, random_state=SPLIT_SEED, stratify=labels)
  return base.Dataset(name="digits", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                      num_classes=10, image_shape=(8, 8, 1), class_names=tuple(str(d) for d in range(10)))
