"""Every zoo model a target (leave-one-out, as in the LiRA paper): the model-level answer to "did pruning change
leakage?".

Zoo model s of a kind (dense, or the ticket zoo of a sparsity: ticket s pruned from dense s, trained on the same
examples) is attacked by every reference attack (LiRA, RMIA) calibrated on the other S - 1 models of its kind, on
every pool example (its members are keep[s]); the run's separately trained model of that kind joins as one more
target, calibrated on all S. Nothing is trained: the zoo's logits on the pool are read from shadows/<kind>/.

  attacks/zoo_targets/<kind>/<attack>.npz   names [T], scores [T, N], member [T, N]
                                  .json  per-target metrics, the ROC pooled over targets, what each fit chose
  attacks/zoo_targets/<kind>/by_reference_count.json   (zoo.reference_counts) each attack's mean AUC and TPR at 1 %
                                  FPR over the zoo targets when only k random other models calibrate it

The verdict compares each ticket kind with dense over the T model pairs (zoo pair s: ticket s and the dense model it
was pruned from; the target pair: the run's ticket and dense model): the mean difference of a metric, its Student-t
interval over pairs and the paired t-test's p-value (attacks.stats.paired_over_models), Holm-adjusted over the
comparisons of the run. The attack that answers for pair s is the one with the highest mean dense AUC over the OTHER
pairs, so no attack is chosen on the examples (or models) it is judged on.
"""
import dataclasses
import os

import numpy as np
from absl import logging

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import metrics, registry, stats
from mialth_jax.attacks import reference as reference_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.experiments import verdict
from mialth_jax.utils import hosts, io

FPR_LEVELS = (0.01, 0.001)
TARGET = "target"            # the run's separately trained model of the kind, in `names`
COMPARED = ("roc_auc", "tpr_at_fpr_0.01")


@dataclasses.dataclass(frozen=True)
class TargetScores:
  """One attack's scores on every pool example for each of T targets of one kind."""
  names: np.ndarray       # str [T]: "zoo_<s>" for zoo model s, TARGET for the run's model
  scores: np.ndarray      # float64 [T, N]
  member: np.ndarray      # bool [T, N]: the target trained on the example

  def __post_init__(self):
    if self.scores.shape != self.member.shape or len(self.names) != len(self.scores):
      raise ValueError(f"TargetScores: names [{len(self.names)}], scores {self.scores.shape} and member "
                       f"{self.member.shape} disagree")


def zoo_name(index: int) -> str:
  return f"zoo_{index}"


def score_target(attack_config: dict, reference: reference_lib.ReferenceOutputs, logits: np.ndarray,
                 member: np.ndarray, exclude: int | None) -> tuple[np.ndarray, dict]:
  """(scores [N], what the fit chose) of one target's logits [N, A, C] on the whole pool, the attack calibrated on the
  reference models but `exclude`; RMIA's population is every pool example the target did not train on."""
  attack = registry.make_attack(dict(attack_config)).fit_reference(reference, exclude=exclude)
  rows = np.arange(len(reference.ids))
  out = ~member
  scores = attack.score_examples(logits, reference.labels, rows, population=(logits[out], reference.labels[out],
                                                                             rows[out]))
  return scores, dict(getattr(attack, "fitted_settings", {}))


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


def roc_auc(scores: np.ndarray, member: np.ndarray) -> float:
  """Area under the ROC curve, ties as half (sklearn.metrics.roc_auc_score)."""
  fpr, tpr, _ = metrics.roc_curve(scores, member)
  return float((np.diff(fpr) * (tpr[1:] + tpr[:-1])).sum() / 2)


def target_metrics(scores: np.ndarray, member: np.ndarray) -> dict:
  """AUC and, at each FPR level, the TPR with its exact interval and whether the non-members suffice to measure it."""
  found = {"roc_auc": roc_auc(scores, member), "num_members": int(member.sum()),
           "num_nonmembers": int((~member).sum())}
  for level in FPR_LEVELS:
    found[f"tpr_at_fpr_{level}"] = stats.tpr_at_fpr(scores, member, level)
  return found


def summarise(targets: TargetScores) -> dict:
  """Per-target metrics, their spread over the zoo targets, and the ROC pooled over every target (T x N scores)."""
  per_target = {str(n): target_metrics(s, m) for n, s, m in zip(targets.names, targets.scores, targets.member)}
  zoo_aucs = [per_target[str(n)]["roc_auc"] for n in targets.names if n != TARGET]
  return {"per_target": per_target,
          "zoo_roc_auc": {"mean": float(np.mean(zoo_aucs)), "sd": float(np.std(zoo_aucs, ddof=1)) if len(zoo_aucs) > 1
                          else 0.0, "min": float(np.min(zoo_aucs)), "max": float(np.max(zoo_aucs))},
          "pooled": target_metrics(targets.scores.ravel(), targets.member.ravel())}


def paths(layout: layout_lib.RunLayout, kind: str, attack: str) -> tuple[str, str]:
  stem = layout.path("attacks", "zoo_targets", kind, attack)
  return stem + ".json", stem + ".npz"


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
  """Leave-one-out results of every zoo kind ({name: summary}; `reference_of(name)` its ReferenceOutputs) and attack,
  the run's finished model of the same kind and sparsity joining as a target; finished results are kept."""
  ctx, layout = attack_run.ctx, attack_run.ctx.layout
  summaries = layout.summaries()
  for kind, zoo_summary in zoo_summaries.items():
    todo = {a: c for a, c in configs.items() if not os.path.exists(paths(layout, kind, a)[0])}
    if not todo:
      continue
    reference = reference_of(kind)
    own = layout_lib.select(summaries, kind=zoo_summary["kind"], sparsity=zoo_summary["sparsity"])
    target = None
    if own:
      logits = attack_run.target(own[0]).query_logits(reference.ids, tuple(ctx.config.zoo.queries))
      target = (logits, np.isin(reference.ids, ctx.splits.members))
    for attack, attack_config in todo.items():
      logging.info("zoo targets: the %d %s models (and %s) attacked leave-one-out by %s", reference.num_models, kind,
                   own[0] if own else "no run model", attack)
      record(layout, kind, attack, attack_config, *leave_one_out(reference, attack_config, target))
  counts = tuple(ctx.config.zoo.reference_counts)
  for kind in zoo_summaries:
    path = layout.path("attacks", "zoo_targets", kind, "by_reference_count.json")
    if counts and not os.path.exists(path):
      logging.info("zoo targets: %s attacked with %s reference models", kind, ", ".join(map(str, counts)))
      curve = by_reference_count(reference_of(kind), configs, counts, ctx.config.seed)
      hosts.on_process_zero(lambda: io.write_json(path, {"counts": list(counts), "attacks": curve}))


def subset(reference: reference_lib.ReferenceOutputs, models: np.ndarray) -> reference_lib.ReferenceOutputs:
  """The pool's outputs of the given reference models only."""
  return reference_lib.ReferenceOutputs(reference.ids, reference.labels, reference.logits[models],
                                        reference.keep[models])


def by_reference_count(reference: reference_lib.ReferenceOutputs, configs: dict, counts: tuple[int, ...],
                       seed: int) -> dict:
  """{attack: {k: {"roc_auc": mean, "roc_auc_sd", "tpr_at_fpr_0.01": mean, "targets": T} or {"error": why}}}: each
  zoo model attacked with k seeded random others as its only references (the same draws for every attack)."""
  rng = np.random.default_rng([seed, 0x5c])
  draws = {k: [rng.permutation(np.delete(np.arange(reference.num_models), s))[:k] for s in
               range(reference.num_models)] for k in counts if k < reference.num_models}
  found = {}
  for attack, config in configs.items():
    found[attack] = {}
    for k, others in draws.items():
      try:
        per_target = [target_metrics(score_target(config, subset(reference, o), reference.logits[s],
                                                  reference.keep[s], None)[0], reference.keep[s])
                      for s, o in enumerate(others)]
      except AttackError as e:  # an attack undefined with k models (online LiRA needs 2 IN and 2 OUT) says why
        found[attack][str(k)] = {"error": str(e)}
        continue
      aucs = np.array([m["roc_auc"] for m in per_target])
      found[attack][str(k)] = {"roc_auc": float(aucs.mean()), "roc_auc_sd": float(aucs.std(ddof=1)),
                               "tpr_at_fpr_0.01": float(np.mean([m["tpr_at_fpr_0.01"]["tpr"] for m in per_target])),
                               "targets": len(per_target)}
  return found


def _pair_values(dense: dict, ticket: dict, metric: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
  """(dense [attacks, pairs], ticket [attacks, pairs], attacks, pair names): the metric of each attack (in both
  {attack: TargetScores}) on the dense and the ticket target of each pair (target names in both)."""
  attacks = sorted(set(dense) & set(ticket))
  names = [n for n in dense[attacks[0]].names.tolist() if n in ticket[attacks[0]].names.tolist()]
  values = {}
  for side, found in (("dense", dense), ("ticket", ticket)):
    values[side] = np.array([[_metric(found[a], n, metric) for n in names] for a in attacks])  # [attacks, pairs]
  return values["dense"], values["ticket"], attacks, names


def _metric(targets: TargetScores, name: str, metric: str) -> float:
  row = targets.names.tolist().index(name)
  scores, member = targets.scores[row], targets.member[row]
  if metric == "roc_auc":
    return roc_auc(scores, member)
  return stats.tpr_at_fpr(scores, member, float(metric.rsplit("_", 1)[1]))["tpr"]


def chosen_per_pair(dense_auc: np.ndarray) -> np.ndarray:
  """For each pair p, the attack (row of dense_auc [attacks, pairs]) with the highest mean dense AUC over the other
  pairs: the attack judging a pair is never chosen on it."""
  num_pairs = dense_auc.shape[1]
  others = (dense_auc.sum(axis=1, keepdims=True) - dense_auc) / max(num_pairs - 1, 1)
  return np.argmax(others, axis=0)


@dataclasses.dataclass(frozen=True)
class ModelLevel:
  """ticket - dense over model pairs, for one metric (a comparison of experiments.verdict.MODEL_LEVEL)."""
  ticket: str
  metric: str
  pairs: int
  attacks: dict           # {attack: pairs it judged}
  comparison: dict        # stats.paired_over_models
  p_adjusted: float = float("nan")

  method = ("Model level: every zoo model attacked by the others (leave-one-out) and the run's model by all of them, "
            "on every pool example; ticket - dense over the model pairs (each zoo ticket with the dense model it was "
            "pruned from), Student-t interval over pairs and paired t-test; each pair judged by the attack with the "
            "highest mean dense AUC on the other pairs.")

  @property
  def p_value(self) -> float:
    return self.comparison["p_value"]

  @property
  def direction(self) -> str:
    return verdict.direction(self.comparison["mean_difference"], self.p_adjusted)

  def adjusted(self, p_adjusted: float) -> "ModelLevel":
    return dataclasses.replace(self, p_adjusted=float(p_adjusted))

  def line(self) -> str:
    c = self.comparison
    said = self.direction if self.direction.startswith("no ") else f"leakage {self.direction}"
    used = ", ".join(f"{a} ({n})" for a, n in self.attacks.items())
    return (f"{self.ticket} vs dense over {self.pairs} model pairs: {said} ({_METRIC_NAMES[self.metric]} difference "
            f"{c['mean_difference']:+.3f} [95 % CI over pairs {c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}], paired t "
            f"p={c['p_value']:.3g}, Holm-adjusted p={self.p_adjusted:.3g}; attack per pair: {used})")


_METRIC_NAMES = {"roc_auc": "AUC", "tpr_at_fpr_0.01": "TPR at 1 % FPR"}


def model_level(layout: layout_lib.RunLayout) -> list[ModelLevel]:
  """Every ticket zoo kind against the dense zoo, for each metric of COMPARED (unadjusted p-values)."""
  root = layout.path("attacks", "zoo_targets")
  kinds = sorted(os.listdir(root)) if os.path.isdir(root) else []
  found = {k: {a[:-len(".json")]: read(layout, k, a[:-len(".json")]) for a in sorted(os.listdir(os.path.join(root, k)))
               if a.endswith(".json")} for k in kinds}
  if "dense" not in found or not found["dense"]:
    return []
  zoo_summaries = {k: io.read_json(layout.zoo(k, "summary.json")) for k in kinds
                   if os.path.exists(layout.zoo(k, "summary.json"))}
  results = []
  for kind in layout_lib.select(zoo_summaries, kind="ticket"):
    if not found.get(kind):
      continue
    dense_auc, _, attacks, names = _pair_values(found["dense"], found[kind], "roc_auc")
    picked = chosen_per_pair(dense_auc)
    fewest = min(int((~t.member).sum(axis=1).min()) for t in (*found["dense"].values(), *found[kind].values()))
    for metric in COMPARED:
      if metric.startswith("tpr_at_fpr_") and fewest < stats.needed_nonmembers(float(metric.rsplit("_", 1)[1])):
        continue  # each target's TPR at this FPR rests on fewer than 10 expected false positives: not compared
      dense, ticket, _, _ = _pair_values(found["dense"], found[kind], metric)
      columns = np.arange(len(names))
      comparison = stats.paired_over_models(ticket[picked, columns], dense[picked, columns])
      used = {attacks[a]: int((picked == a).sum()) for a in np.unique(picked)}
      results.append(ModelLevel(kind, metric, len(names), used, comparison))
  return results


@verdict.MODEL_LEVEL.register("zoo_targets")
def judge(workdir: str) -> list[ModelLevel]:
  """model_level of the run in `workdir` (p-values not adjusted: experiments.verdict adjusts over a report)."""
  return model_level(layout_lib.RunLayout(workdir))
