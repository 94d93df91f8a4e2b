"""tfds datasets prepared as array_record (docs/tfds.md), read through tfds' random-access data sources, without TF.

CIFAR-10/100 are decoded into memory. ImageNet stays on disk: `x_train`/`x_test` are `CenterCropSource`s that decode
and crop the requested examples with PIL. Index i is record i of the prepared split, in the order tfds stored it (a
fixed shuffle of the source order, the same every time the dataset is prepared). ImageNet labels are scanned from the
records once per prepared split and cached outside data_dir (`label_cache`).
"""
import concurrent.futures
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mialth_jax.data import base, label_cache

SUPPORTED = ("cifar10", "cifar100", "imagenet2012")
_SPLITS = {"cifar10": ("train", "test"), "cifar100": ("train", "test"), "imagenet2012": ("train", "validation")}
_DECODE_THREADS = min(16, os.cpu_count() or 1)   # PIL releases the GIL while decoding and resizing


def center_crop(jpeg: bytes, size: int) -> np.ndarray:
  """Decodes an image, resizes its shorter side to round(size * 256 / 224) (bilinear) and center-crops size x size."""
  with Image.open(io.BytesIO(jpeg)) as image:
    image = image.convert("RGB")   # ImageNet holds some grayscale JPEGs
  short = round(size * 256 / 224)
  scale = short / min(image.size)
  width, height = round(image.width * scale), round(image.height * scale)
  left = (width - size) // 2
  top = (height - size) // 2
  return np.asarray(image.resize((width, height), Image.BILINEAR).crop((left, top, left + size, top + size)))


class CenterCropSource:
  """Random access to an ImageNet split as uint8 [B, size, size, 3] center crops (`base.ImageSource`)."""

  def __init__(self, records, size: int):
    self._records = records   # tfds data source whose "image" comes back as undecoded bytes
    self._size = size

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, indices: np.ndarray) -> np.ndarray:
    keys = [int(i) for i in indices]
    out = np.empty((len(keys), self._size, self._size, 3), np.uint8)
    if keys:
      jpegs = [r["image"] for r in self._records.__getitems__(keys)]
      with concurrent.futures.ThreadPoolExecutor(_DECODE_THREADS) as pool:
        for i, crop in enumerate(pool.map(center_crop, jpegs, [self._size] * len(jpegs))):
          out[i] = crop
    return out


def _builder(name: str, data_dir: str):
  """The tfds builder of `name` in data_dir, refused unless it is prepared there as array_record."""
  how = f"prepare it once with tfds' {name} builder and file_format='array_record' as docs/tfds.md shows"
  if not data_dir:
    raise base.DataError(f"data.data_dir is empty: tfds {name} needs the folder it was prepared into; {how}")
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise base.DataError(f"data_dir={data_dir} does not hold the prepared tfds dataset {name} "
                         f"(no {builder.data_dir}/dataset_info.json); {how}")
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise base.DataError(f"data_dir={data_dir}: tfds {name} is prepared as {builder.info.file_format.value}, "
                         f"random access needs array_record; {how}")
  return builder


def _in_memory(records) -> tuple[np.ndarray, np.ndarray]:
  """All images (uint8 NHWC) and labels (int32) of a small split."""
  examples = records.__getitems__(list(range(len(records))))
  return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples], np.int32)


def _on_disk(builder, split: str, size: int) -> tuple[CenterCropSource, np.ndarray]:
  """Center crops (read on demand) and labels (int32) of a large split.

  SkipDecoding keeps JPEG bytes undecoded: a label scan (the first load of a prepared split) then costs a read and a
  proto parse per record, not a decode, and crops come from PIL alone, not from whichever decoder tfds picks.
  """
  records = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return CenterCropSource(records, size), label_cache.load(builder.info, split, records)


def load_tfds(name: str, data_dir: str, *, image_size: int | None = None) -> base.Dataset:
  """Reads prepared tfds `name` from data_dir; image_size is the ImageNet crop (default 224), CIFAR stays 32x32."""
  if name not in SUPPORTED:
    raise base.DataError(f"tfds name {name!r} is not supported; expected one of {', '.join(SUPPORTED)}")
  builder = _builder(name, data_dir)
  label = builder.info.features["label"]
  common = dict(name=name, num_classes=label.num_classes, class_names=tuple(label.names))
  if name != "imagenet2012":
    (x_train, y_train), (x_test, y_test) = (_in_memory(builder.as_data_source(split=s)) for s in _SPLITS[name])
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
      base.validate_arrays(f"tfds {name}:{split}", x, y, label.num_classes)
    return base.Dataset(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                        image_shape=tuple(builder.info.features["image"].shape), **common)
  size = image_size or 224
  (x_train, y_train), (x_test, y_test) = (_on_disk(builder, s, size) for s in _SPLITS[name])
  return base.Dataset(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, image_shape=(size, size, 3),
                      **common)
