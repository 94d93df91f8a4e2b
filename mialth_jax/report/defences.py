"""The defences' section of a report (docs/defences.md): test accuracy against the strongest attack on every model
(dense, tickets and each defence recipe of KINDS), as a chart and a table with intervals, whether each defence
lowers that attack and at what cost, whether pruning beats Min-Max here, and the paper's headline numbers beside ours.

Which attack and which baseline answer "does this model leak less?" is the verdict's rule (experiments.verdict, the
same as in "Did pruning change leakage?"): the baseline is the run's dense model, the attack is the one with the
highest ROC AUC on it among the paper and zoo protocols' attacks on a model's own outputs (the strongest that also has
a result on the model compared), chosen on the selection half of attack-test; each model's AUC, TPR and attack
accuracy and the AUC differences (DeLong, Holm-adjusted over the section's comparisons of a run) are measured on the
other, judged half. Tickets are answered in "Did pruning change leakage?", not again here. The paper's "attack
accuracy" claims use each model's most accurate adaptive attack instead (paper protocol, or shadows trained with the
same defence; the most accurate on the selection half, its accuracy measured on the judged half), and compare each
family's headline model at matched test accuracy (its highest sparsity, then lambda, within 1 point of dense's test
accuracy), over seeds where the report holds runs of one config that differ only in their seed. ADMM's hard-pruned
models (before fine-tuning) stand next to the fine-tuned ones, and how fine-tuning changed their leakage is shown.
Test accuracies carry 95 % Wilson intervals and their differences an unpaired normal interval (a paired one would be
narrower, the per-example test predictions are not kept).
"""
import dataclasses
import functools
import json
import math
import os

from mialth_jax.attacks import stats
from mialth_jax.experiments import judged as judged_lib
from mialth_jax.experiments import verdict as verdict_lib
from mialth_jax.report import (collect, defence_claims, defence_compare, defence_masks, defence_plots, fmt, names,
                               plots, sections, seeds)
from mialth_jax.utils import io

PAPER_NUMBERS = os.path.join(os.path.dirname(__file__), "defence_paper_numbers.json")
KINDS = ("dense", "ticket", "imp", "finetune", "admm", "minmax", "admm_minmax", "admm_train", "admm_minmax_train")
DEFENDED = defence_claims.FAMILIES
HARD = {"admm_hard": "admm", "admm_minmax_hard": "admm_minmax"}  # hard-pruned, not fine-tuned -> fine-tuned kind
ADAPTIVE = ("paper", "shadow")  # the claims' attackers: learnt on the defended model's outputs or on its like
SEED_KEYS = (*seeds.RECIPE_KEYS, "defences")  # runs that differ in nothing else are one experiment over seeds


@dataclasses.dataclass(frozen=True)
class Row:
  """One model: what it is, its test accuracy, the verdict's attack on it and its other results."""
  name: str
  kind: str
  sparsity: float
  lam: float | None
  test_accuracy: float
  num_test: int
  attack: dict            # the result of the attack the verdict's rule picks for this model
  own: tuple              # every result on the model's own outputs at the attack set

  @property
  def results(self) -> tuple:
    """The adaptive attacks' results (ADAPTIVE protocols), else the verdict's attack."""
    return tuple(r for r in self.own if r["protocol"] in ADAPTIVE) or (self.attack,)

  @functools.cached_property
  def judged(self) -> dict:
    """The verdict's attack on this model, measured on the judged half of attack-test."""
    return judged_lib.on_judged_half(self.attack)

  @functools.cached_property
  def most_accurate(self) -> dict:
    """The adaptive attack most accurate on the selection half of attack-test (the claims' "attack accuracy"),
    measured on the judged half; read once, however many comparisons ask for it."""
    scored = [(judged_lib.selection_accuracy(io.read_npz(r["scores_path"])), r["protocol"], r["attack"], r)
              for r in self.results]
    return judged_lib.on_judged_half(max((s for s in scored if not math.isnan(s[0])), key=lambda s: s[:3])[3])

  def result(self, protocol: str, attack: str) -> dict | None:
    return next((r for r in self.own if (r["protocol"], r["attack"]) == (protocol, attack)), None)

  @property
  def label(self) -> str:
    parts = [names.model_kind(self.kind)] + ([f"{self.sparsity:.0%}"] if self.sparsity else []) + (
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


def rows(run, choice, kinds: tuple = KINDS) -> list[Row]:
  """Every model of `kinds` (and ADMM's hard-pruned ones where `kinds` holds their fine-tuned kind) with a result of
  the attack `choice` (experiments.verdict.Choice) picks for it, in the order of `kinds`, then by sparsity."""
  found = []
  for name, s in run.models.items():
    own = tuple(collect.select(run.attacks, source=name, target=name, size=choice.size))
    protocol, attack = choice.attack(name)
    chosen = next((r for r in own if (r["protocol"], r["attack"]) == (protocol, attack)), None)
    if HARD.get(s["kind"], s["kind"]) in kinds and chosen:
      found.append(Row(name, s["kind"], s["sparsity"], _lambda(run, name), s["test_accuracy"],
                       len(run.splits.test), chosen, own))
  return sorted(found, key=lambda r: (kinds.index(HARD.get(r.kind, r.kind)), r.sparsity, r.lam or 0.0, r.name))


def _ci(value: float, ci, scale: float = 1.0, sign: bool = False) -> str:
  f = "{:+.3f}" if sign else "{:.3f}"
  return f"{f.format(value * scale)} [{f.format(ci[0] * scale)}, {f.format(ci[1] * scale)}]"


def _baseline(found: list[Row], baseline: str) -> Row | None:
  return next((r for r in found if r.name == baseline), None)


def judged_metrics(result: dict) -> tuple[float, tuple[float, float], str]:
  """(ROC AUC, its DeLong 95 % interval, TPR at 1 % FPR as shown) of a result on the judged half of attack-test."""
  judged = judged_lib.on_judged_half(result)
  return judged["roc_auc"], judged["roc_auc_ci"], fmt.tpr(judged, 0.01)


def table(found: list[Row], baseline: str, comparisons: defence_compare.Comparisons) -> list[str]:
  lines = ["| model | defence | test acc [95 % CI] | strongest attack (protocol) | ROC AUC, judged half [95 % CI] | "
           "TPR @ 1 % FPR, judged half [95 % CI] | attack acc, judged half [95 % CI] | AUC - dense [95 % CI] | "
           "test acc - dense [95 % CI] |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  dense = _baseline(found, baseline)
  for row in found:
    a = row.attack
    diff = comparisons.versus(dense, row) if dense and row is not dense else None
    cost = defence_compare.accuracy_cost(dense, row) if dense and row is not dense else None
    judged = row.judged
    lines.append(f"| {row.name} | {row.label} | {_ci(row.test_accuracy, row.test_ci)} | {a['attack']} "
                 f"({a['protocol']}) | {_ci(judged['roc_auc'], judged['roc_auc_ci'])} | {fmt.tpr(judged, 0.01)} | "
                 f"{fmt.with_ci(judged)} | "
                 f"{_ci(diff.difference, diff.ci, sign=True) if diff else '-'} | "
                 f"{_ci(cost[0], cost[1], sign=True) if cost else '-'} |")
  return lines


def _attack_name(result: dict) -> str:
  return result["attack"] + ("" if result["protocol"] == "paper" else f", {result['protocol']} protocol")


def verdicts(found: list[Row], baseline: str, comparisons: defence_compare.Comparisons) -> list[str]:
  """One line per defended model against dense, then pruning (ADMM) against Min-Max, pair by pair."""
  dense = _baseline(found, baseline)
  if dense is None:
    return [f"- no result of the verdict's attack on {baseline}: nothing to compare with"]
  defended = [r for r in found if r.kind in DEFENDED]
  differences = [comparisons.versus(dense, row) for row in defended]
  adjusted = stats.holm([d.p_value for d in differences])
  lines = []
  for row, d, p in zip(defended, differences, adjusted):
    cost, ci = defence_compare.accuracy_cost(dense, row)
    said = {"lower": "lowers", "higher": "raises"}.get(verdict_lib.direction(d.difference, p),
                                                        "does not detectably change")
    lines.append(f"- {row.name} ({row.label}) {said} the strongest attack's AUC ({_attack_name(row.attack)}): "
                 f"{d.other:.3f} vs {d.base:.3f}, {d.difference:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}], Holm-adjusted "
                 f"p={p:.3g}; test accuracy {cost * 100:+.1f} points [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}].")
  lines += fine_tuning(found, comparisons)
  pruned, minmax = [r for r in found if r.kind == "admm"], [r for r in found if r.kind == "minmax"]
  for p in pruned:
    for m in minmax:
      acc, auc = comparisons.versus(m, p, "accuracy"), comparisons.versus(m, p)
      said = "-" if auc is None else f"{auc.difference:+.3f} [{auc.ci[0]:+.3f}, {auc.ci[1]:+.3f}]"
      lines.append(f"- {p.name} vs {m.name}: attack accuracy {acc.other:.3f} vs {acc.base:.3f}, "
                   f"{acc.difference * 100:+.1f} points [{acc.ci[0] * 100:+.1f}, {acc.ci[1] * 100:+.1f}]; AUC "
                   f"({_attack_name(p.attack)}) {said}; test accuracy {p.test_accuracy:.3f} vs {m.test_accuracy:.3f}.")
  return lines


def fine_tuning(found: list[Row], comparisons: defence_compare.Comparisons) -> list[str]:
  """Each fine-tuned ADMM model against its hard-pruned self (spec section 5: fine-tuning on the members may raise
  leakage): the fine-tuned model's strongest attack on both, and the test accuracies."""
  lines = []
  for hard in (r for r in found if r.kind in HARD):
    tuned = next((r for r in found if (r.kind, r.sparsity, r.lam) == (HARD[hard.kind], hard.sparsity, hard.lam)), None)
    auc = comparisons.versus(hard, tuned) if tuned else None
    if auc is not None:
      lines.append(f"- {tuned.name} against {hard.name} (right after the hard prune): the strongest attack's AUC "
                   f"({_attack_name(tuned.attack)}) {auc.other:.3f} vs {auc.base:.3f}, {auc.difference:+.3f} "
                   f"[{auc.ci[0]:+.3f}, {auc.ci[1]:+.3f}]; test accuracy {tuned.test_accuracy:.3f} vs "
                   f"{hard.test_accuracy:.3f}.")
  return lines


@sections.register("defences", order=20)
def section(runs, out: sections.Output) -> str:
  """The report's defences section (empty when no run holds a defended model)."""
  if not present(runs):
    return ""
  paper = paper_numbers()
  choices = {run.label: collect.leakage_choice(run) for run in runs if collect.main_size(run) is not None}
  found = {}
  for run in runs:
    choice = choices.get(run.label)
    if choice is not None and not isinstance(choice, str):
      found[run.label] = rows(run, choice)
  chart = defence_plots.privacy_utility(runs, found, out.plot("defences_privacy_utility.png"))
  doc = ["## Defences: pruning (Wang et al. 2021) against adversarial regularisation (Nasr et al. 2018)", "",
         __doc__.split("\n\n")[1].replace("\n", " "), "", out.image("privacy-utility", chart), "",
         f"Paper: {paper['source']}. {paper['caveat']}", ""]
  judged = {}
  for run in runs:
    choice = choices.get(run.label)
    if isinstance(choice, str):
      doc += [f"### {run.label}", "", f"- nothing to compare: {choice}", ""]
    if run.label not in found:
      continue
    comparisons = defence_compare.Comparisons(run.config["attacks"]["num_bootstrap"], run.config["seed"])
    rows_of, baseline = found[run.label], choice.baseline
    judged[run.label] = defence_claims.Judged({r.name: r for r in rows_of}, baseline, comparisons)
    doc += [f"### {run.label} (attack set n{choice.size})", "", *table(rows_of, baseline, comparisons), "",
            *defence_masks.table(run), *verdicts(rows_of, baseline, comparisons), "",
            *defence_claims.lines([judged[run.label]], paper), ""]
  for group in seeds.groups([run for run in runs if run.label in judged], SEED_KEYS):
    doc += [f"### The paper's claims over seeds: {', '.join(run.label for run in group)} (seeds "
            f"{', '.join(str(run.config['seed']) for run in group)})", "",
            *defence_claims.lines([judged[run.label] for run in group], paper), ""]
  return sections.text(doc)
