"""The adversarial protocol's part of report.md: white-box and label-only attacks next to the output-based ones on
every model (dense, tickets, defences), with bootstrap intervals, the score distributions of members and non-members
(PNG), the eps sweep (PNG) and the defences' test accuracy against the strongest attack (chosen on the selection half
of attack-test, measured on the judged half: experiments/judged.py).

Every number is recomputed from the per-example scores (collect.attack_results); the side members were on and the
smoothed targets' accuracy come from attacks/n<size>/adversarial/{statistics,defended}.json.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mialth_jax.attacks import registry  # noqa: E402
from mialth_jax.experiments import adversarial as protocol  # noqa: E402
from mialth_jax.experiments import judged  # noqa: E402
from mialth_jax.layout import RunLayout  # noqa: E402
from mialth_jax.report import collect, fmt, names, plots, sections  # noqa: E402
from mialth_jax.utils import io  # noqa: E402

ACCESS = {"adversarial_tv": "white-box", "input_gradient_norm": "white-box", "minimal_perturbation": "white-box",
          "adversarial_features": "white-box + outputs", "hopskipjump": "label-only",
          "augmentation_robustness": "label-only"}  # any other attack reads the outputs only
SIGNAL_TYPES = tuple(t for t in ACCESS if t != "adversarial_features")
LOG_SCALE, LOG_FLOOR = ("adversarial_tv", "input_gradient_norm"), 1e-8  # histograms of these in log10(max(x, floor))


def _read(run: collect.Run, size: int, name: str) -> dict:
  path = os.path.join(protocol.adversarial_dir(RunLayout(run.workdir), size), name)
  return io.read_json(path) if os.path.exists(path) else {}


def _ci(r: dict, key: str) -> str:
  low, high = r[f"{key}_ci"]
  return f"{r[key]:.3f} [{low:.3f}, {high:.3f}]"


def targets(run: collect.Run, results: list[dict]) -> list[str]:
  """Attacked targets: the run's models (dense first, then by sparsity), then the smoothed ones."""
  present = {r["target"] for r in results}
  models = sorted((n for n in run.models if n in present),
                  key=lambda n: (run.models[n]["kind"] != "dense", run.models[n]["sparsity"], n))
  return models + sorted(present - set(models))


def members_side(r: dict, stats: dict) -> str:
  """Where members lie on a signal: "<attack-train> / <attack-test>", the first fitted ("auto") or the attack's rule
  ("fixed"), the second read from attack-test (the rule's side when its ROC AUC there is >= 0.5)."""
  fitted = stats.get(r["target"], {}).get(r["attack"], {}).get("members")
  if fitted is None:
    return ""
  rule = registry.make_attack(dict(r["attack_config"])).direction != "auto"
  tested = fitted if r["roc_auc"] >= 0.5 else {"lower": "higher", "higher": "lower"}[fitted]
  return f"{fitted}{' (fixed)' if rule else ''} / {tested}"


def attack_table(run: collect.Run, results: list[dict], stats: dict) -> list[str]:
  lines = ["| model | attack | access | members (train / test) | ROC AUC [95 % CI] | "
           "TPR @ 0.1 % FPR [exact 95 % CI] | TPR @ 1 % FPR [exact 95 % CI] |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for name in targets(run, results):
    for r in sorted((r for r in results if r["target"] == name), key=lambda r: (
        list(ACCESS).index(r["attack_config"]["type"]) if r["attack_config"]["type"] in ACCESS else -1, r["attack"])):
      side = members_side(r, stats)
      lines.append(f"| {name} | {r['attack']} | {ACCESS.get(r['attack_config']['type'], 'outputs')} | {side} | "
                   f"{_ci(r, 'roc_auc')} | {fmt.tpr(r, 0.001)} | {fmt.tpr(r, 0.01)} |")
  return lines


def distributions(name: str, results: list[dict], stats: dict, path: str) -> str | None:
  """Histograms of the raw signal of members and non-members (attack-test) for each signal attack on `name`."""
  rows = sorted((r for r in results if r["target"] == name and r["attack_config"]["type"] in SIGNAL_TYPES),
                key=lambda r: r["attack"])
  if not rows:
    return None
  columns = min(4, len(rows))
  fig, axes = plt.subplots(-(-len(rows) // columns), columns, figsize=(3.2 * columns, 2.6 * -(-len(rows) // columns)),
                           squeeze=False)
  for ax, r in zip(axes.flat, rows):
    saved = io.read_npz(r["scores_path"])
    sign = -1.0 if stats.get(name, {}).get(r["attack"], {}).get("members") == "lower" else 1.0
    raw, member = sign * saved["scores"], saved["is_member"].astype(bool)
    spread = r["attack_config"]["type"] in LOG_SCALE  # >= 0, over orders of magnitude (members near 0)
    raw = np.log10(np.maximum(raw, LOG_FLOOR)) if spread else raw
    bins = np.histogram_bin_edges(raw, bins=30)
    ax.hist(raw[member], bins, alpha=0.6, label="members")
    ax.hist(raw[~member], bins, alpha=0.6, label="non-members")
    ax.set_title(f"{r['attack']}{' (log10)' if spread else ''}, AUC {r['roc_auc']:.3f}", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(rows):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.suptitle(f"{name}: signal of members vs non-members (attack-test)", fontsize=9)
  return plots.save(fig, path)


def eps_sweep(run: collect.Run, results: list[dict], path: str) -> tuple[str | None, list[str]]:
  """ROC AUC (95 % CI) of the total-variation proxy (PGD, output tv) against eps, per norm and model."""
  sweep = [r for r in results if r["attack_config"]["type"] == "adversarial_tv"
           and r["attack_config"].get("output", "tv") == "tv" and r["attack_config"].get("steps", 10) > 1]
  if not sweep:
    return None, []
  norms = sorted({r["attack_config"].get("norm", "linf") for r in sweep})
  fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 3.6), squeeze=False)
  lines = ["| model | norm | eps | ROC AUC [95 % CI] | TPR @ 1 % FPR [exact 95 % CI] |",
           "| --- | --- | --- | --- | --- |"]
  names = targets(run, sweep)
  for ax, norm in zip(axes[0], norms):
    ticks = set()
    for i, name in enumerate(names):
      rows = sorted((r for r in sweep if r["target"] == name and r["attack_config"].get("norm", "linf") == norm),
                    key=lambda r: r["attack_config"]["eps"])
      if not rows:
        continue
      eps = np.array([r["attack_config"]["eps"] * (255 if norm == "linf" else 1) for r in rows])
      ticks |= set(eps.round(6).tolist())
      auc = np.array([r["roc_auc"] for r in rows])
      dodge = 1 + 0.04 * (i - (len(names) - 1) / 2)  # models side by side, so their intervals stay legible
      ax.errorbar(eps * dodge, auc, yerr=np.abs(np.array([r["roc_auc_ci"] for r in rows]).T - auc), marker="o",
                  capsize=3, label=name)
      lines += [f"| {name} | {norm} | {e:g}{'/255' if norm == 'linf' else ''} | {_ci(r, 'roc_auc')} | "
                f"{fmt.tpr(r, 0.01)} |" for e, r in zip(eps, rows)]
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel=("eps (x 1/255)" if norm == "linf" else "eps (l2, [0, 1] pixels)") + "; models offset",
           ylabel="ROC AUC (95 % CI)", title=f"{run.label}: TV proxy vs eps ({norm})")
    ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.minorticks_off()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  return plots.save(fig, path), lines


def strongest(found: list[dict]) -> dict:
  """The attack with the highest ROC AUC on the selection half of attack-test (`selection_roc_auc`, computed when
  collect read the result), measured on the judged half."""
  return judged.on_judged_half(max(found, key=lambda r: (r["selection_roc_auc"], r["attack"])))


def defences(run: collect.Run, results: list[dict], defended: dict) -> list[str]:
  """Each defended model next to the undefended dense: test accuracy and the strongest attack on it."""
  rows = [(n, "none", run.models[n]["test_accuracy"]) for n in ("dense",) if n in run.models]
  rows += [(n, names.model_kind(s["kind"]) + " (ours, training)", s["test_accuracy"]) for n, s in run.models.items()
           if s["kind"] == "input_gradient_penalty"]
  rows += [(n, f"output smoothing sigma {d['sigma']:g}, {d['num_samples']} samples (ours, inference)",
            d["test_accuracy"]) for n, d in sorted(defended.items())]
  lines = ["| model | defence | test accuracy | strongest attack | judged examples | ROC AUC [DeLong 95 % CI] | "
           "TPR @ 1 % FPR [exact 95 % CI] |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for name, defence, accuracy in rows:
    found = [r for r in results if r["target"] == name]
    if found:
      best = strongest(found)
      lines.append(f"| {name} | {defence} | {accuracy:.4f} | {best['attack']} | "
                   f"{best['num_members'] + best['num_nonmembers']} | {_ci(best, 'roc_auc')} | {fmt.tpr(best, 0.01)} |")
  return lines


@sections.register("adversarial", order=140, per_run=True)
def section(runs: list[collect.Run], out: sections.Output) -> str:
  """The report lines (and PNGs) of the adversarial protocol's results at the run's attack-set size."""
  [run] = runs
  size = collect.main_size(run)
  if size is None:
    return ""
  results = collect.select(run.attacks, protocol="adversarial", size=size)
  results = [r for r in results if r["source"] == r["target"]]
  if not results:
    return ""
  stats, defended = _read(run, size, "statistics.json"), _read(run, size, "defended.json")
  first = results[0]
  doc = [f"### {run.label}: adversarial-example and label-only attacks ({fmt.attack_set(size, results)})", "",
         f"Every attack on the same {first['num_members'] + first['num_nonmembers']} attack-test examples "
         f"({first['num_members']} members); thresholds fitted on each model's own attack-train part. `members`: the "
         "side of the signal members are on, as fitted on attack-train (or fixed by the attack's published rule) / "
         "as attack-test shows it (lower: smaller total variation or gradient, i.e. members vary less); intervals: "
         "bootstrap over attack-test. Method and choices: docs/adversarial.md.", "", *attack_table(run, results, stats),
         "", "Defences (ours: the paper's own defence is not known), each against the strongest attack run on it: the "
         "highest ROC AUC on the selection half of attack-test, measured on the other (judged) half:", "",
         *defences(run, results, defended), ""]
  sweep_png, sweep_lines = eps_sweep(run, results, out.plot(f"adversarial_eps_{run.label}.png"))
  if sweep_png:
    doc += [out.image(f"eps sweep {run.label}", sweep_png), "", *sweep_lines, ""]
  for name in targets(run, results):
    png = distributions(name, results, stats, out.plot(f"adversarial_scores_{run.label}_{name}.png"))
    if png:
      doc += [out.image(f"signals {name}", png), ""]
  return sections.text(doc)
