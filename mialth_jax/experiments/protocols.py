"""Attack protocols: who the attacker learns from and whom it is evaluated on. One class + one `PROTOCOLS.register`.

paper:    the attack learns from the target model's own outputs on known members / non-members (attack-train) and is
          evaluated on disjoint members / non-members of the same model (attack-test): Bagmar et al.'s setup.
transfer: the attack learns from model A's outputs and is evaluated on model B's, for every pair (their Fig. 4);
          the diagonal is the paper protocol. `attacks.transfer_runs` adds the models of other run folders with the
          same members and attack split (e.g. ResNet-50 next to ResNet-18), labelled "<run folder>/<model>".

A protocol's `run(attack_run, models, attack_configs)` returns {(source, target, attack): metrics}; `title` heads its
section in the report.
"""
import numpy as np

from mialth_jax.attacks import attack_sets
from mialth_jax.experiments import attack_runs, targets as targets_lib
from mialth_jax.utils.registry import Registry


class Protocol:
  title = ""          # heads the protocol's section in the report
  in_verdict = False  # its attacks on a model's own outputs, on the run's attack-test examples, compete for the
                      # verdict's "strongest attack" (experiments/verdict.py)

  def run(self, attack_run: attack_runs.AttackRun, models: list[str], attack_configs: dict) -> dict:
    raise NotImplementedError


PROTOCOLS = Registry("protocol")


def own_outputs(attack_run: attack_runs.AttackRun):
  """source_train for protocols whose attacker learns from the source model's own attack-train outputs."""
  train_ids, train_member = attack_run.part("train")
  return lambda target: (target.outputs(train_ids), train_member)


@PROTOCOLS.register("paper")
class Paper(Protocol):
  title = "paper protocol (attack learnt on the target's own outputs)"
  in_verdict = True

  def run(self, attack_run, models, attack_configs):
    own = [attack_run.target(m) for m in models]
    return attack_run.evaluate_pairs("paper", own, lambda t: [t], attack_configs, own_outputs(attack_run))


@PROTOCOLS.register("transfer")
class Transfer(Protocol):
  title = "transfer protocol (attack learnt on one model, applied to another)"

  def run(self, attack_run, models, attack_configs):
    everyone = [attack_run.target(m) for m in models] + external_targets(attack_run)
    return attack_run.evaluate_pairs("transfer", everyone, lambda t: everyone, attack_configs,
                                     own_outputs(attack_run))


def external_targets(attack_run: attack_runs.AttackRun) -> list:
  """Finished models of `attacks.transfer_runs`, which must share this run's members and attack split.

  Those runs are only read; their models' outputs are cached in this run's folder.
  """
  ctx, size = attack_run.ctx, attack_run.size
  found = []
  for workdir in ctx.config.attacks.transfer_runs:
    other = targets_lib.open_run(workdir, "attacks.transfer_runs")
    mine = attack_run.split.to_arrays()
    theirs = attack_runs.attack_split(other, size, write=False).to_arrays()
    if not (np.array_equal(ctx.splits.members, other.splits.members)
            and all(np.array_equal(mine[k], theirs[k]) for k in mine)):
      raise attack_sets.AttackError(f"attacks.transfer_runs: {workdir} has other members or another attack split; "
                                    "cross-run transfer needs the same data, data.num_train and seed")
    found += targets_lib.finished_targets(other, other.layout.label + "/", cache=ctx.layout)
  return found
