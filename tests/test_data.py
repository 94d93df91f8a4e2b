"""Datasets, member / non-member splits and on-device augmentation."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.data import DataError, augment, digits, load_dataset, npz, splits


def test_digits_is_uint8_nhwc_with_a_fixed_stratified_split():
  a, b = digits.load(), digits.load()
  assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (8, 8, 1)
  assert len(a.y_train) + len(a.y_test) == 1797 and a.x_train.max() == 255
  assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
  assert np.all(np.bincount(a.y_train, minlength=10) >= 85)


def test_splits_record_disjoint_members_and_non_members(tmp_path):
  s = splits.make_splits(1000, 300, 600, seed=4)
  assert len(s.members) == 600 and len(s.unused_train) == 400 and len(s.test) == 300
  assert not set(s.members) & set(s.unused_train)
  assert sorted(np.concatenate([s.members, s.unused_train]).tolist()) == list(range(1000))
  assert np.array_equal(s.members, splits.make_splits(1000, 300, 600, seed=4).members)
  assert not np.array_equal(s.members, splits.make_splits(1000, 300, 600, seed=5).members)
  splits.save(str(tmp_path / "splits.npz"), s)
  assert np.array_equal(splits.load(str(tmp_path / "splits.npz")).members, s.members)
  assert np.array_equal(splits.make_splits(1000, 300, -1, seed=0).members, np.arange(1000))


def test_num_train_beyond_the_split_is_named():
  with pytest.raises(DataError, match=r"data.num_train=2000: expected -1 or 1..1000"):
    splits.make_splits(1000, 300, 2000, seed=0)


def test_cifar_augmentation_is_seeded_and_pads_with_zeros():
  images = jnp.full((16, 32, 32, 3), 200, jnp.uint8)
  out = augment.augment(jax.random.PRNGKey(0), images, "cifar")
  again = augment.augment(jax.random.PRNGKey(0), images, "cifar")
  assert out.shape == images.shape and out.dtype == jnp.uint8
  assert np.array_equal(out, again)
  assert (np.asarray(out) == 0).any()  # some crops include the zero padding
  assert not np.array_equal(out, augment.augment(jax.random.PRNGKey(1), images, "cifar"))


def test_flip_and_crop_move_pixels_only():
  image = jnp.arange(32 * 32 * 3, dtype=jnp.int32).reshape(1, 32, 32, 3).astype(jnp.uint8)
  out = np.asarray(augment.augment(jax.random.PRNGKey(3), image, "cifar"))[0]
  values = set(np.asarray(image).ravel().tolist()) | {0}
  assert set(out.ravel().tolist()) <= values
  assert np.array_equal(augment.augment(jax.random.PRNGKey(3), image, "none"), image)


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def test_npz_source_reads_a_valid_file(tmp_path):
  rng = np.random.default_rng(0)
  path = _write_npz(tmp_path / "d.npz", x_train=rng.integers(0, 255, (20, 4, 4, 3), dtype=np.uint8),
                    y_train=np.arange(20) % 3, x_test=rng.integers(0, 255, (6, 4, 4, 3), dtype=np.uint8),
                    y_test=np.arange(6) % 3)
  data = npz.load(path)
  assert data.num_classes == 3 and data.image_shape == (4, 4, 3) and data.y_train.dtype == np.int32


@pytest.mark.parametrize("arrays,message", [
    (dict(x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(2)), r"missing keys \['x_test', 'y_test'\]"),
    (dict(x_train=np.zeros((2, 4, 4, 3), np.float32), y_train=np.zeros(2, int), x_test=np.zeros((1, 4, 4, 3),
                                                                                                  np.uint8),
          y_test=np.zeros(1, int)), "expected uint8 images"),
    (dict(x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(3, int), x_test=np.zeros((1, 4, 4, 3),
                                                                                             np.uint8),
          y_test=np.zeros(1, int)), "expected integer labels of shape"),
    (dict(x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.array([0, -1]), x_test=np.zeros((1, 4, 4, 3),
                                                                                              np.uint8),
          y_test=np.zeros(1, int)), r"labels must lie in"),
    (dict(x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(2, int),
          x_test=np.array([None, 1], dtype=object), y_test=np.zeros(1, int)), "not a readable npz without pickle"),
])
def test_npz_source_refuses_bad_files(tmp_path, arrays, message):
  with pytest.raises(DataError, match=message):
    npz.load(_write_npz(tmp_path / "bad.npz", **arrays))


def test_a_test_label_that_training_lacks_is_refused_unless_class_names_declare_it(tmp_path):
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 255, (12, 4, 4, 3), dtype=np.uint8), y_train=np.arange(12) % 3,
                x_test=rng.integers(0, 255, (4, 4, 4, 3), dtype=np.uint8), y_test=np.array([0, 1, 7, 2]))
  with pytest.raises(DataError, match=r"y_test holds labels \[7\] that y_train lacks; add class_names"):
    npz.load(_write_npz(tmp_path / "unseen.npz", **arrays))
  names = np.array([f"c{i}" for i in range(8)])
  data = npz.load(_write_npz(tmp_path / "declared.npz", **arrays, class_names=names))
  assert data.num_classes == 8 and data.class_names[7] == "c7"


def test_npz_missing_file_and_unknown_source_are_named(tmp_path):
  with pytest.raises(DataError, match="no such file"):
    npz.load(str(tmp_path / "absent.npz"))
  config = config_lib.base()
  config.data.name = "mnist"
  with pytest.raises(DataError, match="data.name='mnist' is unknown; expected one of digits, npz, tfds"):
    load_dataset(config.data)


def test_real_cifar10_subset_loads(cifar_dir):
  data = npz.load(os.path.join(cifar_dir, "cifar10_small.npz"))
  assert data.x_train.shape == (10000, 32, 32, 3) and data.x_test.shape == (860, 32, 32, 3)
  assert data.num_classes == 10 and data.class_names[0] == "airplane"
  assert np.bincount(data.y_test).tolist() == [86] * 10
