"""The adversarial protocol: white-box adversarial-example attacks and label-only attacks next to the output-based
ones, on the same examples of every model, and the defences attacked the same way (docs/adversarial.md).

Examples: the run's attack split cut to at most `adversarial.num_examples` examples per part (attack-train,
attack-test), half members and half non-members, drawn with the run's seed and the same for every model (perturbation
attacks cost tens to thousands of forward passes per example). Every attack of `attacks.models` runs on that cut, so
all of them are compared on the same attack-test examples; each learns its threshold (or model) on the target's own
attack-train part, as in the paper protocol.
Targets: every finished model (dense, tickets, controls, the input_gradient_penalty defence D2; only those of
`adversarial.models` if it names any), and for each model of `defences.smoothing.models` its smoothed version
(defence D1, defences/smoothing.py), labelled `<model>~smooth`, attacked by `defences.smoothing.attacks` (all when
empty: each query of a smoothed model costs defences.smoothing.samples forward passes).
Beside the results, attacks/n<size>/adversarial/ holds statistics.json (per target and signal attack: the side
members were on in attack-train, members' and non-members' mean signal in attack-test, seconds) and defended.json
(each smoothed target's test and member accuracy).
"""
import copy
import os
import time

import numpy as np
from absl import logging

from mialth_jax import errors
from mialth_jax.attacks import attack_sets, contracts, registry
from mialth_jax.data.examples import ExampleSource
from mialth_jax.defences import smoothing
from mialth_jax.experiments import attack_runs
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol, own_outputs
from mialth_jax.lottery import recipes
from mialth_jax.utils import config_sections, hosts, io

SMOOTHED = "~smooth"  # label suffix of a smoothed target
MAX_MEMBER_EVAL = 2000  # members whose accuracy a smoothed target reports (evenly spaced)


def cut_run(attack_run: attack_runs.AttackRun, split: attack_sets.AttackSplit) -> attack_runs.AttackRun:
  """`attack_run` over part of its split: the same run, size, targets and result paths, fewer examples (a shallow
  copy whose attack-test outputs, read for the whole split by earlier protocols, are read again for the cut)."""
  cut = copy.copy(attack_run)
  cut.split = split
  cut._test_inputs = {}
  return cut


def cut_split(split: attack_sets.AttackSplit, num_examples: int, seed: int) -> attack_sets.AttackSplit:
  """At most num_examples / 2 ids of each of the four arrays (seeded, sorted); -1 keeps the split."""
  if num_examples == -1:
    return split
  rng = np.random.default_rng([seed, num_examples])
  arrays = split.to_arrays()
  return attack_sets.AttackSplit(**{k: np.sort(rng.choice(v, min(len(v), num_examples // 2), replace=False))
                                    for k, v in arrays.items()})


def adversarial_dir(layout, size: int) -> str:
  return os.path.join(layout.attack_dir(size), "adversarial")


def smoothed_targets(cut: attack_runs.AttackRun, models: list[str]) -> list:
  """Defence D1 on each model of defences.smoothing.models (none when defences.smoothing.sigma is 0)."""
  settings, layout = cut.ctx.config.defences.smoothing, cut.ctx.layout
  if settings.sigma <= 0:
    return []
  return [smoothing.smoothed_target(cut.target(m), m + SMOOTHED, layout.confidences(m + SMOOTHED),
                                    sigma=settings.sigma, num_samples=settings.samples,
                                    seed=cut.ctx.config.seed) for m in settings.models if m in models]


def defended_accuracy(ctx, target) -> dict:
  """A smoothed target's accuracy on the whole test split and on (at most MAX_MEMBER_EVAL) members."""
  source = ExampleSource(ctx.dataset)
  members = ctx.splits.members[np.linspace(0, len(ctx.splits.members) - 1,
                                           min(len(ctx.splits.members), MAX_MEMBER_EVAL)).astype(int)]
  accuracy = {}
  for name, ids in (("test_accuracy", source.test_ids()), ("member_accuracy", members)):
    accuracy[name] = float((target.logits(ids).argmax(1) == source.labels(ids)).mean())
  model = target.model
  return {**accuracy, "base": target.label[:-len(SMOOTHED)], "sigma": model.sigma, "num_samples": model.num_samples}


def signal_statistics(attack, values: np.ndarray, is_member: np.ndarray, seconds: float) -> dict:
  """What the report and docs say of a signal: the fitted side of members and the raw means on attack-test."""
  found = {"seconds": seconds}
  if values.ndim == 1:
    if attack.members_ is not None:
      found["members"] = attack.members_
    found.update(member_mean=float(values[is_member].mean()),
                 nonmember_mean=float(values[~is_member].mean()), member_median=float(np.median(values[is_member])),
                 nonmember_median=float(np.median(values[~is_member])))
  return found


@PROTOCOLS.register("adversarial")
class Adversarial(Protocol):
  title = ("adversarial protocol (white-box adversarial-example and label-only attacks next to the output-based ones, "
           "on the same examples; defences included)")

  def run(self, attack_run, models, attack_configs):
    ctx, settings = attack_run.ctx, attack_run.ctx.config.adversarial
    cut = cut_run(attack_run, cut_split(attack_run.split, settings.num_examples, ctx.config.seed))
    smoothed = smoothed_targets(cut, models)
    smoothed_attacks = ctx.config.defences.smoothing.attacks
    on_smoothed = {k: c for k, c in attack_configs.items() if not smoothed_attacks or k in smoothed_attacks}
    chosen = [m for m in models if not settings.models or m in settings.models]
    results = attack_targets(cut, [cut.target(m) for m in chosen], attack_configs)
    results |= attack_targets(cut, smoothed, on_smoothed) if smoothed else {}
    defended = {t.label: defended_accuracy(ctx, t) for t in smoothed}
    if defended:
      hosts.on_process_zero(lambda: io.write_json(os.path.join(adversarial_dir(ctx.layout, cut.size),
                                                               "defended.json"), defended))
    return results


def attack_targets(cut: attack_runs.AttackRun, targets: list, attack_configs: dict) -> dict:
  """Every attack on each target's own attack-train / attack-test parts of the cut; results written once."""
  layout, settings = cut.ctx.layout, cut.ctx.config.adversarial
  results = cut.evaluate_pairs("adversarial", targets, lambda t: [t], attack_configs, own_outputs(cut))
  train_ids, train_member = cut.part("train")
  test_ids, test_member = cut.part("test")
  stats_path = os.path.join(adversarial_dir(layout, cut.size), "statistics.json")
  statistics = io.read_json(stats_path) if os.path.exists(stats_path) else {}
  for target in targets:
    for name, config in registry.of_contract(attack_configs, contracts.TargetQueryAttack).items():
      json_path, _ = layout.result(cut.size, "adversarial", target.label, target.label, name)
      if not os.path.exists(json_path):
        started = time.time()
        attack = registry.make_attack(dict(config))
        attack.fit(attack.statistic(target, train_ids, settings.batch_size), train_member)
        values = attack.statistic(target, test_ids, settings.batch_size)
        cut.record("adversarial", target.label, target, name, config,
                   attack_runs.Scored(attack.score(values), attack.predict(values)))
        seconds = time.time() - started
        statistics.setdefault(target.label, {})[name] = signal_statistics(attack, values, test_member, seconds)
        logging.info("adversarial: %s on %s (%d + %d examples) in %.1f s", name, target.label, len(train_ids),
                     len(test_ids), seconds)
        hosts.on_process_zero(lambda: io.write_json(stats_path, statistics))  # noqa: B023
      results[(target.label, target.label, name)] = io.read_json(json_path)
  return results


def validate(config) -> None:
  """Checks the adversarial section; errors name the field."""
  settings = config.adversarial
  target_attacks = registry.of_contract(config.attacks.models.to_dict(), contracts.TargetQueryAttack)
  if target_attacks and "adversarial" not in config.attacks.protocols:
    raise errors.ConfigError(f"attacks.models: {', '.join(target_attacks)} query the model itself and run only under "
                             "the adversarial protocol; add 'adversarial' to attacks.protocols")
  n = settings.num_examples
  if n != -1 and (isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2):
    raise errors.ConfigError(f"adversarial.num_examples must be -1 or an even number >= 2, got {n!r}")
  if settings.batch_size < 1:
    raise errors.ConfigError(f"adversarial.batch_size must be >= 1, got {settings.batch_size}")
  recipes.check_planned(config, settings.models, "adversarial.models")


config_sections.register("adversarial", "the adversarial protocol (experiments/adversarial.py)", {
    "num_examples": (-1, "examples per attack-split part (half members) it attacks (-1: all)"),
    "models": ((), "the models it attacks (empty: every finished model)"),
    "batch_size": (128, "examples per sharded batch of the white-box and label-only signals"),
}, validate=validate)
