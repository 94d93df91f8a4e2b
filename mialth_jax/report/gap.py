"""Leakage against the generalisation gap: where on the overfitting curve the paper's Table 1 numbers sit.

Shown when a report holds two or more runs of one dataset (e.g. one recipe trained for 10 ... 160 epochs, with and
without augmentation): every model's train-test accuracy gap against the attack accuracy and ROC AUC of the paper's
MLP attack, the loss threshold and the strongest attack (the verdict's rule, experiments.verdict: the attack with the
highest ROC AUC on the run's dense model, paper and zoo protocols, chosen on the selection half of attack-test and
measured on the judged half), with the paper's Table 1 accuracies as horizontal lines, and the run whose dense model
is nearest to the paper's (attack accuracy and precision of the paper's attack). What the paper's own numbers imply
about its models (`regime` of its Table 1 rows in paper_numbers.json) is set against ours in Table 1's discrepancies
(`paper_regime`).
"""
import numpy as np

from mialth_jax.experiments import judged
from mialth_jax.lottery import recipes
from mialth_jax.report import collect, plots, sections

PAPER_ATTACK = collect.PAPER_ATTACK
MEMORISING = 0.99  # train accuracy from which a model counts as having memorised its members


def _strongest(run, name: str) -> dict | None:
  """The result of the attack that the verdict's rule picks for `name`, measured on the judged half of attack-test
  (judged.on_judged_half: it was chosen on the other half), or None where the run has no choice."""
  choice = collect.leakage_choice(run)
  if isinstance(choice, str):
    return None
  protocol, attack = choice.attack(name)
  found = collect.select(run.attacks, protocol=protocol, source=name, target=name, attack=attack, size=choice.size)
  return judged.on_judged_half(found[0]) if found else None


def points(runs) -> list[dict]:
  """One point per (run, dense or ticket model): its gap and the three attacks' results (None where absent)."""
  out = []
  for run in runs:
    size = collect.main_size(run)
    if size is None:
      continue
    for name, summary in sorted(run.models.items(), key=lambda item: item[1]["sparsity"]):
      if summary["kind"] != "dense" and summary["kind"] not in recipes.ticket_kinds():
        continue
      out.append({"run": run, "name": name, "kind": "dense" if summary["kind"] == "dense" else "ticket",
                  "train_accuracy": summary["train_accuracy"], "test_accuracy": summary["test_accuracy"],
                  "gap": summary["train_accuracy"] - summary["test_accuracy"],
                  "paper": collect.paper_result(run, name, PAPER_ATTACK, size),
                  "loss": collect.paper_result(run, name, "loss", size),
                  "strongest": _strongest(run, name)})
  return out


def figure(points_of: dict, paper_rows: dict, path: str) -> str:
  """Attack accuracy (top) and ROC AUC (bottom) against the gap, a column per dataset, a line per model and attack."""
  datasets = sorted(points_of)
  fig, axes = plots.plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 8), squeeze=False)
  styles = {"paper": ("o", "-"), "loss": ("s", "--"), "strongest": ("^", ":")}
  for col, dataset in enumerate(datasets):
    names = sorted({p["name"] for p in points_of[dataset]}, key=lambda n: (n != "dense", n))
    for row, metric in enumerate(("accuracy", "roc_auc")):
      ax = axes[row][col]
      for i, name in enumerate(names):
        series = sorted((p for p in points_of[dataset] if p["name"] == name), key=lambda p: p["gap"])
        for attack, (marker, line) in styles.items():
          shown = [p for p in series if p[attack] and metric in p[attack]]  # score-only attacks have no accuracy
          xs, ys = [p["gap"] for p in shown], [p[attack][metric] for p in shown]
          if xs:
            ax.plot(xs, ys, marker=marker, linestyle=line, color=f"C{i}", label=f"{name}, {attack}")
      if metric == "accuracy" and dataset in paper_rows:
        for key, style in (("dense", "-"), ("ticket", "--")):
          ax.axhline(paper_rows[dataset]["accuracy"][key], color="black", linestyle=style, linewidth=0.8,
                     label=f"paper Table 1, {key}")
      ax.axhline(0.5, color="grey", linewidth=0.5)
      ax.set(xlabel="train - test accuracy (generalisation gap)", ylabel=f"attack {metric.replace('_', ' ')}",
             title=dataset)
      ax.legend(fontsize=6)
  return plots.save(fig, path)


def _nearest_line(dataset: str, pts: list, paper_row: dict | None) -> str:
  dense = [p for p in pts if p["kind"] == "dense" and p["paper"]]
  if not dense or not paper_row:
    return f"- **{dataset}**: no paper Table 1 row or no dense result of `{PAPER_ATTACK}` to compare."
  target = np.array([paper_row["accuracy"]["dense"], paper_row["precision"]["dense"]])
  nearest = min(dense, key=lambda p: float(np.linalg.norm(
      np.array([p["paper"]["accuracy"], p["paper"]["precision"]]) - target)))
  r, (low, high) = nearest["paper"], nearest["paper"]["accuracy_ci"]
  within = "within" if low <= target[0] <= high else "outside"
  memorised = ("memorised its members" if nearest["train_accuracy"] >= MEMORISING else
               f"has not memorised its members (train accuracy below {MEMORISING})")
  return (f"- **{dataset}**: nearest to the paper's dense model ({target[0]:.3f} / precision {target[1]:.2f}) is "
          f"{nearest['run'].label} (train accuracy {nearest['train_accuracy']:.3f}, gap {nearest['gap']:.3f}): "
          f"{r['accuracy']:.3f} [{low:.3f}, {high:.3f}] / precision {r['precision']:.2f}, the paper's accuracy "
          f"{within} its interval; that model {memorised}.")


@sections.register("gap", order=100)
def section(runs, out: sections.Output) -> str:
  """The report section, or nothing when no dataset has two runs."""
  by_dataset = {}
  for run in runs:
    by_dataset.setdefault(run.dataset, []).append(run)
  swept = {d: rs for d, rs in by_dataset.items() if len(rs) > 1}
  if not swept:
    return ""
  paper_rows = {row["dataset"]: row for row in collect.paper_numbers()["table1"]["rows"]
                if row["dataset"] in swept}
  points_of = {d: points(rs) for d, rs in swept.items()}
  path = figure(points_of, paper_rows, out.plot("leakage_vs_gap.png"))
  lines = ["## Leakage against the generalisation gap", "",
           f"Every dense and ticket model of the runs of one dataset: train - test accuracy against the paper's attack "
           f"(`{PAPER_ATTACK}`), the loss threshold and the strongest attack (the verdict's: highest ROC AUC on the "
           "run's dense model, paper and zoo protocols, chosen on the selection half of attack-test, measured on the "
           "judged half), at each run's largest paper-protocol attack set. Black lines: "
           "the paper's Table 1.", "", out.image("leakage vs gap", path), "",
           "| dataset | run | model | epochs | augment | train acc | test acc | gap | paper's attack acc [95 % CI] | "
           "precision | loss AUC | strongest attack (AUC, judged half) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  f = lambda r, key: "-" if r is None else f"{r[key]:.3f}"  # noqa: E731
  for dataset in sorted(points_of):
    for p in sorted(points_of[dataset], key=lambda p: (p["kind"], p["name"], p["gap"])):
      c, r = p["run"].config, p["paper"]
      acc = "-" if r is None else f"{r['accuracy']:.3f} [{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]"
      strongest = "-" if p["strongest"] is None else f"{p['strongest']['attack']} ({p['strongest']['roc_auc']:.3f})"
      lines.append(f"| {dataset} | {p['run'].label} | {p['name']} | {c['train']['num_epochs']} | "
                   f"{c['data']['augment']} | {p['train_accuracy']:.3f} | {p['test_accuracy']:.3f} | "
                   f"{p['gap']:.3f} | {acc} | {f(r, 'precision')} | {f(p['loss'], 'roc_auc')} | {strongest} |")
  lines += ["", *(_nearest_line(d, points_of[d], paper_rows.get(d)) for d in sorted(points_of)), ""]
  return sections.text(lines)


def paper_regime(row: dict, ours: dict, train_accuracy: float) -> str:
  """What a paper Table 1 row's numbers imply about the paper's model (its `regime` in paper_numbers.json: "chance",
  or "memorised" for a precision that only near-certain members give), set against what ours measured."""
  paper_accuracy = row["accuracy"]["dense"]
  paper_precision = row["precision"]["dense"]
  if row.get("regime") == "chance":
    at_chance = ours["accuracy_ci"][0] <= 0.5
    return (f" The paper's own {row['name']} figure ({paper_accuracy:.3f}, precision {paper_precision:.2f}) is at "
            f"chance, although a {row['model']} trained to convergence on {row['name']} usually leaks measurably; " + (
                "ours is at chance too (its interval holds 0.5)." if at_chance else
                f"ours is above chance by {ours['accuracy'] - 0.5:.3f} (train accuracy {train_accuracy:.3f})."))
  if row.get("regime") != "memorised":
    return ""
  low, high = ours["accuracy_ci"]
  memorised = " (it memorised its members too)" if train_accuracy >= MEMORISING else ""
  compared = ("its members stand out less than the paper's in the raw softmax vector that the MLP reads"
              if high < paper_accuracy else "its members stand out more than the paper's"
              if low > paper_accuracy else "its attack accuracy agrees with the paper's")
  return (f" The paper's precision of {paper_precision:.2f} implies members predicted with near certainty, "
          f"i.e. a model close to 100 % train accuracy; ours has train accuracy {train_accuracy:.3f}{memorised} and "
          f"the paper's attack precision {ours['precision']:.2f} on it: {compared}.")
