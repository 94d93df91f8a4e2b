"""The balanced attack set: members and non-members, split into disjoint attack-train and attack-test parts.

Ids are opaque integers (what they index is the caller's business). Each part holds as many members as non-members,
and every id is drawn without replacement, so no example appears twice.
"""
import dataclasses

import numpy as np

from mialth_jax.attacks.inputs import AttackError
from mialth_jax.utils import io


@dataclasses.dataclass(frozen=True, eq=False)
class AttackSplit:
  """Ids of each part of an attack set, each array sorted ascending."""
  train_members: np.ndarray
  train_nonmembers: np.ndarray
  test_members: np.ndarray
  test_nonmembers: np.ndarray

  def to_arrays(self) -> dict[str, np.ndarray]:
    """The four arrays by field name, for `np.savez`; `AttackSplit.read` restores it."""
    return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

  @classmethod
  def read(cls, path: str) -> "AttackSplit":
    """The split recorded at `path`; anything but the four 1-D integer id arrays raises naming the file."""
    return cls(**io.read_id_arrays(path, [f.name for f in dataclasses.fields(cls)]))


def _check_pool(name: str, pool: np.ndarray) -> np.ndarray:
  pool = np.asarray(pool)
  if pool.ndim != 1 or not np.issubdtype(pool.dtype, np.integer):
    raise AttackError(f"{name} pool: expected a 1-D integer array of ids, got {pool.dtype} {pool.shape}")
  if len(np.unique(pool)) != len(pool):
    raise AttackError(f"{name} pool: holds {len(pool) - len(np.unique(pool))} duplicate ids")
  return pool


def check_size(size, field: str = "attack set size") -> int:
  """`size` if it is an even integer >= 4 (half members, half non-members); anything else raises naming `field`."""
  if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size % 2:
    raise AttackError(f"{field}: {size!r} must be -1 or an even number >= 4 (half members, half non-members)")
  return size


def resolve_size(size: int, num_members: int, num_nonmembers: int) -> int:
  """The attack-set size: `size` checked, or for -1 the largest balanced set the pools allow."""
  if size == -1:
    size = 2 * min(num_members, num_nonmembers)
  check_size(size)
  half = size // 2
  short = [f"{n} {what}" for n, what in ((num_members, "members"), (num_nonmembers, "non-members")) if n < half]
  if short:
    raise AttackError(f"attack set of {size} needs {half} members and {half} non-members; only "
                      f"{' and '.join(short)} available")
  return size


def make_attack_split(member_pool: np.ndarray, nonmember_pool: np.ndarray, size: int, test_fraction: float,
                      seed: int) -> AttackSplit:
  """Draws size/2 members and size/2 non-members (numpy default_rng(seed)) and splits each into train / test."""
  member_pool, nonmember_pool = _check_pool("member", member_pool), _check_pool("non-member", nonmember_pool)
  if not 0 < test_fraction < 1:
    raise AttackError(f"test_fraction must lie in (0, 1), got {test_fraction}")
  half = resolve_size(size, len(member_pool), len(nonmember_pool)) // 2
  # Both parts get at least one example of each kind, so both can be scored.
  num_test = min(max(int(round(half * test_fraction)), 1), half - 1)
  rng = np.random.default_rng(seed)
  members = rng.choice(member_pool, half, replace=False)
  nonmembers = rng.choice(nonmember_pool, half, replace=False)
  return AttackSplit(train_members=np.sort(members[num_test:]), train_nonmembers=np.sort(nonmembers[num_test:]),
                     test_members=np.sort(members[:num_test]), test_nonmembers=np.sort(nonmembers[:num_test]))
