"""PNG figures of a report (matplotlib, Agg): the paper's Figures 1-4, ROC curves and per-class leakage."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mialth_jax.attacks import metrics as metrics_lib  # noqa: E402
from mialth_jax.lottery import recipes  # noqa: E402
from mialth_jax.report import collect  # noqa: E402
from mialth_jax.utils import io  # noqa: E402

def save(fig, path: str) -> str:
  """Writes the figure as a PNG atomically and closes it."""
  fig.tight_layout()
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format="png")
  plt.close(fig)
  return path


def tickets(run: collect.Run, kinds=None) -> list[str]:
  """Model names of `kinds` (default: dense and the tickets of every registered lottery.method), by sparsity."""
  kinds = ("dense", *recipes.ticket_kinds()) if kinds is None else kinds
  return sorted((n for n, s in run.models.items() if s["kind"] in kinds), key=lambda n: run.models[n]["sparsity"])


def wilson(successes, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
  """95 % Wilson score interval (low, high) of a proportion: unlike the normal approximation it stays inside [0, 1]
  and is not zero-width at 0 or 1 correct, which accuracies near 1 and small classes need."""
  successes, n = np.asarray(successes, np.float64), np.asarray(n, np.float64)
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  # clip: rounding at 0 or n correct can put an end an ulp outside [0, 1] or on the wrong side of p
  return np.clip(centre - half, 0, p), np.clip(centre + half, p, 1)


def _wilson_err(successes, n) -> np.ndarray:
  """Error bars [2, K] (below, above the observed proportion) of Wilson intervals, for `errorbar(yerr=...)`."""
  p, (low, high) = np.asarray(successes) / np.asarray(n), wilson(successes, n)
  return np.array([p - low, high - p])


def _dodge(i: int, count: int, step: float = 1.2) -> float:
  """x offset of series i of `count` plotted at the same x, so their error bars do not hide each other."""
  return (i - (count - 1) / 2) * step


def _dodged(count: int) -> str:
  """What an x label adds when series are offset."""
  return "; series offset for legibility" if count > 1 else ""


def _finish(ax, **labels) -> None:
  """Axis labels, a light grid, and the legend outside the axes so it never hides data."""
  ax.set(**labels)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def accuracy_vs_sparsity(runs: list[collect.Run], path: str) -> str:
  """Figure 1: test accuracy (95 % Wilson interval over the test split) of the dense model and its tickets (and
  controls) against sparsity."""
  fig, ax = plt.subplots(figsize=(8, 4))
  series = [(run, kind, style) for run in runs
            for kind, style in (("ticket", "o-"), ("random_prune", "s--"), ("random_reinit", "^:"))
            if tickets(run, None if kind == "ticket" else (kind,))]
  colors = {}
  for i, (run, kind, style) in enumerate(series):
    names = tickets(run, None if kind == "ticket" else (kind,))
    n_test = len(run.splits.test)
    acc = np.array([run.models[n]["test_accuracy"] for n in names])
    x = np.array([100 * run.models[n]["sparsity"] for n in names]) + _dodge(i, len(series))
    line = ax.errorbar(x, acc, yerr=_wilson_err(np.round(acc * n_test), n_test), fmt=style, capsize=3,
                       color=colors.get(run.label), alpha=1.0 if kind == "ticket" else 0.7,
                       label=f"{run.label} {kind}")
    colors.setdefault(run.label, line.lines[0].get_color())
  _finish(ax, xlabel=f"sparsity (% of prunable weights removed; 0 = dense{_dodged(len(series))})",
          ylabel="test accuracy (95 % Wilson CI)", title="Test accuracy vs sparsity (cf. paper Fig. 1)")
  return save(fig, path)


def attack_vs_sparsity(runs: list[collect.Run], attacks: list[str], size_of, path: str) -> str:
  """Figure 2: attack accuracy (95 % CI) against sparsity, paper protocol."""
  fig, ax = plt.subplots(figsize=(8, 4))
  series = [(run, attack) for run in runs for attack in attacks]
  for i, (run, attack) in enumerate(series):
    names = tickets(run)
    rows = [collect.select(run.attacks, protocol="paper", target=n, source=n, attack=attack, size=size_of(run))
            for n in names]
    pts = [(100 * run.models[n]["sparsity"], r[0]) for n, r in zip(names, rows) if r]
    if pts:
      x, res = zip(*pts)
      acc = np.array([r["accuracy"] for r in res])
      err = np.abs(np.array([r["accuracy_ci"] for r in res]).T - acc)
      ax.errorbar(np.array(x) + _dodge(i, len(series)), acc, yerr=err, marker="o", capsize=3,
                  label=f"{run.label}, {attack}")
  ax.axhline(0.5, color="grey", lw=0.8, ls="--")
  _finish(ax, xlabel=f"sparsity (%; 0 = dense{_dodged(len(series))})", ylabel="attack accuracy (95 % CI)",
          title="Membership-inference accuracy vs sparsity (cf. paper Fig. 2)")
  return save(fig, path)


def attack_vs_samples(runs: list[collect.Run], attack: str, path: str) -> str:
  """Figure 3: attack accuracy against the attack-set size, dense and the Table 1 ticket (80 %)."""
  fig, ax = plt.subplots(figsize=(8, 4))
  for run in runs:
    for name in [n for n in ("dense", run.table1_ticket) if n]:
      rows = sorted(collect.select(run.attacks, protocol="paper", source=name, target=name, attack=attack),
                    key=lambda r: r["size"])
      if len(rows) > 1:
        acc = np.array([r["accuracy"] for r in rows])
        err = np.abs(np.array([r["accuracy_ci"] for r in rows]).T - acc)
        ax.errorbar([r["size"] for r in rows], acc, yerr=err, marker="o", capsize=3,
                    label=f"{run.label} {name}")
  ax.axhline(0.5, color="grey", lw=0.8, ls="--")
  _finish(ax, xscale="log", xlabel="attack samples (members + non-members)", ylabel="attack accuracy (95 % CI)",
          title=f"Attack accuracy vs attack samples, {attack} (cf. paper Fig. 3)")
  return save(fig, path)


def transfer_heatmap(labels: list[str], accuracy: np.ndarray, title: str, path: str) -> str:
  """Figure 4: accuracy[source, target] of an attack learnt on the source model's outputs, applied to the target."""
  fig, ax = plt.subplots(figsize=(3.0 + 0.8 * len(labels), 2.0 + 0.7 * len(labels)))
  image = ax.imshow(accuracy, cmap="viridis")
  for i in range(len(labels)):
    for j in range(len(labels)):
      ax.text(j, i, f"{accuracy[i, j]:.3f}", ha="center", va="center", fontsize=7,
              color="white" if accuracy[i, j] < np.nanmean(accuracy) else "black")
  ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
  ax.set_yticks(range(len(labels)), labels, fontsize=7)
  ax.set(xlabel="target (attacked model)", ylabel="source (attack trained on)", title=title)
  fig.colorbar(image, ax=ax, label="attack accuracy")
  return save(fig, path)


def _log_log_roc(curves: list[tuple[str, dict]], title: str, path: str) -> str:
  """ROC curves of (label, result) pairs on log-log axes (the low-FPR regime that matters, Carlini et al. 2022)."""
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for label, r in curves:
    scores = io.read_npz(r["scores_path"])
    fpr, tpr, _ = metrics_lib.roc_curve(scores["scores"], scores["is_member"])
    ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=label)
  ax.plot([1e-4, 1], [1e-4, 1], color="grey", ls="--", lw=0.8, label="chance")
  _finish(ax, xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="false positive rate",
          ylabel="true positive rate", title=title)
  return save(fig, path)


def roc_curves(run: collect.Run, attack: str, size: int, path: str) -> str:
  """One attack (paper protocol), dense vs tickets."""
  return _log_log_roc([(name, r) for name in tickets(run) for r in collect.select(
      run.attacks, protocol="paper", source=name, target=name, attack=attack, size=size)],
                      f"{run.label}: ROC, {attack}", path)


def roc_attacks(run: collect.Run, models: list[str], attacks: list[tuple[str, str]], size: int, path: str) -> str:
  """Several attacks ((protocol, attack) pairs: LiRA, RMIA, the paper's MLP, the loss threshold) on each model."""
  return _log_log_roc([(f"{name}: {attack}", r) for name in models for protocol, attack in attacks
                       for r in collect.select(run.attacks, protocol=protocol, source=name, target=name,
                                               attack=attack, size=size)],
                      f"{run.label}: ROC of the strong and the paper's attacks", path)


def class_counts(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(classes, correct, count) of a result's attack-test examples: for each true class, how many the attack's own
  decision got right and how many there are (its per-example .npz)."""
  arrays = io.read_npz(result["scores_path"])
  classes = np.unique(arrays["classes"])
  in_class = arrays["classes"][None, :] == classes[:, None]
  correct = (in_class & (arrays["predicted"] == arrays["is_member"])).sum(axis=1)
  return classes, correct, in_class.sum(axis=1)


def per_class(run: collect.Run, attack: str, size: int, names: list[str], class_names: list[str],
              path: str) -> str | None:
  """Per-class attack accuracy of the given models (the paper's future work: do classes leak differently?), with
  95 % Wilson intervals over each class's attack-test examples."""
  rows = [collect.select(run.attacks, protocol="paper", source=n, target=n, attack=attack, size=size) for n in names]
  rows = [(n, r[0]) for n, r in zip(names, rows) if r]
  if not rows:
    return None
  classes = sorted(rows[0][1]["per_class_accuracy"], key=int)
  fig, ax = plt.subplots(figsize=(min(14, max(8, 0.12 * len(classes) * len(rows))), 3.8))
  width = 0.8 / len(rows)
  for i, (name, r) in enumerate(rows):
    _, correct, count = class_counts(r)
    ax.bar(np.arange(len(classes)) + i * width, correct / count, width, label=name,
           yerr=_wilson_err(correct, count), capsize=2, error_kw={"lw": 0.8})
  ax.axhline(0.5, color="grey", lw=0.8, ls="--")
  if len(classes) <= 20:
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2,
                  [class_names[int(c)] if class_names else c for c in classes], rotation=45, ha="right", fontsize=7)
  _finish(ax, xlabel="true class", ylabel="attack accuracy (95 % Wilson CI)",
          title=f"{run.label}: per-class attack accuracy, {attack}")
  return save(fig, path)
