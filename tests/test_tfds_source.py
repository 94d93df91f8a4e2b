"""The tfds source on data prepared offline by tfds' real builders: CIFAR-10 from the npz, a tiny ImageNet from JPEGs.

Preparing needs TensorFlow (the `prepare` extra) and runs in subprocesses, so TF never enters the test process;
reading is checked in a subprocess where TF cannot be imported at all. Every test gets its own label cache folder
(MIALTH_CACHE_DIR), which the subprocesses it runs inherit, so nothing is written to the real ~/.cache.
"""
import importlib.util
import io
import logging
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mialth_jax.data import DataError, label_cache, npz, tfds_source

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROP = 32   # ImageNet crop in these tests; the shorter side is first resized to round(32 * 256 / 224) = 37

# Runs argv[1:] as `load_tfds(name, data_dir, image_size=CROP)` with TensorFlow unfindable, as if not installed.
READ_WITHOUT_TF = f"""
import importlib.abc, sys

class Hidden(importlib.abc.MetaPathFinder):
  def __init__(self, finder):
    self.finder = finder
  def find_spec(self, name, path, target=None):
    return None if name.partition(".")[0] == "tensorflow" else self.finder.find_spec(name, path, target)

sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
from mialth_jax.data import tfds_source
d = tfds_source.load_tfds(sys.argv[1], sys.argv[2], image_size={CROP})
x = d.x_train[list(range(len(d.x_train)))]
print(len(d.x_train), len(d.x_test), x.shape, int(x.sum()), int(d.y_train.sum()), "tensorflow" in sys.modules)
"""

PREPARE_IMAGENET = """
import sys
import tensorflow_datasets as tfds
builder = tfds.builder("imagenet2012", data_dir=sys.argv[2], file_format="array_record")
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[1],
                                                                          try_download_gcs=False))
"""


def _run(*argv: str) -> str:
  """Runs python with argv in the repo; returns stdout, failing the test with stderr's tail on error."""
  proc = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.fixture(autouse=True)
def label_cache_dir(tmp_path, monkeypatch):
  """The labels/ folder of a fresh MIALTH_CACHE_DIR for this test; not created until a load writes to it."""
  monkeypatch.setenv("MIALTH_CACHE_DIR", str(tmp_path / "cache"))
  return tmp_path / "cache" / "labels"


@pytest.fixture(scope="session")
def needs_tensorflow():
  """Skips, with the reason shown, where TensorFlow (needed to prepare, not to read) is not installed."""
  if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed: preparing a tfds dataset needs it (pip install -e '.[prepare]')")


@pytest.fixture(scope="session")
def cifar10_dir(cifar_dir, needs_tensorflow, tmp_path_factory):
  """tfds cifar10 prepared from cifar10_small.npz by the real builder."""
  data_dir = str(tmp_path_factory.mktemp("tfds_cifar10"))
  _run("-m", "mialth_jax.data.prepare_cifar_from_npz", f"--npz={cifar_dir}/cifar10_small.npz", "--name=cifar10",
       f"--data_dir={data_dir}")
  return data_dir


def _jpeg(image: np.ndarray, mode: str = "RGB") -> bytes:
  out = io.BytesIO()
  Image.fromarray(image).convert(mode).save(out, format="JPEG", quality=95)
  return out.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
  out = io.BytesIO()
  with tarfile.open(fileobj=out, mode="w") as tar:
    for name, payload in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  return out.getvalue()


def _imagenet_list(name: str) -> list[str]:
  """A synset list shipped with tfds' imagenet2012 builder (labels.txt, validation_labels.txt)."""
  return tfds.core.tfds_path(f"datasets/imagenet2012/{name}").read_text().split()


@pytest.fixture(scope="session")
def imagenet(cifar_dir, needs_tensorflow, tmp_path_factory):
  """A tiny imagenet2012 (real CIFAR pixels as JPEGs, in the ILSVRC tar layout) prepared by the real builder.

  Returns the data_dir and {file name: JPEG bytes}.
  """
  x = np.load(os.path.join(cifar_dir, "cifar10_small.npz"))["x_train"]
  # Shorter sides of 37 need no resize, so their expected crops are plain slices; the others exercise the resize.
  sizes = [(50, 37), (37, 61), (120, 90), (37, 37)]
  images = [_jpeg(np.asarray(Image.fromarray(x[i]).resize(size))) for i, size in enumerate(sizes)]
  images.append(_jpeg(np.asarray(Image.fromarray(x[4]).resize((45, 37))), mode="L"))  # ImageNet has grayscale JPEGs
  train = {"n01440764": images[:3], "n01443537": images[3:]}
  val = {f"ILSVRC2012_val_{k + 1:08d}.JPEG": jpeg for k, jpeg in enumerate(images[:4])}
  manual_dir, data_dir = tmp_path_factory.mktemp("ilsvrc_manual"), tmp_path_factory.mktemp("tfds_imagenet")
  per_synset = {s: {f"{s}_{k}.JPEG": jpeg for k, jpeg in enumerate(jpegs)} for s, jpegs in train.items()}
  (manual_dir / "ILSVRC2012_img_train.tar").write_bytes(_tar({f"{s}.tar": _tar(m) for s, m in per_synset.items()}))
  (manual_dir / "ILSVRC2012_img_val.tar").write_bytes(_tar(val))
  _run("-c", PREPARE_IMAGENET, str(manual_dir), str(data_dir))
  return str(data_dir), {name: jpeg for m in [*per_synset.values(), val] for name, jpeg in m.items()}


def test_cifar10_round_trip_is_exact(cifar_dir, cifar10_dir, label_cache_dir):
  npz = np.load(os.path.join(cifar_dir, "cifar10_small.npz"))
  d = tfds_source.load_tfds("cifar10", cifar10_dir)
  assert d.in_memory and d.num_classes == 10 and d.image_shape == (32, 32, 3)
  assert d.class_names == tuple(npz["class_names"])
  for split in ("train", "test"):
    x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
    assert x.dtype == np.uint8 and y.dtype == np.int32 and len(x) == len(npz[f"y_{split}"])   # 10000 / 860
    # tfds stores a split shuffled by key; the `id` it keeps ("train_00042") is the row of the npz.
    records = tfds.data_source("cifar10", split=split, data_dir=cifar10_dir, download=False)
    rows = np.array([int(r["id"].decode().rpartition("_")[2]) for r in records])
    assert np.array_equal(np.sort(rows), np.arange(len(rows)))
    assert np.array_equal(x, npz[f"x_{split}"][rows]) and np.array_equal(y, npz[f"y_{split}"][rows])
  assert not label_cache_dir.exists()   # CIFAR is read into memory whole: no label cache


def test_cifar10_reads_without_tensorflow(cifar10_dir):
  d = tfds_source.load_tfds("cifar10", cifar10_dir)
  expected = f"10000 860 {d.x_train.shape} {int(d.x_train.sum())} {int(d.y_train.sum())} False"
  assert _run("-c", READ_WITHOUT_TF, "cifar10", cifar10_dir).strip() == expected


def test_imagenet_center_crops_and_labels(imagenet):
  data_dir, files = imagenet
  d = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  assert not d.in_memory and d.num_classes == 1000 and d.image_shape == (CROP, CROP, 3)
  assert d.class_names == tuple(_imagenet_list("labels.txt"))
  # Train labels are the synset in the file name; validation image k has line k of tfds' validation_labels.txt.
  val_synsets = _imagenet_list("validation_labels.txt")
  synset = lambda name: name.partition("_")[0] if name.startswith("n") else val_synsets[int(name[-13:-5]) - 1]
  for split, source, y in (("train", d.x_train, d.y_train), ("validation", d.x_test, d.y_test)):
    records = tfds.data_source("imagenet2012", split=split, data_dir=data_dir, download=False,
                               decoders={"image": tfds.decode.SkipDecoding()})
    names = [r["file_name"].decode() for r in records]
    assert [r["image"] for r in records] == [files[n] for n in names]   # JPEG bytes stored as written
    assert y.tolist() == [d.class_names.index(synset(n)) for n in names]
    crops = source[np.arange(len(source))]
    assert crops.shape == (len(names), CROP, CROP, 3) and crops.dtype == np.uint8
    for crop, name in zip(crops, names):
      image = np.asarray(Image.open(io.BytesIO(files[name])).convert("RGB"))
      if min(image.shape[:2]) == 37:
        top, left = (image.shape[0] - CROP) // 2, (image.shape[1] - CROP) // 2
        assert np.array_equal(crop, image[top:top + CROP, left:left + CROP]), name
    assert np.array_equal(source[np.array([2, 0, 2])], crops[[2, 0, 2]])
  assert d.x_test[np.array([], np.int64)].shape == (0, CROP, CROP, 3)


def test_imagenet_reads_without_tensorflow(imagenet, tmp_path, monkeypatch):
  data_dir, _ = imagenet
  d = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  x = d.x_train[np.arange(len(d.x_train))]
  expected = f"5 4 {x.shape} {int(x.sum())} {int(d.y_train.sum())} False"
  monkeypatch.setenv("MIALTH_CACHE_DIR", str(tmp_path / "subprocess_cache"))   # so the subprocess scans the labels
  assert _run("-c", READ_WITHOUT_TF, "imagenet2012", data_dir).strip() == expected
  assert len(os.listdir(tmp_path / "subprocess_cache" / "labels")) == 2


def _record_labels(data_dir: str, split: str) -> np.ndarray:
  """The labels of a split, read from its records directly."""
  records = tfds.data_source("imagenet2012", split=split, data_dir=data_dir, download=False,
                             decoders={"image": tfds.decode.SkipDecoding()})
  return np.array([r["label"] for r in records], np.int32)


def _cache_files(folder) -> dict[str, str]:
  """{split: path} of the label cache files in folder, which must be named <name>-<version>-<split>-<16 hex>.npy."""
  names = sorted(os.listdir(folder))
  matches = [re.fullmatch(r"imagenet2012-5\.1\.0-(train|validation)-[0-9a-f]{16}\.npy", name) for name in names]
  assert all(matches), names
  return {m[1]: os.path.join(folder, m[0]) for m in matches}


def _npy(array: np.ndarray) -> bytes:
  out = io.BytesIO()
  np.save(out, array)
  return out.getvalue()


def _no_scan(records, what):
  raise AssertionError(f"scanned {what} although its labels are cached")


def test_imagenet_labels_are_scanned_once_then_read_from_the_cache(imagenet, label_cache_dir, monkeypatch, caplog):
  data_dir, _ = imagenet
  d = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  files = _cache_files(label_cache_dir)
  assert len(os.listdir(label_cache_dir)) == 2 and sorted(files) == ["train", "validation"]
  for split, y in (("train", d.y_train), ("validation", d.y_test)):
    assert np.array_equal(y, _record_labels(data_dir, split)) and np.array_equal(np.load(files[split]), y)
  # Other valid labels in the file prove that the next load reads it, and a scan that fails that it does not scan.
  other = (d.y_train + 7) % d.num_classes
  np.save(files["train"], other)
  monkeypatch.setattr(label_cache, "_scan", _no_scan)
  with caplog.at_level(logging.INFO, logger="absl"):
    again = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  assert np.array_equal(again.y_train, other) and np.array_equal(again.y_test, d.y_test)
  assert f"read 5 labels of imagenet2012:train from {files['train']}" in caplog.text


BAD_CACHES = {
    "garbage": lambda y: b"not a .npy file",
    "truncated": lambda y: _npy(y)[:-2],
    "wrong length": lambda y: _npy(y[:-1]),
    "out of range": lambda y: _npy(np.full_like(y, 1000)),
    "int64": lambda y: _npy(y.astype(np.int64)),
}


@pytest.mark.parametrize("bad", BAD_CACHES)
def test_a_bad_label_cache_is_ignored_and_rebuilt(imagenet, label_cache_dir, caplog, bad):
  data_dir, _ = imagenet
  expected = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP).y_train
  path = _cache_files(label_cache_dir)["train"]
  with open(path, "wb") as f:
    f.write(BAD_CACHES[bad](expected))
  with caplog.at_level(logging.WARNING, logger="absl"):
    d = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  assert f"ignoring label cache {path}: " in caplog.text
  assert np.array_equal(d.y_train, expected) and np.array_equal(np.load(path), expected)


def test_label_cache_name_changes_with_the_shard_files(imagenet, label_cache_dir):
  data_dir, _ = imagenet
  tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  before = set(os.listdir(label_cache_dir))
  shard = os.path.join(data_dir, "imagenet2012", "5.1.0", "imagenet2012-train.array_record-00000-of-00001")
  stat = os.stat(shard)
  try:
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # as if the split had been prepared again
    tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  finally:
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  added = set(os.listdir(label_cache_dir)) - before
  assert len(added) == 1 and added.pop().startswith("imagenet2012-5.1.0-train-")


def test_an_unwritable_label_cache_only_warns(imagenet, tmp_path, monkeypatch, caplog):
  data_dir, _ = imagenet
  not_a_folder = tmp_path / "not_a_folder"
  not_a_folder.write_text("")
  monkeypatch.setenv("MIALTH_CACHE_DIR", str(not_a_folder))
  with caplog.at_level(logging.WARNING, logger="absl"):
    d = tfds_source.load_tfds("imagenet2012", data_dir, image_size=CROP)
  assert np.array_equal(d.y_train, _record_labels(data_dir, "train"))
  assert np.array_equal(d.y_test, _record_labels(data_dir, "validation"))
  assert f"could not write label cache {not_a_folder}/labels/imagenet2012-5.1.0-train-" in caplog.text


class _SlowRecords:
  """A data source of 5 records, labelled 0, 1, 2, 0, 1, that takes a while per read."""

  def __len__(self) -> int:
    return 5

  def __getitems__(self, keys):
    time.sleep(0.02)
    return [{"label": k % 3} for k in keys]


def test_a_long_scan_reports_progress(monkeypatch, caplog):
  monkeypatch.setattr(label_cache, "_SCAN_CHUNK", 2)
  monkeypatch.setattr(label_cache, "_REPORT_EVERY_S", 0.0)
  with caplog.at_level(logging.INFO, logger="absl"):
    labels = label_cache._scan(_SlowRecords(), "slow:train")
  assert labels.dtype == np.int32 and labels.tolist() == [0, 1, 2, 0, 1]
  assert re.search(r"scanning labels of slow:train: 2/5 records, \d+ records/s, ETA 0:00:00", caplog.text)
  assert "scanned 5 labels of slow:train in " in caplog.text


def test_unprepared_data_dir_is_named(tmp_path):
  with pytest.raises(DataError, match=rf"data_dir={re.escape(str(tmp_path))} does not hold the prepared tfds dataset cifar10 .*"
                                      r"file_format='array_record' as docs/tfds.md shows"):
    tfds_source.load_tfds("cifar10", str(tmp_path))
  with pytest.raises(DataError, match="data.data_dir is empty"):
    tfds_source.load_tfds("imagenet2012", "")


def test_unknown_name_lists_the_supported_ones(tmp_path):
  with pytest.raises(DataError, match="'mnist' is not supported; expected one of cifar10, cifar100, imagenet2012"):
    tfds_source.load_tfds("mnist", str(tmp_path))


def test_readme_recipe_makes_a_cifar_subset_from_tfds(cifar10_dir, tmp_path, monkeypatch):
  """The README's recipe for CIFAR subsets without ../shared/data, run on CIFAR prepared for tfds."""
  readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
  block = readme[readme.index("```python", readme.index("Without `../shared/data`")) + len("```python"):]
  code = textwrap.dedent(block[:block.index("```")])
  monkeypatch.chdir(tmp_path)
  exec(code.replace('"DATA_DIR"', repr(cifar10_dir)), {})
  subset = npz.load(str(tmp_path / "cifar10_small.npz"))
  assert subset.x_train.shape == (10000, 32, 32, 3) and subset.x_test.shape == (860, 32, 32, 3)
  assert np.bincount(subset.y_train).tolist() == [1000] * 10 and np.bincount(subset.y_test).tolist() == [86] * 10
