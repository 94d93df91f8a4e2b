"""Sparsity or fit? Leakage along training (experiments.fit_curves): each zoo kind's leakage against its fit, every
kind compared with dense at matched train loss and at matched held-out accuracy over model pairs, and the privacy-
utility frontier of every (kind, step) point.

Runs whose zoos trained on the same examples (equal shadows/keep.npy) are one comparison: the first of them in the
report's order that is not a narrow control is the reference, and every other one's kinds join its curves: a narrow
dense control of sparsity s (`controls.narrow_of_sparsity`, lottery/narrow.py) as narrow_s<s>, any other run's kind
as <kind>@<run> (e.g. dense at another weight decay). Zoo model s of every kind trained on the same members.
"""
import os

import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.experiments import fit_curves, verdict, zoo_targets
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import recipes
from mialth_jax.report import fit_curve_figures as figures, sections
from mialth_jax.utils import io

MATCHED = (("train_loss", "train loss"), ("heldout_accuracy", "held-out accuracy"))
LEAKAGE = (("roc_auc", "attack AUC"), ("tpr_at_fpr_0.01", "attack TPR @ 1 % FPR"),
           ("loss_roc_auc", "loss-threshold AUC"))
METHOD = ("Every zoo model is attacked where the zoo kept it (every `zoo.curve_every_epochs` epochs and at the end) "
          "by the curve's attack calibrated on the other zoo models of its kind at the same step (leave-one-out), on "
          "the pool less RMIA's population; its fit there is read from the same logits: train loss on its members, "
          "held-out accuracy on the pool examples it did not train on. A kind's difference from dense at matched fit "
          "is, for each model pair (zoo model s of each kind: the same members; a ticket or a random-prune control "
          "pruned from dense model s), the vertical distance between the two curves of leakage against fit, each "
          "interpolated linearly between its kept points (train loss on a log scale), averaged over the kept points "
          "of both curves inside the range of fit both cover; the table gives its mean over the "
          "pairs whose curves overlap, a Student-t 95 % interval over pairs, the paired t p-value and the Holm-"
          "adjusted p-value over every comparison of this section.")


def _narrow_of(run) -> float:
  return float(run.config.get("controls", {}).get("narrow_of_sparsity", 0.0))


def groups(runs) -> list[list[tuple]]:
  """[(run, its curves by kind)] of the runs with fit curves, grouped by zoo membership (equal shadows/keep.npy),
  each group's reference (not a narrow control) first; groups without a reference are left out. Each run's curves
  and membership are read once."""
  found = []  # (keep, [(run, curves)])
  for run in runs:
    layout = RunLayout(run.workdir)
    curves = fit_curves.read_all(layout)
    if not curves or not os.path.exists(layout.zoo("keep.npy")):
      continue
    keep = io.read_npy(layout.zoo("keep.npy"))
    group = next((members for k, members in found if np.array_equal(k, keep)), None)
    if group is None:
      found.append((keep, [(run, curves)]))
    else:
      group.append((run, curves))
  return [sorted(members, key=lambda member: bool(_narrow_of(member[0]))) for _, members in found
          if not all(_narrow_of(run) for run, _ in members)]


def curves_of(group: list[tuple]) -> dict[str, dict]:
  """The reference run's curves by kind, with those of the group's other runs (narrow controls as narrow_s<s>), each
  with its `family` (`order`): the recipe of a reference zoo kind, narrow, or other (another run's kind)."""
  (run, reference), *others = group
  layout = RunLayout(run.workdir)
  found = {kind: {**curve, "family": _recipe(layout, kind)} for kind, curve in reference.items()}
  for other, curves in others:
    sparsity = _narrow_of(other)
    for kind, curve in curves.items():
      narrow = bool(sparsity) and kind == "dense"
      name = f"narrow_{recipes.sparsity_tag(sparsity)}" if narrow else f"{kind}@{other.label}"
      found[name] = {**curve, "kind": name, "run": other.label, "family": "narrow" if narrow else "other"}
  return found


def _recipe(layout: RunLayout, kind: str) -> str:
  """The recipe that made the zoo `kind` (its summary's kind; the name itself for a zoo without a summary)."""
  summary = layout.zoo(kind, "summary.json")
  return io.read_json(summary)["kind"] if os.path.exists(summary) else kind


def order(item) -> tuple:
  """A (kind, curve) item's place: by family (fit_curve_figures.families), then sparsity."""
  kind, curve = item
  known = figures.families()
  family = curve.get("family", "other")
  return known.index(family) if family in known else len(known), curve.get("sparsity", 0.0), kind


def _zoo_count(curve: dict) -> int:
  return sum(n != zoo_targets.TARGET for n in curve["names"])


def _estimable(curve: dict, metric: str) -> bool:
  """TPR at 1 % FPR is compared only where every target's scored non-members give 10 expected false positives."""
  return metric != "tpr_at_fpr_0.01" or curve["scored_nonmembers"] >= stats.needed_nonmembers(fit_curves.LEVEL)


def comparisons(curves: dict) -> list[dict]:
  """Every non-dense kind against dense for each matched fit and leakage metric, Holm-adjusted together."""
  rows = []
  for kind, curve in curves.items():
    if kind == "dense":
      continue
    for x, _ in MATCHED:
      for y, _ in LEAKAGE:
        if _estimable(curve, y) and _estimable(curves["dense"], y):
          rows.append({"kind": kind, "x": x, "y": y, "scored_nonmembers": min(curve["scored_nonmembers"],
                                                                              curves["dense"]["scored_nonmembers"]),
                       **fit_curves.compare(curves["dense"], curve, x, y)})
  adjusted = stats.holm([r.get("p_value", float("nan")) for r in rows])
  return [{**r, "p_adjusted": float(p)} for r, p in zip(rows, adjusted)]


def _cell(row: dict) -> str:
  if row["pairs"] < 2:
    return f"- (curves overlap for {row['pairs']} of {row['models']} pairs)"
  lo, hi = row["ci"]
  return (f"{row['mean_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], p={row['p_value']:.2g} (Holm {row['p_adjusted']:.2g})"
          + ("" if row["pairs"] == row["models"] else f", {row['pairs']} of {row['models']} pairs"))


def table(rows: list[dict], kinds: list[str]) -> list[str]:
  """kind - dense per matched fit and leakage metric; a metric no comparison measured (TPR at 1 % FPR with too few
  non-members) is left out, saying so."""
  measured = [(y, name) for y, name in LEAKAGE if any(r["y"] == y for r in rows)]
  header = [f"{name} at matched {fit}" for _, fit in MATCHED for _, name in measured]
  lines = ["| kind - dense | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
  for kind in kinds:
    cells = [_cell(r) for x, _ in MATCHED for y, _ in measured for r in rows if (r["kind"], r["x"], r["y"]) ==
             (kind, x, y)]
    lines.append(f"| {kind} | " + " | ".join(cells) + " |")
  if len(measured) < len(LEAKAGE):
    fewest, needed = min(r["scored_nonmembers"] for r in rows), stats.needed_nonmembers(fit_curves.LEVEL)
    lines += ["", f"TPR at {fit_curves.LEVEL:.0%} FPR is not compared: a zoo target is scored on as few as "
                  f"{fewest:,} non-members, and {needed:,} give the 10 expected false positives it needs."]
  return lines


def final_table(curves: dict) -> list[str]:
  """Each kind at its last kept step: the mean over its targets of its fit and leakage (where the fixed-length
  comparison is made)."""
  names = (("train_loss", "train loss"), ("train_accuracy", "train accuracy"), ("heldout_accuracy", "held-out "
           "accuracy"), ("roc_auc", "attack AUC"), ("loss_roc_auc", "loss-threshold AUC"))
  lines = ["| kind (last kept step, mean over targets) | " + " | ".join(n for _, n in names) + " |",
           "| --- |" + " --- |" * len(names)]
  for kind, curve in curves.items():
    lines.append(f"| {kind} | " + " | ".join(f"{np.mean(curve['metrics'][m][-1]):.3f}" for m, _ in names) + " |")
  return lines


def answer(rows: list[dict]) -> list[str]:
  """One sentence per kind: its AUC difference from dense at matched held-out accuracy, in words the numbers allow."""
  lines = []
  for row in rows:
    if (row["x"], row["y"]) != ("heldout_accuracy", "roc_auc") or row["pairs"] < 2:
      continue
    said = verdict.direction(row["mean_difference"], row["p_adjusted"])
    where = {"lower": "below dense's curve (less leakage at equal accuracy: it moves the frontier)",
             "higher": "above dense's curve (more leakage at equal accuracy)",
             }.get(said, "on dense's curve within the interval (no detectable difference at equal accuracy: it moves "
                         "along the frontier)")
    lo, hi = row["ci"]
    lines.append(f"- **{row['kind']}**: {where}; AUC difference {row['mean_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                 f"over {row['pairs']} pairs, Holm p={row['p_adjusted']:.2g}.")
  return lines


def _intro(curves: dict, attack: str) -> str:
  dense = curves["dense"]
  own = " and the run's own model" if zoo_targets.TARGET in dense["names"] else ""
  joined = ", ".join(f"{k} ({c['run']})" for k, c in curves.items() if "run" in c)
  return (f"{_zoo_count(dense)} zoo models per kind{own}, kept at steps {', '.join(map(str, dense['steps']))}; "
          f"the curve's attack: {attack}." + (f" From runs of the same zoo membership: {joined}." if joined else ""))


@sections.register("fit_curves", order=137)
def section(runs, out: sections.Output) -> str:
  doc = []
  for group in groups(runs):
    run, curves = group[0][0], curves_of(group)
    if "dense" not in curves:
      continue
    curves = {"dense": curves.pop("dense"), **dict(sorted(curves.items(), key=order))}
    attack = curves["dense"]["attack"]
    rows = comparisons(curves)
    kinds = [k for k in curves if k != "dense"]
    doc += [f"### {run.label}: sparsity or fit? Leakage along training", "", _intro(curves, attack), "",
            *answer(rows), "", *final_table(curves), "", METHOD, "", *table(rows, kinds), "",
            out.image(f"leakage along training {run.label}",
                      figures.curve_figure(curves, attack, MATCHED, out.plot(f"fit_curves_{run.label}.png"))), "",
            out.image(f"privacy-utility frontier {run.label}",
                      figures.frontier_figure(curves, attack, out.plot(f"frontier_{run.label}.png"))), ""]
  return sections.text(doc)
