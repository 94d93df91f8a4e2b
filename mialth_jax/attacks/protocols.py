"""Attack protocols over the models of a run folder, each result written once (a finished result is not redone).

paper:    the attack learns from the target model's own outputs on known members / non-members (attack-train) and is
          evaluated on disjoint members / non-members of the same model (attack-test): Bagmar et al.'s setup.
transfer: the attack learns from model A's outputs and is evaluated on model B's, for every pair (their Fig. 4);
          the diagonal is the paper protocol. `attacks.transfer_runs` adds the models of other run folders with the
          same members and attack split (e.g. ResNet-50 next to ResNet-18), labelled "<run folder>/<model>".
shadow:   the attack learns from shadow models trained by the same pipeline on data disjoint from the target's
          members (Shokri et al. 2017; one shadow suffices, Salem et al. 2018) and is evaluated on the target.

Layout: attacks/n<size>/split.npz, attacks/n<size>/<protocol>/<source>__<target>/<attack>.{json,npz};
shadow models live in shadow_n<size>/, a run folder of their own.
"""
import os
from typing import NamedTuple

import ml_collections
import numpy as np

from mialth_jax import run_dir
from mialth_jax.attacks import attack_sets, extract, registry
from mialth_jax.data import splits as splits_lib
from mialth_jax.utils import io


def nonmember_pool(ctx) -> np.ndarray:
  """Global ids of non-members: the test split (the paper), optionally plus the unused training images."""
  num_train = len(ctx.dataset.y_train)
  pool = ctx.splits.test + num_train
  if ctx.config.attacks.nonmembers == "test+unused_train":
    pool = np.concatenate([pool, ctx.splits.unused_train])
  return np.sort(pool)


def resolve_size(ctx, size: int) -> int:
  """The attack-set size checked against this run's pools; -1 becomes the largest balanced set they allow."""
  return attack_sets.resolve_size(size, len(ctx.splits.members), len(nonmember_pool(ctx)))


def attack_dir(ctx, size: int) -> str:
  return os.path.join(ctx.workdir, "attacks", f"n{size}")


def attack_split(ctx, size: int) -> attack_sets.AttackSplit:
  """The balanced, seeded member / non-member split shared by every model of the run (recorded on disk)."""
  path = os.path.join(attack_dir(ctx, size), "split.npz")
  if os.path.exists(path):
    split = attack_sets.AttackSplit.read(path)
    members = np.r_[split.train_members, split.test_members]
    nonmembers = np.r_[split.train_nonmembers, split.test_nonmembers]
    if not (np.isin(members, ctx.splits.members).all() and np.isin(nonmembers, nonmember_pool(ctx)).all()):
      raise attack_sets.AttackError(f"{path}: records ids that are not members / non-members of this run; it belongs "
                                    "to another run (move it away to draw a new split)")
    return split
  split = attack_sets.make_attack_split(ctx.splits.members, nonmember_pool(ctx), size,
                                        ctx.config.attacks.test_fraction, seed=ctx.config.seed)
  io.write_npz(path, **split.to_arrays())
  return split


def _part(split: attack_sets.AttackSplit, part: str) -> tuple[np.ndarray, np.ndarray]:
  """(ids, is_member) of the attack-train or attack-test part."""
  members, nonmembers = getattr(split, f"{part}_members"), getattr(split, f"{part}_nonmembers")
  return np.concatenate([members, nonmembers]), np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]


class ModelRef(NamedTuple):
  """A finished model: `label` names it in results, `ctx` is the run it belongs to, `name` its folder there."""
  label: str
  ctx: object
  name: str


def _result_paths(ctx, size: int, protocol: str, source: str, target: str, attack: str) -> tuple[str, str]:
  pair = f"{source}__{target}".replace("/", ".")
  stem = os.path.join(attack_dir(ctx, size), protocol, pair, attack)
  return stem + ".json", stem + ".npz"


def _once_per_model(fn):
  """fn(model ref), computed on the first call for each model label and remembered."""
  values = {}

  def once(ref: ModelRef):
    if ref.label not in values:
      values[ref.label] = fn(ref)
    return values[ref.label]
  return once


def evaluate_pairs(ctx, size: int, protocol: str, sources: list[ModelRef], targets_for, attack_configs: dict,
                   source_train) -> dict:
  """Fits each attack once per source model and evaluates it on each of that source's targets.

  source_train(source) -> (AttackInputs, is_member): what the attacker learns from. Results are written under ctx.
  """
  test_ids, test_member = _part(attack_split(ctx, size), "test")
  train_inputs = _once_per_model(source_train)  # each model's outputs are read once, not once per attack and pair
  test_inputs = _once_per_model(lambda target: extract.model_outputs(target.ctx, target.name, test_ids))
  results = {}
  for source in sources:
    targets = targets_for(source)
    for name, attack_config in attack_configs.items():
      paths = {t.label: _result_paths(ctx, size, protocol, source.label, t.label, name) for t in targets}
      todo = [t for t in targets if not os.path.exists(paths[t.label][0])]
      if todo:
        attack = registry.make_attack(dict(attack_config)).fit(*train_inputs(source))
      for target in todo:
        result, per_example = registry.evaluate(attack, test_inputs(target), test_member,
                                                num_bootstrap=ctx.config.attacks.num_bootstrap, seed=ctx.config.seed)
        result.update(protocol=protocol, source=source.label, target=target.label, attack=name, size=size,
                      attack_config=dict(attack_config))
        io.write_npz(paths[target.label][1], ids=test_ids, **per_example)
        io.write_json(paths[target.label][0], result)
      for target in targets:
        results[(source.label, target.label, name)] = io.read_json(paths[target.label][0])
  return results


def external_models(ctx, size: int) -> list[ModelRef]:
  """Finished models of `attacks.transfer_runs`, which must share this run's members and attack split."""
  from mialth_jax.lottery import pipeline  # the attack engine depends on the lottery engine only here
  refs = []
  for workdir in ctx.config.attacks.transfer_runs:
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
      raise ValueError(f"attacks.transfer_runs: {workdir} holds no run (config.json missing)")
    other = pipeline.setup(ml_collections.ConfigDict(io.read_json(config_path)), workdir)
    mine, theirs = attack_split(ctx, size).to_arrays(), attack_split(other, size).to_arrays()
    if not (np.array_equal(ctx.splits.members, other.splits.members)
            and all(np.array_equal(mine[k], theirs[k]) for k in mine)):
      raise ValueError(f"attacks.transfer_runs: {workdir} has other members or another attack split; cross-run "
                       "transfer needs the same data, data.num_train and seed")
    label = os.path.basename(os.path.normpath(workdir))
    refs += [ModelRef(f"{label}/{m}", other, m) for m in run_dir.finished_models(workdir)]
  return refs


def run_protocol(ctx, protocol: str, models: list[str], size: int, attack_configs: dict) -> dict:
  """Runs one protocol for the given target models; returns {(source, target, attack): metrics}."""
  train_ids, train_member = _part(attack_split(ctx, size), "train")
  own = [ModelRef(m, ctx, m) for m in models]

  def own_outputs(ref):
    return extract.model_outputs(ref.ctx, ref.name, train_ids), train_member
  if protocol == "paper":
    return evaluate_pairs(ctx, size, protocol, own, lambda m: [m], attack_configs, own_outputs)
  if protocol == "transfer":
    everyone = own + external_models(ctx, size)
    return evaluate_pairs(ctx, size, protocol, everyone, lambda m: everyone, attack_configs, own_outputs)
  if protocol == "shadow":
    shadow_ctx, shadow_split = shadow_models(ctx, size)
    shadow_ids, shadow_member = _part(shadow_split, "train")

    def shadow_outputs(ref):
      return extract.model_outputs(shadow_ctx, ref.name, shadow_ids), shadow_member
    return evaluate_pairs(ctx, size, protocol, own, lambda m: [m], attack_configs, shadow_outputs)
  raise ValueError(f"attacks.protocol={protocol!r} is unknown; expected paper, transfer or shadow")


SHADOW_SEED_OFFSET = 1000  # the shadow's init and data order differ from the target's: the attacker knows neither


def shadow_split(ctx, size: int) -> tuple[np.ndarray, attack_sets.AttackSplit]:
  """(shadow members, the shadow's attack-train split), from non-members the target's attack-test never uses.

  Half of that pool trains the shadow; the attack learns from the shadow's outputs on its members vs the other half,
  with as many examples as the target protocol's attack-train part (fewer if the pool is smaller).
  """
  target = attack_split(ctx, size)
  pool = np.setdiff1d(nonmember_pool(ctx), target.test_nonmembers)
  order = np.random.default_rng([ctx.config.seed, SHADOW_SEED_OFFSET]).permutation(pool)
  members, nonmembers = np.sort(order[:len(order) // 2]), np.sort(order[len(order) // 2:])
  wanted = min(len(target.train_members), len(members), len(nonmembers))
  rng = np.random.default_rng([ctx.config.seed, SHADOW_SEED_OFFSET, 1])
  empty = np.zeros(0, np.int64)
  split = attack_sets.AttackSplit(train_members=np.sort(rng.choice(members, wanted, replace=False)),
                                  train_nonmembers=np.sort(rng.choice(nonmembers, wanted, replace=False)),
                                  test_members=empty, test_nonmembers=empty)
  return members, split


def shadow_models(ctx, size: int):
  """Trains (or finds) one shadow per target model kind in <workdir>/shadow_n<size>; returns its context.

  The shadow's members depend on the attack size (the target's attack-test non-members are kept out), hence one
  shadow run folder per size.
  """
  from mialth_jax.lottery import pipeline  # the attack engine depends on the lottery engine only here
  members, split = shadow_split(ctx, size)
  workdir = os.path.join(ctx.workdir, f"shadow_n{size}")
  io.write_npz(os.path.join(attack_dir(ctx, size), "shadow_split.npz"), members=members, **split.to_arrays())
  config = ctx.config.copy_and_resolve_references()
  with config.unlocked():
    config.seed = ctx.config.seed + SHADOW_SEED_OFFSET
  shadow_splits = splits_lib.Splits(members=members, unused_train=np.zeros(0, np.int64), test=np.zeros(0, np.int64))
  shadow_ctx = pipeline.setup(config, workdir, dataset=ctx.dataset, splits=shadow_splits)
  pipeline.ensure_w0(shadow_ctx)
  for spec in pipeline.plan(config.lottery):
    pipeline.train_model(shadow_ctx, spec)
  return shadow_ctx, split
