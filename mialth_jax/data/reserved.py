"""Example ids that a feature reserves for itself and that no evaluation may use (e.g. a defender's own reference
non-members).

A feature registers a `Reservation`: `draw(config, splits)` gives the ids (sorted global ids, empty when the config
does not use the feature), and optionally `hand_to_copy(ctx, copy_layout)` records them in the folder of a protocol's
own copy of the run before the copy trains (a copy trained by the attacker holds only members, and needs the same
reserved set). `experiments.attack_runs.nonmember_pool` leaves every reserved id out of the non-members, so no attack
set, and no model a protocol trains on non-members, ever holds one.
"""
import dataclasses
from typing import Callable

import numpy as np

from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class Reservation:
  draw: Callable                           # (config, splits) -> np.ndarray of global ids
  hand_to_copy: Callable | None = None   # (ctx, copy_layout) -> None


RESERVATIONS = Registry("reserved example ids")


def reserved_ids(config, splits) -> np.ndarray:
  """Every registered feature's reserved ids for this config and split (sorted, unique)."""
  drawn = [np.asarray(r.draw(config, splits), np.int64) for r in RESERVATIONS.values()]
  return np.unique(np.concatenate(drawn)) if drawn else np.zeros(0, np.int64)


def hand_to_copy(ctx, copy_layout) -> None:
  """Records each feature's reserved ids in the folder of a copy of the run `ctx` that a protocol trains."""
  for reservation in RESERVATIONS.values():
    if reservation.hand_to_copy is not None:
      reservation.hand_to_copy(ctx, copy_layout)
