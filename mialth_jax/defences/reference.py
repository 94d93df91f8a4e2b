"""The Min-Max defender's reference set: non-members it trains its inference network on, which no evaluation uses.

Nasr et al. (CCS 2018) give the defender a reference set D' of non-members from the training distribution. Here it is
a seeded draw from the run's unused training images (`splits.unused_train`: train-split images that are not members),
`defences.minmax.reference_size` of them (-1: half of them). The draw is a pure function of (seed, splits, config), so
every process and every launch makes the same one, and it is recorded in `<workdir>/minmax_reference.npz` on first use
(and checked against the draw afterwards). They are registered as reserved ids (data.reserved), which
`experiments.attack_runs.nonmember_pool` leaves out, so no attack set and no shadow model ever holds one: the
evaluation's non-members are disjoint from D' by construction, and `check_disjoint` says so again before any Min-Max
training.

A shadow run (the shadow protocol's attacker trains its shadows with the same defence) holds only members in its
splits; the protocol hands it the target's reference ids, recorded in the shadow's folder before it trains: an
attacker who knows the defence also needs a reference set, and these images are in no attack set (the attacker-
favourable choice, i.e. the stronger adaptive attacker).
"""
import os

import jax
import numpy as np

from mialth_jax import errors
from mialth_jax.data import reserved
from mialth_jax.layout import RunLayout
from mialth_jax.utils import hosts, io

FILE = "minmax_reference.npz"
MINMAX_KINDS = ("minmax", "admm_minmax")  # the recipes (lottery.controls) that train an inference network
_SEED = 0x4EF5


def planned(config) -> bool:
  """Whether the config trains any Min-Max model (configs written before the defences existed train none)."""
  return "defences" in config and any(k in MINMAX_KINDS for k in config.lottery.controls)


def draw(config, splits) -> np.ndarray:
  """The reference ids (sorted global ids) the config asks for, from `splits.unused_train`; empty when no Min-Max
  model is planned or the run has no unused images (a shadow run: its ids come from its parent, see `load`)."""
  unused = np.asarray(splits.unused_train, np.int64)
  if not planned(config) or not unused.size:
    return np.zeros(0, np.int64)
  size = config.defences.minmax.reference_size
  size = len(unused) // 2 if size == -1 else size
  if not 1 <= size <= len(unused):
    raise errors.ConfigError(f"defences.minmax.reference_size={config.defences.minmax.reference_size}: the run has "
                             f"{len(unused)} unused training images to draw the reference set from (-1: half of them)")
  rng = np.random.default_rng([config.seed, _SEED])
  return np.sort(rng.choice(unused, size, replace=False))


def record(layout: RunLayout, ids: np.ndarray) -> None:
  """Writes the reference ids into a run folder (a new one, or the same ids again)."""
  path = layout.path(FILE)
  if os.path.exists(path):
    recorded = io.read_id_arrays(path, ["ids"])["ids"]
    if not np.array_equal(recorded, ids):
      raise errors.ConfigError(f"{path}: records another reference set than this config draws "
                               "(defences.minmax.reference_size, data.num_train, seed); it belongs to another run")
    return
  hosts.on_process_zero(lambda: io.write_npz(path, ids=np.asarray(ids, np.int64)))


def hand_to_shadow(ctx, shadow_layout: RunLayout) -> None:
  """Records the run's reference ids in its shadow run's folder (before the shadow trains), if it has any."""
  ids = draw(ctx.config, ctx.splits)
  if ids.size and jax.process_index() == 0:
    record(shadow_layout, ids)


def load(ctx) -> np.ndarray:
  """The reference ids of the run `ctx`: its own draw (recorded on first use), or, in a shadow run whose splits hold
  no unused images, the ids its protocol recorded there. Checked disjoint from the run's members."""
  ids = draw(ctx.config, ctx.splits)
  path = ctx.layout.path(FILE)
  if ids.size:
    if jax.process_index() == 0:
      record(ctx.layout, ids)
  elif os.path.exists(path):
    ids = io.read_id_arrays(path, ["ids"])["ids"].astype(np.int64)
  else:
    raise errors.ConfigError(f"defences.minmax: the run has no unused training images to take the reference set "
                             f"from; set data.num_train below the {len(ctx.dataset.y_train)} training images")
  check_disjoint(ids, {"members": ctx.splits.members})
  return ids


def check_disjoint(ids: np.ndarray, others: dict[str, np.ndarray]) -> None:
  """Raises if a reference id is among any of `others` ({name: ids})."""
  for name, other in others.items():
    shared = np.intersect1d(ids, other)
    if shared.size:
      raise errors.ConfigError(f"defences.minmax: {shared.size} reference images are also {name} "
                               f"(e.g. id {int(shared[0])}); the reference set must be non-members no evaluation uses")


reserved.RESERVATIONS.register("minmax_reference", reserved.Reservation(draw=draw, hand_to_copy=hand_to_shadow))
