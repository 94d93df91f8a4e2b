"""Example ids that a feature reserves for itself and that no evaluation may use (e.g. the Min-Max defender's
reference non-members, defences/reference.py).

A feature registers a `Reservation`: `draw(config, splits)` gives the ids (sorted global ids, empty when the config
does not use the feature), and optionally `hand_to_shadow(ctx, shadow_layout)` records them in a shadow run's folder
before the shadow trains (a shadow run holds only members; the attacker's shadow needs the same reserved set).
`experiments.attack_runs.nonmember_pool` leaves every reserved id out of the non-members, so no attack set and no
shadow or reference model of the protocols ever holds one.
"""
import dataclasses
from typing import Callable

import numpy as np

from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class Reservation:
  draw: Callable                           # (config, splits) -> np.ndarray of global ids
  hand_to_shadow: Callable | None = None   # (ctx, shadow_layout) -> None


RESERVATIONS = Registry("reserved example ids")


def reserved_ids(config, splits) -> np.ndarray:
  """Every registered feature's reserved ids for this config and split (sorted, unique)."""
  drawn = [np.asarray(r.draw(config, splits), np.int64) for r in RESERVATIONS.values()]
  return np.unique(np.concatenate(drawn)) if drawn else np.zeros(0, np.int64)


def hand_to_shadow(ctx, shadow_layout) -> None:
  """Records each feature's reserved ids in a shadow run's folder (features that need it there)."""
  for reservation in RESERVATIONS.values():
    if reservation.hand_to_shadow is not None:
      reservation.hand_to_shadow(ctx, shadow_layout)
