"""Every zoo model a target (leave-one-out, as in the LiRA paper): the model-level answer to "did pruning change
leakage?".

Zoo model s of a kind (dense, or a ticket zoo, one-shot or an IMP round: ticket s pruned from dense s or from its own
previous round, trained on the same examples) is attacked by every reference attack (LiRA, RMIA) calibrated on the
other S - 1 models of its kind, on the pool (its members are keep[s]) less RMIA's population (`population_half`); the
run's separately trained model of that kind joins as one more target, calibrated on all S. Nothing is trained: the
zoo's logits on the pool are read from shadows/<kind>/.

  attacks/zoo_targets/<kind>/<attack>.npz   names [T], scores [T, N] (NaN: population), member [T, N]
                                  .json  per-target metrics, the ROC pooled over targets, what each fit chose
  attacks/zoo_targets/<kind>/by_reference_count.json   (zoo.reference_counts) each attack's mean AUC and TPR at 1 %
                                  FPR over the zoo targets when only k random other models calibrate it

The model-level verdict over these targets is experiments.zoo_verdict's.
"""
import dataclasses
import os

import numpy as np
from absl import logging

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import metrics, registry, stats
from mialth_jax.attacks import reference as reference_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.utils import hosts, io

FPR_LEVELS = (0.01, 0.001)
TARGET = "target"            # the run's separately trained model of the kind, in `names`
FOLDER = ("attacks", "zoo_targets")
CURVE = "by_reference_count.json"


def population_half(ids: np.ndarray) -> np.ndarray:
  """bool [N]: the examples that serve as RMIA's population z when they are a target's non-members (a fixed hash of
  their ids, another than verdict.judged_half's). Every attack scores the other examples only, so x and z are
  disjoint: compared with a population that holds x itself, a tied member and non-member would be divided by |z| and
  |z| - 1, and heavily tied scores (a saturated model) would break toward the non-members."""
  return (np.asarray(ids, np.uint64) * np.uint64(2246822519) + np.uint64(374761393)) % np.uint64(2 ** 32) < \
      np.uint64(2 ** 31)


@dataclasses.dataclass(frozen=True)
class TargetScores:
  """One attack's scores on the pool for each of T targets of one kind (NaN where the example is in the target's
  population: its non-members of `population_half`)."""
  names: np.ndarray       # str [T]: "zoo_<s>" for zoo model s, TARGET for the run's model
  scores: np.ndarray      # float64 [T, N]
  member: np.ndarray      # bool [T, N]: the target trained on the example

  def row(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, member) of target `index` on its scored examples."""
    return scored(self.scores[index], self.member[index])

  def pooled(self) -> tuple[np.ndarray, np.ndarray]:
    """(scores, member) of every target's scored examples, one after another."""
    return scored(self.scores, self.member)

  def __post_init__(self):
    if self.scores.shape != self.member.shape or len(self.names) != len(self.scores):
      raise ValueError(f"TargetScores: names [{len(self.names)}], scores {self.scores.shape} and member "
                       f"{self.member.shape} disagree")


def scored(scores: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(scores, member) where a score exists (NaN marks the population)."""
  kept = ~np.isnan(scores)
  return scores[kept], member[kept]


def zoo_name(index: int) -> str:
  return f"zoo_{index}"


def score_target(attack_config: dict, reference: reference_lib.ReferenceOutputs, logits: np.ndarray,
                 member: np.ndarray, exclude: int | None) -> tuple[np.ndarray, dict]:
  """(scores [N], what the fit chose) of one target's logits [N, A, C] on the pool, the attack calibrated on the
  reference models but `exclude`: NaN on the population (the target's non-members in `population_half`), which RMIA
  compares the other examples with."""
  attack = registry.make_attack(dict(attack_config)).fit_reference(reference, exclude=exclude)
  population = ~member & population_half(reference.ids)
  scored = np.flatnonzero(~population)
  z = np.flatnonzero(population)
  scores = np.full(len(member), np.nan)
  scores[scored] = attack.score_examples(logits[scored], reference.labels[scored], scored,
                                         population=(logits[z], reference.labels[z], z))
  return scores, dict(attack.fitted_settings)


def leave_one_out(reference: reference_lib.ReferenceOutputs, attack_config: dict,
                  target: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[TargetScores, list[dict]]:
  """Each zoo model attacked with the others as references, then `target` (logits [N, A, C], member [N]: the run's
  model of this kind) with all of them; returns its TargetScores and what each fit chose."""
  names, scores, member, settings = [], [], [], []
  for s in range(reference.num_models):
    found, chosen = score_target(attack_config, reference, reference.logits[s], reference.keep[s], exclude=s)
    names.append(zoo_name(s)), scores.append(found), member.append(reference.keep[s]), settings.append(chosen)
  if target is not None:
    found, chosen = score_target(attack_config, reference, target[0], target[1], exclude=None)
    names.append(TARGET), scores.append(found), member.append(np.asarray(target[1], bool)), settings.append(chosen)
  return TargetScores(np.array(names), np.array(scores, np.float64), np.array(member, bool)), settings


def target_metrics(scores: np.ndarray, member: np.ndarray) -> dict:
  """AUC and, at each FPR level, the TPR with its exact interval and whether the non-members suffice to measure it."""
  found = {"roc_auc": metrics.roc_auc(scores, member), "num_members": int(member.sum()),
           "num_nonmembers": int((~member).sum())}
  for level in FPR_LEVELS:
    found[f"tpr_at_fpr_{level}"] = stats.tpr_at_fpr(scores, member, level)
  return found


def summarise(targets: TargetScores) -> dict:
  """Per-target metrics, their spread over the zoo targets, and the ROC pooled over every target's scored examples."""
  per_target = {str(n): target_metrics(*targets.row(i)) for i, n in enumerate(targets.names)}
  zoo_aucs = [per_target[str(n)]["roc_auc"] for n in targets.names if n != TARGET]
  return {"per_target": per_target,
          "zoo_roc_auc": {"mean": float(np.mean(zoo_aucs)), "sd": float(np.std(zoo_aucs, ddof=1)) if len(zoo_aucs) > 1
                          else 0.0, "min": float(np.min(zoo_aucs)), "max": float(np.max(zoo_aucs))},
          "pooled": target_metrics(*targets.pooled())}


def paths(layout: layout_lib.RunLayout, kind: str, attack: str) -> tuple[str, str]:
  stem = layout.path(*FOLDER, kind, attack)
  return stem + ".json", stem + ".npz"


def curve_path(layout: layout_lib.RunLayout, kind: str) -> str:
  return layout.path(*FOLDER, kind, CURVE)


def results(layout: layout_lib.RunLayout) -> dict[str, dict[str, dict]]:
  """{kind: {attack: result JSON}} of the run's finished leave-one-out results."""
  root = layout.path(*FOLDER)
  found = {}
  for kind in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    for name in sorted(os.listdir(os.path.join(root, kind))):
      if name.endswith(".json") and name != CURVE:
        found.setdefault(kind, {})[name[:-len(".json")]] = io.read_json(os.path.join(root, kind, name))
  return found


def curves(layout: layout_lib.RunLayout) -> dict[str, dict]:
  """{kind: by_reference_count.json} of the run's zoo kinds that have one."""
  root = layout.path(*FOLDER)
  kinds = sorted(os.listdir(root)) if os.path.isdir(root) else []
  return {kind: io.read_json(curve_path(layout, kind)) for kind in kinds if os.path.exists(curve_path(layout, kind))}


def record(layout: layout_lib.RunLayout, kind: str, attack: str, attack_config: dict, targets: TargetScores,
           settings: list[dict]) -> dict:
  """Writes one attack's leave-one-out scores (.npz) and metrics (.json, last)."""
  json_path, npz_path = paths(layout, kind, attack)
  result = {"kind": kind, "attack": attack, "attack_config": dict(attack_config), "fitted_settings":
            dict(zip(targets.names.tolist(), settings)), **summarise(targets)}

  def write():
    io.write_npz(npz_path, names=targets.names, scores=targets.scores, member=targets.member)
    io.write_json(json_path, result)
  hosts.on_process_zero(write)
  return result


def read(layout: layout_lib.RunLayout, kind: str, attack: str) -> TargetScores | None:
  json_path, npz_path = paths(layout, kind, attack)
  if not os.path.exists(json_path):
    return None
  arrays = io.read_npz(npz_path)
  return TargetScores(arrays["names"], arrays["scores"], arrays["member"])


def attack_all(attack_run, zoo_summaries: dict, reference_of, configs: dict) -> None:
  """Leave-one-out results of every zoo kind ({name: summary}; `reference_of(name)` its ReferenceOutputs, read once
  per kind) and attack, the run's finished model of the same kind and sparsity joining as a target, then the curve
  against the reference count (zoo.reference_counts); finished results are kept."""
  ctx, layout = attack_run.ctx, attack_run.ctx.layout
  summaries = layout.summaries()
  counts = tuple(ctx.config.zoo.reference_counts)
  for kind, zoo_summary in zoo_summaries.items():
    todo = {a: c for a, c in configs.items() if not os.path.exists(paths(layout, kind, a)[0])}
    curve_due = bool(counts) and not os.path.exists(curve_path(layout, kind))
    if not todo and not curve_due:
      continue
    reference = reference_of(kind)
    own = layout_lib.select(summaries, kind=zoo_summary["kind"], sparsity=zoo_summary["sparsity"])
    target = None
    if own and todo:
      logits = attack_run.target(own[0]).query_logits(reference.ids, tuple(ctx.config.zoo.queries))
      target = (logits, np.isin(reference.ids, ctx.splits.members))
    for attack, attack_config in todo.items():
      logging.info("zoo targets: the %d %s models (and %s) attacked leave-one-out by %s", reference.num_models, kind,
                   own[0] if own else "no run model", attack)
      record(layout, kind, attack, attack_config, *leave_one_out(reference, attack_config, target))
    if curve_due:
      logging.info("zoo targets: %s attacked with %s reference models", kind, ", ".join(map(str, counts)))
      curve = by_reference_count(reference, configs, counts, ctx.config.seed)
      hosts.on_process_zero(lambda: io.write_json(curve_path(layout, kind), {"counts": list(counts),
                                                                             "attacks": curve}))


def subset(reference: reference_lib.ReferenceOutputs, models: np.ndarray) -> reference_lib.ReferenceOutputs:
  """The pool's outputs of the given reference models only."""
  return reference_lib.ReferenceOutputs(reference.ids, reference.labels, reference.logits[models],
                                        reference.keep[models])


def by_reference_count(reference: reference_lib.ReferenceOutputs, configs: dict, counts: tuple[int, ...],
                       seed: int) -> dict:
  """{attack: {k: {"roc_auc": mean, "roc_auc_sd", "tpr_at_fpr_0.01": mean, "targets": T} or {"error": why}}}: each
  zoo model attacked with k seeded random others as its only references (the same draws for every attack; each
  draw's references built once and shared by the attacks)."""
  rng = np.random.default_rng([seed, 0x5c])
  draws = {k: [rng.permutation(np.delete(np.arange(reference.num_models), s))[:k] for s in
               range(reference.num_models)] for k in counts if k < reference.num_models}
  found = {attack: {} for attack in configs}
  for k, others in draws.items():
    per_target, failed = {attack: [] for attack in configs}, {}
    for s, chosen in enumerate(others):
      references = subset(reference, chosen)
      for attack in (a for a in configs if a not in failed):
        try:
          scores = score_target(configs[attack], references, reference.logits[s], reference.keep[s], None)[0]
        except AttackError as e:  # an attack undefined with k models (online LiRA needs 2 IN and 2 OUT) says why
          failed[attack] = str(e)
          continue
        per_target[attack].append(target_metrics(*scored(scores, reference.keep[s])))
    for attack in configs:
      found[attack][str(k)] = {"error": failed[attack]} if attack in failed else _mean_point(per_target[attack])
  return found


def _mean_point(per_target: list[dict]) -> dict:
  """The curve's point: the mean (and sd) over the targets of their AUC, and their mean TPR at 1 % FPR."""
  aucs = np.array([m["roc_auc"] for m in per_target])
  return {"roc_auc": float(aucs.mean()), "roc_auc_sd": float(aucs.std(ddof=1)),
          "tpr_at_fpr_0.01": float(np.mean([m["tpr_at_fpr_0.01"]["tpr"] for m in per_target])),
          "targets": len(per_target)}
