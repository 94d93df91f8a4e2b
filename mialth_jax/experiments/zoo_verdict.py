"""The model-level answer to "did pruning change leakage?" over every zoo model as a target (experiments.zoo_targets).

Each ticket kind (one-shot, or an IMP round) is compared with dense over the T model pairs (zoo pair s: ticket s and
the dense model it descends from; the target pair: the run's ticket and dense model): the mean difference of a metric,
its Student-t interval over pairs and the paired t-test's p-value (attacks.stats.paired_over_models);
experiments.verdict Holm-adjusts over the comparisons of a report. The attack that answers for pair s is the one with
the highest mean dense AUC over the OTHER pairs, so no attack is chosen on the examples (or models) it is judged on.
TPR at 1 % FPR is compared only where each target's non-members give at least 10 expected false positives.
"""
import dataclasses
import os

import numpy as np

from mialth_jax import layout as layout_lib
from mialth_jax.attacks import stats
from mialth_jax.experiments import verdict, zoo_targets
from mialth_jax.lottery import recipes
from mialth_jax.utils import io

COMPARED = ("roc_auc", "tpr_at_fpr_0.01")


def _pair_values(dense: dict, ticket: dict, metric: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
  """(dense [attacks, pairs], ticket [attacks, pairs], attacks, pair names): `metric` of each attack's dense and
  ticket target of each pair, from the recorded per-target metrics ({attack: {target name: metrics}} of each side)."""
  attacks = sorted(set(dense) & set(ticket))
  names = [n for n in dense[attacks[0]] if n in ticket[attacks[0]]]

  def table(found: dict) -> np.ndarray:
    return np.array([[_value(found[a][n], metric) for n in names] for a in attacks])
  return table(dense), table(ticket), attacks, names


def _value(measured: dict, metric: str) -> float:
  """A target's recorded metric: the AUC, or the TPR of a TPR-at-FPR measure (stats.tpr_at_fpr)."""
  value = measured[metric]
  return value["tpr"] if isinstance(value, dict) else value


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
            "on the pool examples outside its RMIA population (half of its non-members); ticket - dense over the "
            "model pairs (each zoo ticket with the dense model it was pruned from), Student-t interval over pairs "
            "and paired t-test; each pair judged by the attack with the highest mean dense AUC on the other pairs.")

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
            f"{c['mean_difference']:+.3f} [unadjusted 95 % CI over pairs {c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}], "
            f"paired t p={c['p_value']:.3g}, Holm-adjusted p={self.p_adjusted:.3g}; attack per pair: {used})")


_METRIC_NAMES = {"roc_auc": "AUC", "tpr_at_fpr_0.01": "TPR at 1 % FPR"}


def model_level(layout: layout_lib.RunLayout) -> list[ModelLevel]:
  """Every ticket zoo kind against the dense zoo, for each metric of COMPARED (unadjusted p-values)."""
  found = {kind: {attack: r["per_target"] for attack, r in by_attack.items()}
           for kind, by_attack in zoo_targets.results(layout).items()}
  if not found.get("dense"):
    return []
  zoo_summaries = {k: io.read_json(layout.zoo(k, "summary.json")) for k in found
                   if os.path.exists(layout.zoo(k, "summary.json"))}
  results = []
  for kind in [k for ticket in recipes.ticket_kinds() for k in layout_lib.select(zoo_summaries, kind=ticket)]:
    if not found.get(kind):
      continue
    dense_auc, _, attacks, names = _pair_values(found["dense"], found[kind], "roc_auc")
    picked = chosen_per_pair(dense_auc)
    for metric in COMPARED:
      measured = [m[metric] for side in (found["dense"], found[kind]) for per in side.values() for m in per.values()]
      if not all(m["estimable"] for m in measured if isinstance(m, dict)):
        continue  # some target's TPR at this FPR rests on fewer than 10 expected false positives: not compared
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
