"""The privacy onion (Carlini et al. 2022, "The Privacy Onion Effect"): an onion run is a run of its own that trains
like a finished source run (`onion.of`) but leaves out k examples (`onion.remove`): the k most exposed under the
source's dense zoo (`onion.removal = most_exposed`, ranked by the source's recorded per-example exposure,
attacks/per_example/<attack>_examples.json.gz), or, for its control run, k drawn at random with a seeded draw from the
same candidates (`random`: every example whose dense exposure the source measured). experiments.onion_effect then
compares the examples that both runs kept.

Everything else is the source's: seed, data, network, training, tickets, and the zoo's membership (its recorded
shadows/keep.npy). Every training set loses exactly k examples, so that all of them keep one size (m - k, m the
source's member count) and one number of steps in the onion run and its control alike: the removed ones it held and,
for the rest of the k, its members of highest seeded priority (one priority per zoo model and example, and one per
training image for the run's own models, the same in both runs, so their extra drops overlap as far as the removed
sets let them). The removed ids are reserved (data.reserved): no attack set holds them. They stay in the zoo's pool
arrays (lottery.zoo_pipeline's pool is the whole dataset) but no zoo model trains on them, so they have no exposure
in the onion run and are left out of every comparison.

  <workdir>/onion.json   the source, the rule, k, the removed ids and their source exposure
"""
import functools
import json
import os

import numpy as np

from mialth_jax import errors, layout as layout_lib, run_dir
from mialth_jax.data import reserved, splits as splits_lib
from mialth_jax.experiments import exposure, per_example, zoo
from mialth_jax.lottery import zoo_pipeline
from mialth_jax.utils import config_sections, hosts, io

FILE = "onion.json"
REMOVALS = ("most_exposed", "random")
_SEED = 0x0710
ZOO_FIELDS = ("zoo.num_models", "zoo.queries")  # beyond run_dir.MODEL_DEFINING: what the zoo's membership needs


def planned(config) -> bool:
  """Whether the config is an onion run's (configs recorded before the onion existed are not)."""
  return "onion" in config and bool(config.onion.of)


def source_examples_path(source: str, attack: str) -> str:
  return per_example.paths(layout_lib.RunLayout(source), attack)[1]


@functools.lru_cache(maxsize=4)
def _read_source(examples_path: str, modified: int) -> tuple[np.ndarray, np.ndarray]:
  del modified  # part of the cache key only: a rewritten file is read again
  recorded = io.read_json(examples_path)
  dense = np.array([np.nan if v is None else v for v in recorded["kinds"]["dense"]["exposure"]], np.float64)
  return np.asarray(recorded["ids"], np.int64), dense


def source_exposure(config) -> tuple[np.ndarray, np.ndarray]:
  """(pool ids [N], dense exposure [N], NaN where not measured) recorded by the source run."""
  path = source_examples_path(config.onion.of, config.per_example.attack)
  if not os.path.exists(path):
    raise errors.ConfigError(f"onion.of={config.onion.of}: the run holds no per-example results of "
                             f"per_example.attack={config.per_example.attack} ({path}); launch it with "
                             "per_example.record=True first")
  return _read_source(path, os.stat(path).st_mtime_ns)


def chosen(dense_exposure: np.ndarray, count: int, removal: str, seed: int) -> np.ndarray:
  """Pool positions removed: the `count` largest finite exposures (ties: the lower position), or `count` seeded
  random positions among the finite ones; sorted."""
  if removal == "most_exposed":
    return np.sort(exposure.top(dense_exposure, count))
  candidates = np.flatnonzero(np.isfinite(dense_exposure))
  return np.sort(np.random.default_rng([seed, _SEED, 2]).choice(candidates, count, replace=False))


def removed_ids(config) -> np.ndarray:
  """The run's removed global ids (sorted; empty when it is not an onion run)."""
  if not planned(config):
    return np.zeros(0, np.int64)
  ids, dense = source_exposure(config)
  return ids[chosen(dense, config.onion.remove, config.onion.removal, config.seed)]


def thinned(kept: np.ndarray, priority: np.ndarray, size: int) -> np.ndarray:
  """bool mask `kept` less its entries of highest `priority` (ties: the lower position), down to `size` entries."""
  positions = np.flatnonzero(kept)
  dropped = positions[np.argsort(-priority[positions], kind="stable")[:len(positions) - size]]
  out = kept.copy()
  out[dropped] = False
  return out


def onion_members(splits: splits_lib.Splits, removed: np.ndarray, seed: int) -> splits_lib.Splits:
  """The split less the removed ids and, for the rest of the k, the members of highest seeded priority; every
  training image not a member joins the unused ones."""
  num_train = len(splits.members) + len(splits.unused_train)
  kept = np.isin(np.arange(num_train), splits.members) & ~np.isin(np.arange(num_train), removed)
  priority = np.random.default_rng([seed, _SEED, 0]).random(num_train)
  members = np.flatnonzero(thinned(kept, priority, len(splits.members) - len(removed)))
  return splits_lib.Splits(members=members, unused_train=np.setdiff1d(np.arange(num_train), members),
                           test=splits.test)


def onion_keep(keep: np.ndarray, removed_positions: np.ndarray, size: int, seed: int) -> np.ndarray:
  """keep [S, N] of the source's zoo with the removed pool positions left out of every model and each row thinned
  to `size` by a seeded priority per (model, example)."""
  priority = np.random.default_rng([seed, _SEED, 1]).random(keep.shape)
  without = keep & ~np.isin(np.arange(keep.shape[1]), removed_positions)
  return np.stack([thinned(row, p, size) for row, p in zip(without, priority)])


def edit_splits(config, splits: splits_lib.Splits) -> splits_lib.Splits:
  return onion_members(splits, removed_ids(config), config.seed) if planned(config) else splits


def record(config) -> dict:
  """What onion.json holds for this config."""
  ids, dense = source_exposure(config)
  positions = chosen(dense, config.onion.remove, config.onion.removal, config.seed)
  return {"of": os.path.abspath(config.onion.of), "attack": config.per_example.attack,
          "removal": config.onion.removal, "remove": config.onion.remove,
          "candidates": int(np.isfinite(dense).sum()), "removed": ids[positions].tolist(),
          "source_exposure": dense[positions].tolist()}


def check_recorded(path: str, expected) -> None:
  """Refuses a recorded file that differs from what this config gives (another run's record)."""
  if os.path.exists(path) and io.read_json(path) != json.loads(json.dumps(expected)):
    raise errors.ConfigError(f"{path}: records another onion (onion.of, onion.remove, onion.removal, seed) or zoo "
                             "than this config gives; it belongs to another run")


def decide_zoo(ctx) -> None:
  """Before the zoo trains: onion.json and the zoo's membership (the source's, less the removed ids), recorded where
  lottery.zoo_pipeline reads it; a relaunch checks both against the config."""
  if not planned(ctx.config):
    return
  layout, onion = ctx.layout, record(ctx.config)
  source = layout_lib.RunLayout(ctx.config.onion.of)
  pool_ids = io.read_npy(source.zoo("ids.npy"))
  keep = onion_keep(io.read_npy(source.zoo("keep.npy")), np.flatnonzero(np.isin(pool_ids, onion["removed"])),
                    len(ctx.splits.members), ctx.config.seed)
  settings = zoo_pipeline.zoo_settings(ctx)
  check_recorded(layout.path(FILE), onion)
  check_recorded(layout.zoo("zoo.json"), settings)
  if os.path.exists(layout.zoo("zoo.json")):
    if not np.array_equal(io.read_npy(layout.zoo("keep.npy")), keep):
      raise errors.ConfigError(f"{layout.zoo('keep.npy')}: another zoo membership than this onion's; it belongs to "
                               "another run")
    return

  def write():
    io.write_json(layout.path(FILE), onion)
    io.write_npy(layout.zoo("keep.npy"), keep)
    io.write_npy(layout.zoo("seeds.npy"), io.read_npy(source.zoo("seeds.npy")))
    io.write_npy(layout.zoo("ids.npy"), pool_ids)
    io.write_json(layout.zoo("zoo.json"), settings)  # last, as zoo_pipeline.record_zoo writes it
  hosts.on_process_zero(write)


def _source_config(config) -> dict:
  path = layout_lib.RunLayout(config.onion.of).config
  if not os.path.exists(path):
    raise errors.ConfigError(f"onion.of={config.onion.of}: not a run folder (no config.json); expected the workdir "
                             "of a finished zoo run with per-example results")
  return io.read_json(path)


def _differing(source: dict, config) -> list[str]:
  """Fields that decide the models or the zoo's membership in which the run differs from its source."""
  mine = json.loads(config.to_json())
  differing = run_dir.differing_fields(source, mine)
  for field in (*ZOO_FIELDS, "per_example.attack"):
    section, name = field.split(".")
    if source.get(section, {}).get(name) != mine[section][name]:
      differing.append(field)
  return differing


def validate(config) -> None:
  section = config.onion
  if not section.of:
    if section.remove:
      raise errors.ConfigError(f"onion.of: expected the workdir of the source run whose examples onion.remove="
                               f"{section.remove} leaves out, got none")
    return
  if section.removal not in REMOVALS:
    raise errors.ConfigError(f"onion.removal={section.removal!r}: expected one of {', '.join(REMOVALS)}")
  if "zoo" not in config.attacks.protocols or not config.per_example.record:
    raise errors.ConfigError("onion.of: an onion run needs the zoo protocol (attacks.protocols) and its per-example "
                             "record (per_example.record=True), which the comparison reads")
  differing = _differing(_source_config(config), config)
  if differing:
    raise errors.ConfigError(f"onion.of={section.of}: the source run differs in {', '.join(differing)}; an onion run "
                             "trains like its source but for the examples it leaves out")
  _, dense = source_exposure(config)
  members = io.read_json(layout_lib.RunLayout(section.of).zoo("zoo.json"))["subset_size"]
  largest = min(int(np.isfinite(dense).sum()), members) - 1
  if isinstance(section.remove, bool) or not isinstance(section.remove, int) or not 1 <= section.remove <= largest:
    raise errors.ConfigError(f"onion.remove={section.remove!r}: expected a whole number in [1, {largest}] (below "
                             f"the source's {int(np.isfinite(dense).sum())} examples with a dense exposure and its "
                             f"{members} members per training set)")


SETTINGS = config_sections.register("onion", "the privacy onion: this run leaves out the most exposed examples of a "
                                             "finished run, or random ones (experiments/onion.py)", {
    "of": ("", "workdir of the finished source run (zoo protocol, per_example.record=True); empty: not an onion run"),
    "remove": (0, "k: the examples left out of every training set"),
    "removal": ("most_exposed", "most_exposed: the k most exposed under the source's dense zoo | random: k seeded "
                                "random ones of the same candidates (the control run)"),
}, validate=validate)
splits_lib.EDITS.register("onion", edit_splits)
zoo.BEFORE_TRAINING.register("onion", decide_zoo)
reserved.RESERVATIONS.register("onion", reserved.Reservation(draw=lambda config, splits: removed_ids(config)))
