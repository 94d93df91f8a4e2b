"""Datasets: `load_dataset(config.data)` returns a `base.Dataset` whichever source the config names."""
import ml_collections

from mialth_jax.data import base

DataError = base.DataError
Dataset = base.Dataset
SOURCES = ("digits", "npz", "tfds")


def load_dataset(data_config: ml_collections.ConfigDict) -> base.Dataset:
  """Dispatches on `data.name`; sources are imported lazily so tfds is only loaded when asked for."""
  name = data_config.name
  if name == "digits":
    from mialth_jax.data import digits
    return digits.load(data_config.digits_test_fraction)
  if name == "npz":
    from mialth_jax.data import npz
    return npz.load(data_config.path)
  if name == "tfds":
    from mialth_jax.data import tfds_source
    return tfds_source.load_tfds(data_config.tfds_name, data_config.data_dir, image_size=data_config.image_size)
  raise DataError(f"data.name={name!r} is unknown; expected one of {', '.join(SOURCES)}")
