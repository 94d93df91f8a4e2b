"""The privacy-utility chart of the defences section: test accuracy against the strongest attack's ROC AUC and TPR at
1 % FPR on the judged half of attack-test, as the section's table (exact intervals; left empty where the non-members
are too few to measure it), one point per model, one marker per defence family."""
import numpy as np

from mialth_jax.report import fmt, plots

plt = plots.plt  # matplotlib with the Agg backend, as plots sets it up
MARKERS = {"dense": "*", "ticket": "o", "imp": "o", "finetune": "s", "admm": "D", "minmax": "^", "admm_minmax": "v"}


def _tag(row) -> str:
  return " ".join(([f"s{row.sparsity * 100:.0f}"] if row.sparsity else []) +
                  ([f"l{row.lam:g}"] if row.lam is not None else []))


def privacy_utility(runs, found: dict, path: str) -> str:
  """One row of two panels per run (AUC, TPR @ 1 % FPR vs test accuracy), 95 % intervals on both axes; ADMM's
  W-phase models (not pruned yet) and hard-pruned ones (not fine-tuned yet) are left out."""
  shown = [run for run in runs if found.get(run.label)]
  fig, axes = plt.subplots(len(shown) or 1, 2, figsize=(12, 4.2 * max(1, len(shown))), squeeze=False)
  for (ax_auc, ax_tpr), run in zip(axes, shown):
    rows = [r for r in found[run.label] if r.kind in MARKERS]
    for kind, marker in MARKERS.items():
      mine = [r for r in rows if r.kind == kind]
      if not mine:
        continue
      x = np.array([r.test_accuracy for r in mine])
      xerr = np.abs(np.array([r.test_ci for r in mine]).T - x)
      measured = [fmt.tpr_measure(r.judged, 0.01) for r in mine]
      intervals = {"roc_auc": [r.judged["roc_auc_ci"] for r in mine], "tpr": [m["ci"] for m in measured]}
      for ax, metric in ((ax_auc, "roc_auc"), (ax_tpr, "tpr")):
        if metric == "tpr" and not all(m["estimable"] for m in measured):
          continue
        y = np.array([r.judged[metric] if metric == "roc_auc" else m["tpr"] for r, m in zip(mine, measured)])
        yerr = np.abs(np.array(intervals[metric]).T - y)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, capsize=2, markersize=9 if kind == "dense" else 6,
                    label=mine[0].label.split(",")[0] if ax is ax_auc else None)
        for r, xi, yi in zip(mine, x, y):
          ax.annotate(_tag(r), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax_auc.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax_auc.set(xlabel="test accuracy (95 % Wilson CI)", ylabel="strongest attack: ROC AUC, judged half (95 % CI)",
               title=f"{run.label}: privacy vs utility (lower right: better)")
    short = [m for m in (fmt.tpr_measure(r.judged, 0.01) for r in rows) if not m["estimable"]]
    ax_tpr.set(xlabel="test accuracy (95 % Wilson CI)", ylabel="that attack: TPR @ 1 % FPR (exact 95 % CI)",
               title=f"{run.label}: low-FPR leakage")
    if short:
      ax_tpr.text(0.5, 0.5, f"not measured: TPR at 1 % FPR needs >= {short[0]['needed_nonmembers']:,} non-members\n"
                  f"in the judged half, which has {short[0]['num_nonmembers']:,}", ha="center", va="center",
                  transform=ax_tpr.transAxes, fontsize=9)
    ax_auc.legend(fontsize=7, loc="best")
    for ax in (ax_auc, ax_tpr):
      ax.grid(alpha=0.3)
      ax.title.set_fontsize(10)  # long run names: the two panels' titles must not run into each other
  return plots.save(fig, path)
