"""Prepares tfds `cifar10` / `cifar100` (array_record) offline from an npz of official CIFAR images.

Writes the npz's images into the official CIFAR binary archive and runs tfds' own builder on it, so the result is
what `tfds build cifar10 --file_format=array_record` writes from the downloaded archive, restricted to these images.
Needs TensorFlow, which the tfds CIFAR builder reads the archive with: `pip install -e '.[prepare]'`.

  python -m mialth_jax.data.prepare_cifar_from_npz --npz=cifar10_small.npz --name=cifar10 --data_dir=DIR
"""
import io
import os
import tarfile
import tempfile

import numpy as np
from absl import app, flags

from mialth_jax.data import base, npz

# Official CIFAR-100 superclasses (coarse_label_names order) and their fine classes. The tfds builder reads a coarse
# label byte before each fine one, and the npz holds only fine labels.
CIFAR100_SUPERCLASSES = (
    ("aquatic_mammals", ("beaver", "dolphin", "otter", "seal", "whale")),
    ("fish", ("aquarium_fish", "flatfish", "ray", "shark", "trout")),
    ("flowers", ("orchid", "poppy", "rose", "sunflower", "tulip")),
    ("food_containers", ("bottle", "bowl", "can", "cup", "plate")),
    ("fruit_and_vegetables", ("apple", "mushroom", "orange", "pear", "sweet_pepper")),
    ("household_electrical_devices", ("clock", "keyboard", "lamp", "telephone", "television")),
    ("household_furniture", ("bed", "chair", "couch", "table", "wardrobe")),
    ("insects", ("bee", "beetle", "butterfly", "caterpillar", "cockroach")),
    ("large_carnivores", ("bear", "leopard", "lion", "tiger", "wolf")),
    ("large_man-made_outdoor_things", ("bridge", "castle", "house", "road", "skyscraper")),
    ("large_natural_outdoor_scenes", ("cloud", "forest", "mountain", "plain", "sea")),
    ("large_omnivores_and_herbivores", ("camel", "cattle", "chimpanzee", "elephant", "kangaroo")),
    ("medium_mammals", ("fox", "porcupine", "possum", "raccoon", "skunk")),
    ("non-insect_invertebrates", ("crab", "lobster", "snail", "spider", "worm")),
    ("people", ("baby", "boy", "girl", "man", "woman")),
    ("reptiles", ("crocodile", "dinosaur", "lizard", "snake", "turtle")),
    ("small_mammals", ("hamster", "mouse", "rabbit", "shrew", "squirrel")),
    ("trees", ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree")),
    ("vehicles_1", ("bicycle", "bus", "motorcycle", "pickup_truck", "train")),
    ("vehicles_2", ("lawn_mower", "rocket", "streetcar", "tank", "tractor")),
)
NAMES = ("cifar10", "cifar100")
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def _records(labels: list[np.ndarray], x: np.ndarray) -> bytes:
  """Official record layout: the label bytes, then the image as 3072 bytes in CHW order."""
  columns = [l.astype(np.uint8)[:, None] for l in labels] + [x.transpose(0, 3, 1, 2).reshape(len(x), -1)]
  return np.concatenate(columns, axis=1).tobytes()


def _coarse_labels(class_names: tuple[str, ...], y: np.ndarray) -> np.ndarray:
  """Maps CIFAR-100 fine labels to the official coarse ones, through the fine class names."""
  coarse_of = {fine: c for c, (_, fines) in enumerate(CIFAR100_SUPERCLASSES) for fine in fines}
  unknown = sorted(set(class_names) - set(coarse_of))
  if len(class_names) != 100 or unknown:
    raise base.DataError(f"cifar100 needs the 100 official fine class names in class_names; unknown: {unknown}")
  return np.array([coarse_of[n] for n in class_names], np.uint8)[y]


def _lines(names) -> bytes:
  return "\n".join(names).encode() + b"\n"


def _archive_members(name: str, data: base.Dataset) -> dict[str, bytes]:
  """The files of the official binary archive (cifar-10-binary.tar.gz / cifar-100-binary.tar.gz)."""
  if name == "cifar10":
    # Five equal training batches in order, like the official data_batch_1..5.
    batches = np.array_split(np.arange(len(data.y_train)), 5)
    members = {f"data_batch_{i + 1}.bin": _records([data.y_train[b]], data.x_train[b]) for i, b in enumerate(batches)}
    members.update({"test_batch.bin": _records([data.y_test], data.x_test),
                    "batches.meta.txt": _lines(data.class_names)})
    return {f"cifar-10-batches-bin/{k}": v for k, v in members.items()}
  coarse = lambda y: _coarse_labels(data.class_names, y)
  members = {"train.bin": _records([coarse(data.y_train), data.y_train], data.x_train),
             "test.bin": _records([coarse(data.y_test), data.y_test], data.x_test),
             "coarse_label_names.txt": _lines(c for c, _ in CIFAR100_SUPERCLASSES),
             "fine_label_names.txt": _lines(data.class_names)}
  return {f"cifar-100-binary/{k}": v for k, v in members.items()}


def write_archive(npz_path: str, name: str, out_dir: str) -> str:
  """Writes the npz's images as the official CIFAR binary archive into out_dir; returns the archive's path."""
  if name not in NAMES:
    raise base.DataError(f"name={name!r}: expected one of {', '.join(NAMES)}")
  data = npz.load(npz_path)
  if data.image_shape != (32, 32, 3) or len(data.class_names) != _NUM_CLASSES[name]:
    raise base.DataError(f"{npz_path}: expected {name} images of shape (32, 32, 3) and {_NUM_CLASSES[name]} "
                         f"class_names, got {data.image_shape} and {len(data.class_names)}")
  path = os.path.join(out_dir, f"{name.replace('cifar', 'cifar-')}-binary.tar.gz")
  # Level 1: the archive only lives for one preparation, so speed matters more than size.
  with tarfile.open(path, "w:gz", compresslevel=1) as tar:
    for member, payload in _archive_members(name, data).items():
      info = tarfile.TarInfo(member)
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  return path


def prepare(npz_path: str, name: str, data_dir: str) -> None:
  """Prepares tfds `name` in data_dir (array_record) from the npz, with no network."""
  import tensorflow_datasets as tfds
  registered = tfds.builder_cls(name)
  with tempfile.TemporaryDirectory() as tmp:
    archive = write_archive(npz_path, name, tmp)
    (url,) = registered.url_infos

    # The real builder, except that the one URL it downloads is registered with the local archive's checksum:
    # tfds then takes the archive from manual_dir and still verifies it. Its name and module are the official ones,
    # so dataset_info.json reads as after `tfds build`.
    class FromLocalArchive(registered, skip_registration=True):
      __module__ = registered.__module__
      name = registered.name
      url_infos = {url: tfds.download.checksums.compute_url_info(archive)}

    builder = FromLocalArchive(data_dir=data_dir, file_format="array_record")
    config = tfds.download.DownloadConfig(manual_dir=tmp, try_download_gcs=False)
    builder.download_and_prepare(download_dir=os.path.join(tmp, "downloads"), download_config=config)


_NPZ = flags.DEFINE_string("npz", None, "npz with x_train, y_train, x_test, y_test, class_names (official images)")
_NAME = flags.DEFINE_enum("name", None, NAMES, "tfds dataset to prepare")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir to write <name>/<version>/ into")
flags.mark_flags_as_required(["npz", "name", "data_dir"])


def main(argv):
  del argv
  prepare(_NPZ.value, _NAME.value, _DATA_DIR.value)


if __name__ == "__main__":
  app.run(main)
