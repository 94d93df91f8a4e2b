"""The shadow protocol: the attack learns from shadow models trained by the same recipes on data disjoint from the
target's members (Shokri et al. 2017; one shadow suffices, Salem et al. 2018) and is evaluated on the target.

One shadow per target model kind lives in <workdir>/shadow_n<size>/, a run folder of its own: the shadow's members
depend on the attack size (the target's attack-test non-members are kept out), hence one shadow run per size.
"""
import numpy as np

from mialth_jax.attacks import attack_sets
from mialth_jax.data import reserved, splits as splits_lib
from mialth_jax.experiments import attack_runs, targets as targets_lib
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol
from mialth_jax.lottery import pipeline, recipes
from mialth_jax.utils import hosts, io

SHADOW_SEED_OFFSET = 1000  # the shadow's init and data order differ from the target's: the attacker knows neither


def shadow_split(attack_run: attack_runs.AttackRun) -> tuple[np.ndarray, attack_sets.AttackSplit]:
  """(shadow members, the shadow's attack-train split), from non-members the target's attack-test never uses.

  Half of that pool trains the shadow; the attack learns from the shadow's outputs on its members vs the other half,
  with as many examples as the target protocol's attack-train part (fewer if the pool is smaller).
  """
  ctx, target = attack_run.ctx, attack_run.split
  pool = np.setdiff1d(attack_runs.nonmember_pool(ctx), target.test_nonmembers)
  order = np.random.default_rng([ctx.config.seed, SHADOW_SEED_OFFSET]).permutation(pool)
  members = np.sort(order[:len(order) // 2])
  nonmembers = np.sort(order[len(order) // 2:])
  wanted = min(len(target.train_members), len(members), len(nonmembers))
  rng = np.random.default_rng([ctx.config.seed, SHADOW_SEED_OFFSET, 1])
  empty = np.zeros(0, np.int64)
  split = attack_sets.AttackSplit(train_members=np.sort(rng.choice(members, wanted, replace=False)),
                                  train_nonmembers=np.sort(rng.choice(nonmembers, wanted, replace=False)),
                                  test_members=empty, test_nonmembers=empty)
  return members, split


def shadow_models(attack_run: attack_runs.AttackRun) -> tuple[pipeline.Context, attack_sets.AttackSplit]:
  """Trains (or finds) one shadow per model the config plans, in the shadow run folder; returns its context."""
  ctx, size = attack_run.ctx, attack_run.size
  members, split = shadow_split(attack_run)
  hosts.on_process_zero(lambda: io.write_npz(ctx.layout.shadow_split(size), members=members, **split.to_arrays()))
  config = ctx.config.copy_and_resolve_references()
  with config.unlocked():
    config.seed = ctx.config.seed + SHADOW_SEED_OFFSET
  shadow_splits = splits_lib.Splits(members=members, unused_train=np.zeros(0, np.int64), test=np.zeros(0, np.int64))
  shadow_ctx = pipeline.setup(config, ctx.layout.shadow_run(size).workdir, dataset=ctx.dataset, splits=shadow_splits)
  shadow_ctx.log_prefix = f"{ctx.layout.shadow_run(size).label}/"  # "[shadow_n898/dense]", not "[dense]" again
  reserved.hand_to_copy(ctx, shadow_ctx.layout)  # e.g. Min-Max shadows train on the target's reference set
  pipeline.ensure_w0(shadow_ctx)
  for spec in recipes.plan(config):
    pipeline.train_model(shadow_ctx, spec)
  return shadow_ctx, split


@PROTOCOLS.register("shadow")
class Shadow(Protocol):
  title = "shadow-model protocol (attack learnt on a shadow model, applied to the target)"

  def run(self, attack_run, models, attack_configs):
    shadow_ctx, split = shadow_models(attack_run)
    shadow_ids, shadow_member = attack_runs.part(split, "train")

    def shadow_outputs(target):  # the shadow of the target's kind, e.g. shadow ticket_s80 for ticket_s80
      return targets_lib.model_target(shadow_ctx, target.label).outputs(shadow_ids), shadow_member
    own = [attack_run.target(m) for m in models]
    return attack_run.evaluate_pairs("shadow", own, lambda t: [t], attack_configs, shadow_outputs)
