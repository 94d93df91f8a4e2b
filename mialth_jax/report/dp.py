"""The DP-SGD section of a report (docs/dp_and_auditing.md): every DP model beside dense, the lottery tickets and
ADMM pruning of its run on one privacy-utility frontier, each with its guarantee and its empirical epsilon.

Per model: the (epsilon, delta) guarantee dp-accounting gives for its actual training (defences/dp_budget.py) and
its noise multiplier; test accuracy (95 % Wilson interval); the verdict's attack (experiments.verdict: the strongest
on dense, chosen on the selection half of attack-test) with its ROC AUC and TPR at 1 % FPR on the judged half; the AUC
difference from dense (DeLong, paired over the judged half, Holm-adjusted over the section's comparisons of a run);
and the empirical epsilon lower bound of that attack (audit/epsilon.py: threshold chosen on the selection half, bound
on the judged half, at the model's own delta where it has one, else audit.delta). The empirical_epsilon section gives
the bound of every attack.
"""
import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.audit import epsilon as epsilon_lib
from mialth_jax.defences import dp_sgd
from mialth_jax.experiments import verdict as verdict_lib
from mialth_jax.report import audit, collect, defence_compare, defences, plots, sections

plt = plots.plt
MARKERS = {"dense": "*", "ticket": "o", "admm": "D", "dp": "s", "dp_ticket": "P"}
KINDS = tuple(MARKERS)  # the models the section shows, in its order


def present(runs) -> bool:
  return any(s["kind"] in dp_sgd.DP_KINDS for run in runs for s in run.models.values())


def _tag(run, row) -> str:
  """What a point's label says: sparsity and guarantee."""
  summary = run.summary(row.name)
  parts = [f"s{row.sparsity * 100:.0f}"] if row.sparsity else []
  return " ".join(parts + ([f"ε{summary['epsilon']:.2g}"] if "epsilon" in summary else []))


def _guarantee(summary: dict) -> tuple[str, str]:
  if "epsilon" not in summary:
    return "none", "-"
  return f"{summary['epsilon']:.3g} (δ {summary['delta']:.0e})", f"{summary['noise_multiplier']:.3g}"


def comparisons_with_dense(found: list, dense, comparisons) -> dict:
  """name -> (the AUC difference from dense, its Holm-adjusted p-value) for every row with one."""
  paired = {r.name: comparisons.versus(dense, r) for r in found if dense is not None and r is not dense}
  paired = {name: d for name, d in paired.items() if d is not None}
  adjusted = stats.holm([d.p_value for d in paired.values()]) if paired else []
  return {name: (d, float(p)) for (name, d), p in zip(paired.items(), adjusted)}


def table(run, found: list, judged: dict, versus_dense: dict, bounds: dict) -> list[str]:
  """One row per model: guarantee, utility, the verdict attack's leakage on the judged half (`judged`: name ->
  defences.judged_metrics), its difference from dense, and its empirical epsilon."""
  lines = ["| model | kind | DP guarantee ε (δ) | noise multiplier | test acc [95 % CI] | attack (protocol) | "
           "ROC AUC, judged half [95 % CI] | TPR @ 1 % FPR, judged half | AUC − dense [95 % CI], Holm p | "
           "empirical ε lower bound |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for row in found:
    auc, auc_ci, tpr = judged[row.name]
    guarantee, noise = _guarantee(run.summary(row.name))
    d, p = versus_dense.get(row.name, (None, None))
    diff = "-" if d is None else f"{d.difference:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}], p={p:.3g}"
    lines.append(f"| {row.name} | {row.label} | {guarantee} | {noise} | {row.test_accuracy:.3f} "
                 f"[{row.test_ci[0]:.3f}, {row.test_ci[1]:.3f}] | {row.attack['attack']} ({row.attack['protocol']}) "
                 f"| {auc:.3f} [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}] | {tpr} | {diff} | "
                 f"{bounds[row.name]['epsilon']:.3f} |")
  return lines


def verdicts(run, found: list, dense, versus_dense: dict, bounds: dict) -> list[str]:
  """One line per DP model: its leakage against dense (the verdict's rule), its accuracy cost, and whether its
  empirical epsilon respects its guarantee."""
  lines = []
  for row in (r for r in found if r.kind in dp_sgd.DP_KINDS):
    summary, found_bound = run.summary(row.name), bounds[row.name]["epsilon"]
    d, p = versus_dense.get(row.name, (None, None))
    said = "has no paired result against dense" if d is None else (
        {"lower": "lowers", "higher": "raises"}.get(verdict_lib.direction(d.difference, p),
                                                    "does not detectably change") +
        f" the attack's AUC ({d.other:.3f} vs {d.base:.3f}, {d.difference:+.3f}, Holm p={p:.3g})")
    cost = "" if dense is None else (f"; test accuracy {(row.test_accuracy - dense.test_accuracy) * 100:+.1f} points "
                                     f"({row.test_accuracy:.3f} vs {dense.test_accuracy:.3f})")
    held = "below" if found_bound <= summary["epsilon"] else "ABOVE"
    lines.append(f"- {row.name} (ε {summary['epsilon']:.3g} at δ {summary['delta']:.0e}, covering "
                 f"{summary['epsilon_covers']}) {said}{cost}; its empirical ε lower bound {found_bound:.3f} is "
                 f"{held} its guarantee.")
  return lines


def frontier(runs, found: dict, judged: dict, bounds: dict, path: str) -> str:
  """Per run: test accuracy against the verdict attack's AUC (95 % intervals on both axes), one marker per kind, each
  point labelled with its sparsity and guarantee; and each model's empirical epsilon lower bound beside its
  guarantee."""
  shown = [run for run in runs if found.get(run.label)]
  fig, axes = plt.subplots(len(shown), 2, figsize=(12, 4.4 * len(shown)), squeeze=False)
  for (ax_auc, ax_eps), run in zip(axes, shown):
    rows = found[run.label]
    for kind, marker in MARKERS.items():
      mine = [r for r in rows if r.kind == kind]
      if not mine:
        continue
      metrics = [judged[run.label][r.name] for r in mine]
      x, y = np.array([r.test_accuracy for r in mine]), np.array([auc for auc, _, _ in metrics])
      xerr = np.abs(np.array([r.test_ci for r in mine]).T - x)
      yerr = np.abs(np.array([interval for _, interval, _ in metrics]).T - y)
      ax_auc.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, capsize=2, markersize=9 if kind == "dense" else 6,
                      label=mine[0].label.split(",")[0])
      for r, xi, yi in zip(mine, x, y):
        ax_auc.annotate(_tag(run, r), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax_auc.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax_auc.set(xlabel="test accuracy (95 % Wilson CI)", ylabel="verdict's attack: ROC AUC, judged half (95 % CI)",
               title=f"{run.label}: privacy vs utility (lower right is better)")
    ax_auc.legend(fontsize=7, loc="best")
    positions = np.arange(len(rows))
    ax_eps.barh(positions, [bounds[run.label][r.name]["epsilon"] for r in rows], color="tab:blue",
                label="empirical ε lower bound")
    guaranteed = [(i, run.summary(r.name)["epsilon"]) for i, r in enumerate(rows) if "epsilon" in run.summary(r.name)]
    if guaranteed:
      ax_eps.scatter([g for _, g in guaranteed], [i for i, _ in guaranteed], marker="|", s=200, color="tab:red",
                     label="DP guarantee ε")
    ax_eps.set_yticks(positions, [r.name for r in rows], fontsize=7)
    ax_eps.set_xscale("symlog", linthresh=0.1)
    ax_eps.set(xlabel="ε (symmetric log scale)", title=f"{run.label}: empirical ε of the verdict's attack")
    ax_eps.legend(fontsize=7, loc="lower right")
    for ax in (ax_auc, ax_eps):
      ax.grid(alpha=0.3)
  return plots.save(fig, path)


@sections.register("dp", order=22)
def section(runs, out: sections.Output) -> str:
  """The DP section (empty when no run holds a DP model)."""
  if not present(runs):
    return ""
  doc = ["## DP-SGD beside pruning", "", __doc__.split("\n\n")[1].replace("\n", " "), ""]
  found, judged, bounds, parts = {}, {}, {}, []
  for run in runs:
    choice = collect.leakage_choice(run)
    if isinstance(choice, str):
      parts += [f"### {run.label}", "", f"- nothing to compare: {choice}", ""]
      continue
    rows = found[run.label] = [r for r in defences.rows(run, choice, KINDS) if r.kind in KINDS]  # no hard-pruned
    judged[run.label] = {r.name: defences.judged_metrics(r.attack) for r in rows}
    settings = epsilon_lib.settings(run.config)
    bounds[run.label] = {r.name: audit.result_bound(run, r.attack, settings) for r in rows}
    dense = next((r for r in rows if r.name == choice.baseline), None)
    comparisons = defence_compare.Comparisons(run.config["attacks"]["num_bootstrap"], run.config["seed"])
    versus_dense = comparisons_with_dense(rows, dense, comparisons)
    parts += [f"### {run.label} (attack set n{choice.size})", "",
              *table(run, rows, judged[run.label], versus_dense, bounds[run.label]), "",
              *verdicts(run, rows, dense, versus_dense, bounds[run.label]), ""]
  if found:
    chart = frontier(runs, found, judged, bounds, out.plot("dp_frontier.png"))
    doc += [out.image("DP privacy-utility frontier", chart), ""]
  return sections.text(doc + parts)
