"""Balanced attack sets: disjoint parts, exact sizes, determinism, clear errors."""
import numpy as np
import pytest

from mialth_jax.attacks import attack_sets
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.utils import io

MEMBERS = np.arange(0, 3000, 3)         # 1000 opaque ids
NONMEMBERS = np.arange(10_000, 10_900)  # 900 ids


def test_parts_are_balanced_disjoint_sorted_and_drawn_from_the_pools():
  split = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, size=1000, test_fraction=0.3, seed=0)
  assert len(split.train_members) == len(split.train_nonmembers) == 350
  assert len(split.test_members) == len(split.test_nonmembers) == 150
  for part in split.to_arrays().values():
    assert np.all(np.diff(part) > 0)  # sorted, no repeats
  assert not np.intersect1d(split.train_members, split.test_members).size
  assert not np.intersect1d(split.train_nonmembers, split.test_nonmembers).size
  assert np.isin(np.r_[split.train_members, split.test_members], MEMBERS).all()
  assert np.isin(np.r_[split.train_nonmembers, split.test_nonmembers], NONMEMBERS).all()


def test_deterministic_for_a_seed():
  first = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 200, 0.5, seed=3).to_arrays()
  again = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 200, 0.5, seed=3).to_arrays()
  other = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 200, 0.5, seed=4).to_arrays()
  assert all(np.array_equal(first[k], again[k]) for k in first)
  assert not np.array_equal(first["train_members"], other["train_members"])


def test_minus_one_takes_the_largest_balanced_set():
  split = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, size=-1, test_fraction=0.5, seed=0)
  assert len(split.train_nonmembers) + len(split.test_nonmembers) == 900
  assert np.array_equal(np.sort(np.r_[split.train_nonmembers, split.test_nonmembers]), NONMEMBERS)
  assert len(split.train_members) + len(split.test_members) == 900


def test_round_trips_through_npz(tmp_path):
  split = attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 100, 0.5, seed=1)
  io.write_npz(str(tmp_path / "split.npz"), **split.to_arrays())
  restored = attack_sets.AttackSplit.read(str(tmp_path / "split.npz"))
  assert all(np.array_equal(getattr(split, k), getattr(restored, k)) for k in split.to_arrays())


@pytest.mark.parametrize("arrays, message", [
    (dict(members=np.arange(4)), "expected the arrays train_members, train_nonmembers, test_members, "
                                 "test_nonmembers; found members$"),
    (dict(train_members=np.arange(4.0), train_nonmembers=np.arange(4), test_members=np.arange(4),
          test_nonmembers=np.ones((2, 2), int)), r"train_members must be a 1-D integer array, got float64 \(4,\)$"),
    (dict(train_members=np.arange(4), train_nonmembers=np.arange(4), test_members=np.arange(4),
          test_nonmembers=np.ones((2, 2), int)), r"test_nonmembers must be a 1-D integer array, got int64 \(2, 2\)$"),
])
def test_a_recorded_split_with_wrong_arrays_is_named(tmp_path, arrays, message):
  path = str(tmp_path / "split.npz")
  io.write_npz(path, **arrays)
  with pytest.raises(io.UnreadableFileError, match=f"^{path}: {message}"):
    attack_sets.AttackSplit.read(path)


def test_oversize_names_what_is_missing():
  with pytest.raises(AttackError, match="^attack set of 5000 needs 2500 members and 2500 non-members; only 1000 "
                                        "members and 900 non-members available$"):
    attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 5000, 0.5, seed=0)
  with pytest.raises(AttackError, match="needs 950 members and 950 non-members; only 900 non-members available$"):
    attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 1900, 0.5, seed=0)


@pytest.mark.parametrize("size, message", [(7, "even number"), (2, "even number")])
def test_bad_size(size, message):
  with pytest.raises(AttackError, match=message):
    attack_sets.make_attack_split(MEMBERS, NONMEMBERS, size, 0.5, seed=0)


def test_duplicate_ids_and_bad_fraction_are_refused():
  with pytest.raises(AttackError, match="member pool: holds 1 duplicate ids"):
    attack_sets.make_attack_split(np.r_[MEMBERS, 0], NONMEMBERS, 100, 0.5, seed=0)
  with pytest.raises(AttackError, match="test_fraction"):
    attack_sets.make_attack_split(MEMBERS, NONMEMBERS, 100, 1.0, seed=0)
