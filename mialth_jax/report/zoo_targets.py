"""Per run: every zoo model a target (experiments.zoo_targets): each attack's AUC over the zoo targets (mean, spread),
on the run's own model, and pooled over every target (S x N scores, so TPR at 0.1 % FPR becomes measurable), the ROC
pooled over targets, and (zoo.reference_counts) each attack against the number of reference models."""
import numpy as np

from mialth_jax.attacks import metrics, stats
from mialth_jax.experiments import zoo_targets, zoo_verdict
from mialth_jax.layout import RunLayout
from mialth_jax.report import plots, sections


def _fitted(result: dict) -> str:
  """What the fits chose, e.g. RMIA's offline a over the targets ("a 0.3 (12), 0.4 (5)")."""
  chosen = [tuple(sorted(v.items())) for v in result["fitted_settings"].values() if v]
  if not chosen:
    return "-"
  values, counts = np.unique([", ".join(f"{k} {x:g}" for k, x in c) for c in chosen], return_counts=True)
  return "; ".join(f"{v} ({n})" for v, n in zip(values, counts))


def table(results: dict) -> list[str]:
  lines = ["| kind | attack | zoo targets | AUC over zoo targets: mean ± sd [min, max] | AUC, run's model | "
           "pooled AUC | "
           "pooled TPR @ 1 % FPR [exact 95 % CI] | pooled TPR @ 0.1 % FPR [exact 95 % CI] | chosen by the fits |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for kind, by_attack in results.items():
    for attack, r in by_attack.items():
      z = r["zoo_roc_auc"]
      own = r["per_target"].get(zoo_targets.TARGET)
      own_auc = f"{own['roc_auc']:.3f}" if own else "-"
      count = sum(name != zoo_targets.TARGET for name in r["per_target"])
      lines.append(f"| {kind} | {attack} | {count} | {z['mean']:.3f} ± {z['sd']:.3f} [{z['min']:.3f}, {z['max']:.3f}] "
                   f"| {own_auc} | {r['pooled']['roc_auc']:.3f} | "
                   f"{stats.format_tpr(r['pooled']['tpr_at_fpr_0.01'])} | "
                   f"{stats.format_tpr(r['pooled']['tpr_at_fpr_0.001'])} | {_fitted(r)} |")
  return lines


def pooled_roc(layout: RunLayout, results: dict, path: str) -> str:
  """One log-log panel per kind: each attack's ROC pooled over every target."""
  fig, axes = plots.plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
  for ax, (kind, by_attack) in zip(axes[0], results.items()):
    for attack in by_attack:
      targets = zoo_targets.read(layout, kind, attack)
      fpr, tpr, _ = metrics.roc_curve(*targets.pooled())
      ax.plot(np.maximum(fpr, 1e-5), np.maximum(tpr, 1e-5), label=attack)
    ax.plot([1e-5, 1], [1e-5, 1], color="grey", ls="--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=f"{kind}: ROC pooled over {len(targets.names)} targets")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  return plots.save(fig, path)


def _points(curve: dict, results: dict) -> dict:
  """{attack: [(k, mean AUC, mean TPR at 1 % FPR) or (k, None, None) where undefined]} over the zoo targets, for each
  k of the curve and, last, leave-one-out (every other zoo model: k = S - 1, from the results' per-target metrics)."""
  found = {}
  for attack, by_count in curve["attacks"].items():
    zoo = [m for n, m in results[attack]["per_target"].items() if n != zoo_targets.TARGET]
    found[attack] = [(int(k), c.get("roc_auc"), c.get("tpr_at_fpr_0.01")) for k, c in by_count.items()] + [
        (len(zoo) - 1, results[attack]["zoo_roc_auc"]["mean"], float(np.mean([m["tpr_at_fpr_0.01"]["tpr"]
                                                                               for m in zoo])))]
  return found


def reference_counts(curves: dict, results: dict) -> list[str]:
  """Each attack's mean AUC / TPR at 1 % FPR over the zoo targets against the number of reference models; the last
  column is the leave-one-out table's (every other zoo model)."""
  lines = []
  for kind, curve in curves.items():
    points = _points(curve, results[kind])
    ks = [k for k, _, _ in next(iter(points.values()))]
    lines += [f"{kind}: mean over the zoo targets of AUC / TPR @ 1 % FPR (per target, not pooled) when k random "
              "other zoo models are the only references (\"-\": the attack is not defined with k models)", "",
              "| attack | " + " | ".join(f"k = {k}" for k in ks) + " |", "| --- |" + " --- |" * len(ks)]
    for attack, found in points.items():
      lines.append(f"| {attack} | " + " | ".join("-" if auc is None else f"{auc:.3f} / {tpr:.3f}"
                                                  for _, auc, tpr in found) + " |")
    lines.append("")
  return lines


def reference_count_figure(curves: dict, results: dict, path: str) -> str:
  """AUC (top) and TPR at 1 % FPR (bottom) against k, one panel column per kind, one line per attack."""
  fig, axes = plots.plt.subplots(2, len(curves), figsize=(6 * len(curves), 7), squeeze=False)
  for column, (kind, curve) in enumerate(curves.items()):
    for attack, found in _points(curve, results[kind]).items():
      k, auc, tpr = zip(*sorted(p for p in found if p[1] is not None))
      axes[0, column].plot(k, auc, marker="o", label=attack)
      axes[1, column].plot(k, tpr, marker="o", label=attack)
    for row, label in enumerate(("mean AUC over zoo targets", "mean TPR @ 1 % FPR over zoo targets")):
      axes[row, column].set(xscale="log", xlabel="reference models k", ylabel=label, title=kind)
      axes[row, column].grid(alpha=0.3)
    axes[0, column].legend(fontsize=7)
  return plots.save(fig, path)


@sections.register("zoo_targets", order=135, per_run=True)
def section(runs, out: sections.Output) -> str:
  [run] = runs
  layout = RunLayout(run.workdir)
  results = zoo_targets.results(layout)
  if not results:
    return ""
  png = pooled_roc(layout, results, out.plot(f"roc_zoo_targets_{run.label}.png"))
  doc = [f"### {run.label}: every zoo model a target (leave-one-out)", "", zoo_verdict.ModelLevel.method, "",
         *table(results), "", out.image(f"pooled ROC {run.label}", png), ""]
  curves = {kind: curve for kind, curve in zoo_targets.curves(layout).items() if kind in results}
  if curves:
    figure = reference_count_figure(curves, results, out.plot(f"reference_counts_{run.label}.png"))
    doc += [*reference_counts(curves, results), out.image(f"against the reference count {run.label}", figure), ""]
  return sections.text(doc)
