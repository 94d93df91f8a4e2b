"""The defences' section of a report (docs/defences.md): test accuracy against the strongest adaptive attack on every
model (dense, tickets, prune-and-fine-tune, ADMM, Min-Max, ADMM + Min-Max), as a chart and a table with intervals,
whether each defence lowers that attack and at what cost, whether pruning beats Min-Max here, and the paper's
headline numbers beside ours.

A defence counts only against an adaptive attacker: the candidates are the attacks of the paper protocol (learnt on
the defended model's own outputs) and of the shadow protocol (learnt on shadows trained with the same defence). The
strongest is the one with the highest ROC AUC on that model (chosen per model: an optimistic estimate of each model's
leakage); the paper's "attack accuracy" claims use each model's most accurate attack instead. Comparisons pair two models' strongest attacks on the same attack-test examples (`attacks.compare`); test
accuracies carry 95 % Wilson intervals and their differences an unpaired normal interval (a paired one would be
narrower, the per-example test predictions are not kept).
"""
import dataclasses
import json
import os

import numpy as np

from mialth_jax.attacks import compare
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.report import collect, defence_plots, plots
from mialth_jax.utils import io

PAPER_NUMBERS = os.path.join(os.path.dirname(__file__), "defence_paper_numbers.json")
FAMILIES = {"dense": "dense", "ticket": "lottery ticket", "imp": "lottery ticket (IMP)",
            "finetune": "prune + fine-tune", "admm": "ADMM pruning", "minmax": "Min-Max",
            "admm_minmax": "ADMM + Min-Max", "admm_train": "ADMM W-phase, before hard pruning",
            "admm_minmax_train": "ADMM + Min-Max W-phase, before hard pruning"}
DEFENDED = ("finetune", "admm", "minmax", "admm_minmax")
ADAPTIVE = ("paper", "shadow")


@dataclasses.dataclass(frozen=True)
class Row:
  """One model: what it is, its test accuracy and the strongest adaptive attack on it."""
  name: str
  kind: str
  sparsity: float
  lam: float | None
  test_accuracy: float
  num_test: int
  results: tuple          # every adaptive attack result on the model

  def strongest(self, metric: str = "roc_auc") -> dict:
    return max(self.results, key=lambda r: (r[metric], r["protocol"], r["attack"]))

  @property
  def attack(self) -> dict:
    """The strongest attack: the highest ROC AUC."""
    return self.strongest("roc_auc")

  @property
  def label(self) -> str:
    parts = [FAMILIES[self.kind]] + ([f"{self.sparsity:.0%}"] if self.sparsity else []) + (
        [f"lambda {self.lam:g}"] if self.lam is not None else [])
    return ", ".join(parts)

  @property
  def test_ci(self) -> tuple[float, float]:
    low, high = plots.wilson(round(self.test_accuracy * self.num_test), self.num_test)
    return float(low), float(high)


def present(runs) -> bool:
  return any(s["kind"] in DEFENDED for run in runs for s in run.models.values())


def paper_numbers() -> dict:
  with open(PAPER_NUMBERS) as f:
    return json.load(f)


def _lambda(run, name: str) -> float | None:
  path = os.path.join(run.workdir, "models", name, "defence.json")
  return io.read_json(path)["options"].get("lambda") if os.path.exists(path) else None


def rows(run, size: int) -> list[Row]:
  """Every model of a kind in FAMILIES with an adaptive attack result at `size`, dense first, then by kind."""
  found = []
  for name, s in run.models.items():
    results = [r for r in collect.select(run.attacks, source=name, target=name, size=size)
               if r["protocol"] in ADAPTIVE]
    if s["kind"] in FAMILIES and results:
      found.append(Row(name, s["kind"], s["sparsity"], _lambda(run, name), s["test_accuracy"],
                       len(run.splits.test), tuple(results)))
  order = list(FAMILIES)
  return sorted(found, key=lambda r: (order.index(r.kind), r.sparsity, r.lam or 0.0, r.name))


class Comparisons:
  """Paired comparisons of two models' strongest attacks for one run, each computed once: the table, the verdicts and
  the claims ask for the same pairs."""

  def __init__(self, num_bootstrap: int, seed: int):
    self.num_bootstrap, self.seed, self._done = num_bootstrap, seed, {}

  def versus(self, base: Row, other: Row, metric: str = "roc_auc") -> compare.Difference:
    """`metric` of `other`'s strongest attack by that metric minus `base`'s, paired over their common attack-test
    examples (attack accuracy: the attacks with the highest accuracy, as the paper's "attack accuracy" means)."""
    paths = (base.strongest(metric)["scores_path"], other.strongest(metric)["scores_path"])
    if paths not in self._done:
      a, b = (io.read_npz(path) for path in paths)
      if not (np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["is_member"], b["is_member"])):
        raise AttackError(f"{paths[1]}: other attack-test examples than {paths[0]}")
      self._done[paths] = compare.paired_difference(a["is_member"], a["scores"], a["predicted"], b["scores"],
                                                    b["predicted"], num_bootstrap=self.num_bootstrap, seed=self.seed)
    return self._done[paths][metric]


def accuracy_cost(base: Row, other: Row) -> tuple[float, tuple[float, float]]:
  """other - base test accuracy, with an unpaired 95 % normal interval."""
  p, q = base.test_accuracy, other.test_accuracy
  half = 1.96 * np.sqrt(p * (1 - p) / base.num_test + q * (1 - q) / other.num_test)
  return q - p, (q - p - half, q - p + half)


def _ci(value: float, ci, scale: float = 1.0, sign: bool = False) -> str:
  f = "{:+.3f}" if sign else "{:.3f}"
  return f"{f.format(value * scale)} [{f.format(ci[0] * scale)}, {f.format(ci[1] * scale)}]"


def table(found: list[Row], comparisons: Comparisons) -> list[str]:
  lines = ["| model | defence | test acc [95 % CI] | strongest attack (protocol) | ROC AUC [95 % CI] | "
           "TPR @ 0.1 % FPR [95 % CI] | attack acc [95 % CI] | AUC - dense [95 % CI] | test acc - dense [95 % CI] |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  dense = next((r for r in found if r.kind == "dense"), None)
  for row in found:
    a = row.attack
    diff = comparisons.versus(dense, row) if dense and row is not dense else None
    cost = accuracy_cost(dense, row) if dense and row is not dense else None
    lines.append(f"| {row.name} | {row.label} | {_ci(row.test_accuracy, row.test_ci)} | {a['attack']} "
                 f"({a['protocol']}) | {_ci(a['roc_auc'], a['roc_auc_ci'])} | "
                 f"{_ci(a['tpr_at_fpr_0.001'], a['tpr_at_fpr_0.001_ci'])} | {_ci(a['accuracy'], a['accuracy_ci'])} | "
                 f"{_ci(diff.difference, diff.ci, sign=True) if diff else '-'} | "
                 f"{_ci(cost[0], cost[1], sign=True) if cost else '-'} |")
  return lines


def verdicts(found: list[Row], comparisons: Comparisons) -> list[str]:
  """One line per defended model against dense, then pruning (ADMM) against Min-Max, pair by pair."""
  dense = next((r for r in found if r.kind == "dense"), None)
  if dense is None:
    return ["- no dense model with adaptive attack results: nothing to compare with"]
  lines = []
  for row in [r for r in found if r.kind in DEFENDED or r.kind == "ticket"]:
    d, (cost, ci) = comparisons.versus(dense, row), accuracy_cost(dense, row)
    said = {"lower": "lowers", "higher": "raises"}.get(d.direction, "does not detectably change")
    lines.append(f"- {row.name} ({row.label}) {said} the strongest attack's AUC: {d.other:.3f} vs {d.base:.3f}, "
                 f"{d.difference:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]; test accuracy {cost * 100:+.1f} points "
                 f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}].")
  pruned, minmax = [r for r in found if r.kind == "admm"], [r for r in found if r.kind == "minmax"]
  for p in pruned:
    for m in minmax:
      acc, auc = comparisons.versus(m, p, "accuracy"), comparisons.versus(m, p)
      lines.append(f"- {p.name} vs {m.name}: attack accuracy {acc.other:.3f} vs {acc.base:.3f}, "
                   f"{acc.difference * 100:+.1f} points [{acc.ci[0] * 100:+.1f}, {acc.ci[1] * 100:+.1f}]; AUC "
                   f"{auc.difference:+.3f} [{auc.ci[0]:+.3f}, {auc.ci[1]:+.3f}]; test accuracy {p.test_accuracy:.3f} "
                   f"vs {m.test_accuracy:.3f}.")
  return lines


def claims(found: list[Row], paper: dict, comparisons: Comparisons) -> list[str]:
  """The paper's headline numbers beside ours: the largest drop in attack accuracy (each model's most accurate
  adaptive attack) that ADMM pruning gives against dense and against Min-Max, with its interval (the largest of
  several noisy differences is an optimistic estimate, as "up to" is), and whether ADMM + Min-Max leaks least."""
  dense = next((r for r in found if r.kind == "dense"), None)
  pruned, minmax = [r for r in found if r.kind == "admm"], [r for r in found if r.kind == "minmax"]
  ours = {}
  for key, pairs in (("admm_vs_dense", [(dense, p) for p in pruned if dense]),
                     ("admm_vs_minmax", [(m, p) for p in pruned for m in minmax])):
    diffs = [(a, b, comparisons.versus(a, b, "accuracy")) for a, b in pairs]
    if diffs:
      a, b, d = min(diffs, key=lambda x: x[2].difference)
      ours[key] = (f"up to {-d.difference * 100 + 0.0:.1f} points lower [{-d.ci[1] * 100 + 0.0:.1f}, "
                   f"{-d.ci[0] * 100 + 0.0:.1f}]: "
                   f"{b.name} {d.other:.3f} vs {a.name} {d.base:.3f} (test acc {b.test_accuracy:.3f} vs "
                   f"{a.test_accuracy:.3f})")
  defended = [r for r in found if r.kind in DEFENDED]
  if defended:
    lowest = min(defended, key=lambda r: r.strongest("accuracy")["accuracy"])
    ours["admm_minmax_lowest"] = (f"the lowest attack accuracy is {lowest.name}'s "
                                  f"({lowest.strongest('accuracy')['accuracy']:.3f}): "
                                  f"{'an' if lowest.kind == 'admm_minmax' else 'not an'} ADMM + Min-Max model")
  lines = ["| claim (abstract) | paper | ours: attack accuracy of the most accurate adaptive attack, largest drop "
           "over the pairs [95 % CI] |", "| --- | --- | --- |"]
  for c in paper["claims"]:
    said = f"up to {c['attack_accuracy_lower_by'] * 100:.1f} points lower" if c["attack_accuracy_lower_by"] else "-"
    lines.append(f"| {c['comparison']} | {said} | {ours.get(c['ours'], 'no such models in this run')} |")
  return lines


def section(runs, size_of, plot_dir: str, rel) -> list[str]:
  """The report's defences section (empty when no run holds a defended model)."""
  if not present(runs):
    return []
  paper = paper_numbers()
  found = {run.label: rows(run, size_of(run)) for run in runs if size_of(run) is not None}
  chart = defence_plots.privacy_utility(runs, found, os.path.join(plot_dir, "defences_privacy_utility.png"))
  doc = ["## Defences: pruning (Wang et al. 2021) against adversarial regularisation (Nasr et al. 2018)", "",
         __doc__.split("\n\n")[1].replace("\n", " "), "", f"![privacy-utility]({rel(chart)})", "",
         f"Paper: {paper['source']}. {paper['caveat']}", ""]
  for run in runs:
    if run.label not in found:
      continue
    comparisons = Comparisons(run.config["attacks"]["num_bootstrap"], run.config["seed"])
    doc += [f"### {run.label} (attack set n{size_of(run)})", "", *table(found[run.label], comparisons),
            "", *verdicts(found[run.label], comparisons), "", *claims(found[run.label], paper, comparisons), ""]
  return doc
