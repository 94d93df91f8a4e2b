"""One attack set of a run (one size): its recorded split, the targets, and fitting / evaluating attacks on them.

Every protocol works through an `AttackRun`: it reads or draws the split once, builds each target once, reads each
target's outputs once per part, and writes each result once (a finished result, whose .json exists, is not redone).
"""
import os

import numpy as np

from mialth_jax.attacks import attack_sets, contracts, registry
from mialth_jax.data import reserved
from mialth_jax.experiments import targets as targets_lib
from mialth_jax.utils import hosts, io


def nonmember_pool(ctx) -> np.ndarray:
  """Global ids of non-members: the test split (the paper), optionally plus the unused training images, less the ids
  that features reserve (data.reserved), which no evaluation may use."""
  pool = ctx.splits.test + len(ctx.dataset.y_train)
  if ctx.config.attacks.nonmembers == "test+unused_train":
    pool = np.concatenate([pool, ctx.splits.unused_train])
  return np.setdiff1d(pool, reserved.reserved_ids(ctx.config, ctx.splits))


def resolve_size(ctx, size: int) -> int:
  """The attack-set size checked against this run's pools; -1 becomes the largest balanced set they allow."""
  return attack_sets.resolve_size(size, len(ctx.splits.members), len(nonmember_pool(ctx)))


def attack_split(ctx, size: int, write: bool = True) -> attack_sets.AttackSplit:
  """The balanced, seeded member / non-member split shared by every model of the run (recorded on disk).

  With write=False (another run's folder) a split not yet recorded there is drawn as that run would draw it.
  """
  path = ctx.layout.attack_split(size)
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
  if write:
    hosts.on_process_zero(lambda: io.write_npz(path, **split.to_arrays()))
  return split


def part(split: attack_sets.AttackSplit, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(ids, is_member) of the attack-train or attack-test part."""
  members, nonmembers = getattr(split, f"{name}_members"), getattr(split, f"{name}_nonmembers")
  return np.concatenate([members, nonmembers]), np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]


class Scored:
  """Scores and decisions already computed on attack-test, in the score / predict shape `AttackRun.record` takes
  (for attacks that do not score AttackInputs: those calibrated on reference models or querying the target)."""

  def __init__(self, scores: np.ndarray, predicted: np.ndarray | None):
    self.scores = scores
    self.predicted = predicted

  def score(self, inputs) -> np.ndarray:
    return self.scores

  def predict(self, inputs) -> np.ndarray:
    return self.predicted


class AttackRun:
  """The attack set of `size` examples of the run `ctx`, and the results of every protocol on it."""

  def __init__(self, ctx, size: int):
    self.ctx = ctx
    self.size = size
    self.split = attack_split(ctx, size)
    self._targets = {}
    self._test_inputs = {}

  def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    return part(self.split, name)

  def target(self, name: str):
    """This run's finished model `name` as a target (built once)."""
    if name not in self._targets:
      self._targets[name] = targets_lib.model_target(self.ctx, name)
    return self._targets[name]

  def evaluate_pairs(self, protocol: str, sources: list, targets_for, attack_configs: dict, source_train) -> dict:
    """Fits each attack once per source target and evaluates it on each of that source's targets.

    source_train(source) -> (AttackInputs, is_member): what the attacker learns from. Results are written under the
    run's layout; returns {(source label, target label, attack name): metrics}.
    """
    layout = self.ctx.layout
    train_inputs = _once_per_target(source_train)  # each model's outputs are read once, not once per attack and pair
    results = {}
    for source in sources:
      targets = targets_for(source)
      for name, attack_config in registry.of_contract(attack_configs, contracts.LabelledOutputsAttack).items():
        paths = {t.label: layout.result(self.size, protocol, source.label, t.label, name) for t in targets}
        todo = [t for t in targets if not os.path.exists(paths[t.label][0])]
        if todo:
          attack = registry.make_attack(dict(attack_config)).fit(*train_inputs(source))
        for target in todo:
          self.record(protocol, source.label, target, name, attack_config, attack)
        for target in targets:
          results[(source.label, target.label, name)] = io.read_json(paths[target.label][0])
    return results

  def test_inputs(self, target):
    """The target's outputs on attack-test (read once per target)."""
    if target.label not in self._test_inputs:
      self._test_inputs[target.label] = target.outputs(self.part("test")[0])
    return self._test_inputs[target.label]

  def record(self, protocol: str, source_label: str, target, name: str, attack_config: dict, fitted,
             fitted_settings: dict | None = None) -> dict:
    """Scores a fitted attack (anything with score / predict of AttackInputs) on the target's attack-test outputs
    and writes its per-example .npz, then its metrics .json (last: a result exists once its .json does), with what
    the fit chose (`fitted_settings`, e.g. an offline a) where given."""
    json_path, npz_path = self.ctx.layout.result(self.size, protocol, source_label, target.label, name)
    test_ids, test_member = self.part("test")
    config = self.ctx.config
    result, per_example = registry.evaluate(fitted, self.test_inputs(target), test_member,
                                            num_bootstrap=config.attacks.num_bootstrap, seed=config.seed)
    result.update(protocol=protocol, source=source_label, target=target.label, attack=name, size=self.size,
                  attack_config=dict(attack_config))
    if fitted_settings:
      result["fitted_settings"] = dict(fitted_settings)
    def write():
      io.write_npz(npz_path, ids=test_ids, **per_example)
      io.write_json(json_path, result)
    hosts.on_process_zero(write)  # every process then finds the result done
    return result


def _once_per_target(fn):
  """fn(target), computed on the first call for each target label and remembered."""
  values = {}

  def once(target):
    if target.label not in values:
      values[target.label] = fn(target)
    return values[target.label]
  return once
