"""The figures of the fit-curves section (report/fit_curves.py): leakage against fit along training, and the
privacy-utility frontier, each kind a colour and each family of kinds a marker."""
import numpy as np

from mialth_jax.lottery import recipes
from mialth_jax.report import plots


def families() -> tuple[str, ...]:
  """The families of kinds in the section's order: the pruning methods' tickets (recipes.ticket_kinds, in their
  registration order), the random-prune controls, the narrow controls, then the others."""
  return (*recipes.ticket_kinds(), "random_prune", "narrow")


def _mean_curve(curve: dict, metric: str) -> np.ndarray:
  return np.array(curve["metrics"][metric], np.float64).mean(axis=1)


MARKERS = {"ticket": "o", "random_prune": "^", "narrow": "s", "other": "D"}
MORE_MARKERS = "v<>ph*PX8"  # the other families' (IMP, pruning at initialisation, channel, N:M, ...), in order


def _style(index: int, kind: str, curve: dict) -> tuple:
  """(colour, marker) of a kind in the figures: dense black, the others from a 20-colour map, a marker per family."""
  if kind == "dense":
    return "black", "o"
  family = curve.get("family", "other")
  more = [f for f in families() if f not in MARKERS]
  marker = MARKERS.get(family) or (MORE_MARKERS[more.index(family) % len(MORE_MARKERS)] if family in more else "D")
  return plots.plt.get_cmap("tab20")(index % 20), marker


def curve_figure(curves: dict, attack: str, matched: tuple, path: str) -> str:
  """Leakage (the attack's AUC, top; the loss threshold's AUC, bottom) against the `matched` fit metrics ((name,
  label) of train loss and held-out accuracy): each kind's mean over its targets at each kept step (thin lines: each
  target)."""
  fig, axes = plots.plt.subplots(2, 2, figsize=(12, 8.5))
  for i, (kind, curve) in enumerate(curves.items()):
    colour, marker = _style(i, kind, curve)
    for column, (x, xlabel) in enumerate(matched):
      for row, (y, ylabel) in enumerate(((("roc_auc", f"{attack} AUC (leave-one-out)")),
                                         ("loss_roc_auc", "loss-threshold AUC"))):
        ax = axes[row, column]
        ax.plot(np.array(curve["metrics"][x]), np.array(curve["metrics"][y]), color=colour, alpha=0.15, lw=0.7)
        ax.plot(_mean_curve(curve, x), _mean_curve(curve, y), color=colour, marker=marker, ms=3, label=kind)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
  for ax in axes[:, 0]:
    ax.set_xscale("log")  # matched on its logarithm too
    ax.invert_xaxis()  # training runs left to right: train loss falls
  axes[0, 0].legend(fontsize=8)
  return plots.save(fig, path)


def pareto(accuracy: np.ndarray, leakage: np.ndarray) -> np.ndarray:
  """Indices of the points no other point beats in both (higher accuracy and lower leakage), by accuracy."""
  order = np.lexsort((leakage, -accuracy))
  front, best = [], np.inf
  for i in order:
    if leakage[i] < best:
      front.append(i)
      best = leakage[i]
  return np.array(front[::-1], int)


def frontier_figure(curves: dict, attack: str, path: str) -> str:
  """(held-out accuracy, leakage) of every kind at every kept step (mean over its targets), the Pareto frontier of
  all points and that of dense's alone."""
  fig, ax = plots.plt.subplots(figsize=(7.5, 5.5))
  everything = []
  for i, (kind, curve) in enumerate(curves.items()):
    accuracy, leakage = _mean_curve(curve, "heldout_accuracy"), _mean_curve(curve, "roc_auc")
    colour, marker = _style(i, kind, curve)
    ax.scatter(accuracy, leakage, color=colour, marker=marker, s=14, label=kind, zorder=3)
    everything += list(zip(accuracy, leakage))
    if kind == "dense":
      front = pareto(accuracy, leakage)
      ax.plot(accuracy[front], leakage[front], color=colour, lw=1, ls=":", label="dense's frontier")
  points = np.array(everything)
  front = pareto(points[:, 0], points[:, 1])
  ax.plot(points[front, 0], points[front, 1], color="black", lw=1.2, label="frontier of all")
  ax.set(xlabel="held-out accuracy (mean over targets)", ylabel=f"{attack} AUC (mean over targets)",
         title="privacy-utility: every kind at every kept step")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return plots.save(fig, path)
