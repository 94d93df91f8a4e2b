"""report.md: the paper's Table 1 and Figures 1-4 side by side with ours, then what the paper left open."""
import os
import platform

import numpy as np

from mialth_jax.experiments import verdict
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.report import adversarial, collect, defences, gap, plots, seeds, transfer
from mialth_jax.utils import io

PAPER_ATTACK = collect.PAPER_ATTACK


def _f(x, digits=3) -> str:
  return "-" if x is None else f"{x:.{digits}f}"


def _ci(r, key="accuracy") -> str:
  """The value with its 95 % bootstrap interval where the result has one (TPR intervals came later than the rest)."""
  if f"{key}_ci" not in r:
    return _f(r[key])
  return f"{r[key]:.3f} [{r[key + '_ci'][0]:.3f}, {r[key + '_ci'][1]:.3f}]"


def main_size(run: collect.Run) -> int | None:
  """The attack size the tables use: the largest one with paper-protocol results."""
  sizes = [r["size"] for r in run.attacks if r["protocol"] == "paper"]
  return max(sizes) if sizes else None


def runs_table(runs) -> list[str]:
  lines = ["| run | dataset | model | width | members | epochs | augment | models | training wall time |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    c = run.config
    epochs = c["train"]["num_epochs"] if c["train"]["num_epochs"] > 0 else f"{c['train']['num_steps']} steps"
    wall = sum(s["wall_seconds"] for s in run.models.values())
    lines.append(f"| {run.label} | {run.dataset} | {run.arch} | x{c['model']['width_multiplier']} | "
                 f"{len(run.splits.members)} | {epochs} | {c['data']['augment']} | {len(run.models)} | "
                 f"{wall / 60:.1f} min |")
  return lines


def verdict_section(runs) -> list[str]:
  """Each run's tickets against its dense model (experiments.verdict), with the same resamples as at the run's end."""
  lines = []
  for run in runs:
    judgement = verdict.judge(run.workdir, run.config["attacks"]["num_bootstrap"], run.config["seed"])
    lines += [f"**{run.dataset} ({run.label})**: {judgement.method}", "", *(f"- {l}" for l in judgement.lines), ""]
  return lines


def table1(runs, paper: dict) -> list[str]:
  lines = ["| dataset (run) | model | attack | accuracy [95 % CI] | paper | diff | precision | paper | diff | "
           "ROC AUC | TPR @ 1 % FPR | test acc | train acc |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    row = next((p for p in paper["table1"]["rows"] if p["dataset"] == run.dataset), None)
    for name, key in (("dense", "dense"), (run.table1_ticket, "ticket")):
      for attack in (PAPER_ATTACK, "mlp"):
        r = collect.paper_result(run, name, attack, main_size(run))
        if r is None or name not in run.models:
          continue
        m = run.models[name]
        pa, pp = (row["accuracy"][key], row["precision"][key]) if row else (None, None)
        lines.append(
            f"| {run.dataset} ({run.label}) | {name} | {attack} | {_ci(r)} | {_f(pa)} | "
            f"{_f(None if pa is None else r['accuracy'] - pa, 3)} | {_f(r['precision'])} | {_f(pp, 2)} | "
            f"{_f(None if pp is None else r['precision'] - pp, 2)} | {_f(r['roc_auc'])} | "
            f"{_f(r['tpr_at_fpr_0.01'])} | {_f(m['test_accuracy'])} | {_f(m['train_accuracy'])} |")
  return lines


def by_sparsity(run) -> list[str]:
  """Every model of the run: dense first, then by sparsity."""
  return sorted(run.models, key=lambda n: (run.models[n]["kind"] != "dense", run.models[n]["sparsity"], n))


def accuracy_table(run) -> list[str]:
  lines = ["| model | kind | sparsity | test accuracy | train accuracy | generalisation gap |",
           "| --- | --- | --- | --- | --- | --- |"]
  for name in by_sparsity(run):
    m = run.models[name]
    lines.append(f"| {name} | {m['kind']} | {m['sparsity']:.3f} | {m['test_accuracy']:.4f} | "
                 f"{m['train_accuracy']:.4f} | {m['train_accuracy'] - m['test_accuracy']:.4f} |")
  return lines


def attacks_table(run, protocol: str, size: int) -> list[str]:
  lines = ["| model | attack | accuracy [95 % CI] | precision | recall | ROC AUC | advantage | TPR @ 0.1 % FPR | "
           "TPR @ 1 % FPR |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name in by_sparsity(run):
    for r in sorted(collect.select(run.attacks, protocol=protocol, source=name, target=name, size=size),
                    key=lambda r: r["attack"]):
      lines.append(f"| {name} | {r['attack']} | {_ci(r)} | {_f(r['precision'])} | {_f(r['recall'])} | "
                   f"{_f(r['roc_auc'])} | {_f(r['advantage'])} | {_ci(r, 'tpr_at_fpr_0.001')} | "
                   f"{_ci(r, 'tpr_at_fpr_0.01')} |")
  return lines


def per_class_summary(run, attack: str, size: int, names: list[str], class_names) -> list[str]:
  lines = []
  for name in names:
    found = collect.select(run.attacks, protocol="paper", source=name, target=name, attack=attack, size=size)
    if found:
      acc = found[0]["per_class_accuracy"]
      ranked = sorted(acc, key=acc.get)
      label = (lambda c: class_names[int(c)]) if class_names else str
      lines.append(f"- {name}: most leaky classes {', '.join(f'{label(c)} ({acc[c]:.2f})' for c in ranked[-3:][::-1])};"
                   f" least leaky {', '.join(f'{label(c)} ({acc[c]:.2f})' for c in ranked[:3])}.")
  return lines


def class_names(run) -> list[str]:
  """Class names for labels in the report, where the run's data carries them cheaply."""
  data = run.config["data"]
  if data["name"] == "npz" and os.path.exists(data["path"]):
    with np.load(data["path"], allow_pickle=False) as f:  # lazy: reads class_names only, not the images
      return [str(n) for n in f["class_names"]] if "class_names" in f.files else []
  return [str(d) for d in range(10)] if data["name"] == "digits" else []


def discrepancies(runs, paper: dict) -> list[str]:
  """Where our Table 1 accuracy differs from the paper's by more than our 95 % interval allows, and likely why."""
  lines = []
  for run in runs:
    row = next((p for p in paper["table1"]["rows"] if p["dataset"] == run.dataset), None)
    found = collect.select(run.attacks, protocol="paper", source="dense", target="dense", attack=PAPER_ATTACK,
                           size=main_size(run))
    if not row or not found or "dense" not in run.models:
      known = ", ".join(dict.fromkeys(p["dataset"] for p in paper["table1"]["rows"]))
      lines.append(f"- **{run.dataset} ({run.label})**: nothing to compare: " + (
          f"the paper gives no numbers for {run.dataset} (only {known})." if not row else
          f"no paper-protocol `{PAPER_ATTACK}` result on the dense model (configs/experiments/table1.py adds it)."))
      continue
    r, m = found[0], run.models["dense"]
    low, high = r["accuracy_ci"]
    agrees = low <= row["accuracy"]["dense"] <= high
    c = run.config
    fit_gap = m["train_accuracy"] - m["test_accuracy"]
    best = max(collect.select(run.attacks, protocol="paper", source="dense", target="dense", size=main_size(run)),
               key=lambda x: x["accuracy"])
    text = (f"- **{run.dataset} ({run.label})**: the paper's attack on our dense model reaches {r['accuracy']:.3f} "
            f"[{low:.3f}, {high:.3f}], which {'agrees with' if agrees else 'differs from'} the paper's "
            f"{row['accuracy']['dense']:.3f}. Our dense model has train accuracy {m['train_accuracy']:.3f} and test "
            f"accuracy {m['test_accuracy']:.3f} (generalisation gap {fit_gap:.3f}) after {c['train']['num_epochs']:g} "
            f"epochs on {c['data']['num_train']} members at width x{c['model']['width_multiplier']}. The strongest "
            f"attack on it here is `{best['attack']}` at {best['accuracy']:.3f} (ROC AUC {best['roc_auc']:.3f}).")
    if not agrees:
      text += (" Membership leakage grows with overfitting (Shokri et al. 2017), and a CPU-sized run (fewer members, "
               "a narrower network, another length of training) overfits differently from the paper's full-data "
               "training, whose length, augmentation and Table 1 sparsity the paper does not report.")
    text += gap.paper_regime(run.dataset, row, r, m["train_accuracy"])
    lines.append(text)
  return lines


def protocols_present(run, size: int) -> list[str]:
  """Protocols with results on a model's own outputs at `size` (source == target), in registration order; transfer's
  off-diagonal results are Figure 4's."""
  present = {r["protocol"] for r in run.attacks if r["size"] == size and r["source"] == r["target"]}
  return [p for p in PROTOCOLS if p in present and p != "transfer"] + sorted(present - set(PROTOCOLS))


def write(runs: list[collect.Run], out_dir: str, name: str = "report.md", preamble: str = "") -> str:
  """Writes out_dir/<name> (preamble first) and its PNGs in out_dir/plots (<stem>_plots for other names)."""
  paper = collect.paper_numbers()
  stem = os.path.splitext(name)[0]
  plot_dir = os.path.join(out_dir, "plots" if name == "report.md" else f"{stem}_plots")
  rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
  doc = [preamble.rstrip() or "# mialth_jax report", "",
         f"Generated from {', '.join(r.workdir for r in runs)} on {platform.node()} ({platform.machine()}). Every "
         "attack metric below is recomputed from the saved per-example scores (`attacks/**/<attack>.npz`). "
         f"Paper: {paper['source']}.", "", "## Did pruning change leakage?", "", *verdict_section(runs),
         *defences.section(runs, main_size, plot_dir, rel), "## Runs", "", *runs_table(runs), "",
         "## Table 1: attack accuracy and precision, dense vs lottery ticket (ours vs the paper)", "",
         f"Paper protocol, attack = `{PAPER_ATTACK}` (the paper's scikit-learn MLP) and `mlp` (our Optax MLP); "
         "ticket = the one-shot ticket at 80 % sparsity (the paper does not say which sparsity its Table 1 uses; its "
         "Fig. 3 fixes 80 %). diff = ours - paper.",
         "", *table1(runs, paper), "", "### Where we differ and why", "", *discrepancies(runs, paper), "",
         *seeds.section(runs, main_size),
         "## Figure 1: test accuracy vs sparsity", "",
         f"![Figure 1]({rel(plots.accuracy_vs_sparsity(runs, os.path.join(plot_dir, 'fig1_accuracy_vs_sparsity.png')))})",
         ""]
  for run in runs:
    doc += [f"**{run.label}**", "", *accuracy_table(run), ""]
  attacks = sorted({r["attack"] for run in runs for r in run.attacks if r["protocol"] == "paper"})
  leak_attack = "loss" if "loss" in attacks else PAPER_ATTACK  # the ROC and per-class figures' attack
  fig2_attacks = [a for a in (PAPER_ATTACK, "mlp", "loss") if a in attacks]
  doc += ["## Figure 2: attack accuracy vs sparsity", ""]
  if fig2_attacks:
    fig2 = plots.attack_vs_sparsity(runs, fig2_attacks, main_size,
                                    os.path.join(plot_dir, "fig2_attack_vs_sparsity.png"))
    doc += [f"![Figure 2]({rel(fig2)})", ""]
  else:
    doc += ["No paper-protocol attack results (attacks.protocols must include paper).", ""]
  if any(len({r["size"] for r in run.attacks if r["protocol"] == "paper"}) > 1 for run in runs):
    fig3 = plots.attack_vs_samples(runs, PAPER_ATTACK, os.path.join(plot_dir, "fig3_attack_vs_samples.png"))
    doc += ["## Figure 3: attack accuracy vs number of attack samples (80 % ticket)", "", f"![Figure 3]({rel(fig3)})", ""]
  doc += transfer.section(runs, plot_dir, rel)
  doc += gap.section(runs, main_size, plot_dir, rel)
  doc += ["## Beyond the paper", ""]
  for run in runs:
    size = main_size(run)
    if size is None:
      continue
    for protocol in protocols_present(run, size):
      title = getattr(PROTOCOLS.get(protocol), "title", protocol)
      doc += [f"### {run.label}: every attack, {title} ({size} attack samples)", "",
              *attacks_table(run, protocol, size), ""]
    zoo = sorted({r["attack"] for r in collect.select(run.attacks, protocol="zoo", size=size)})
    if zoo:
      pairs = [("zoo", a) for a in zoo if a in ("lira", "rmia")] + [("paper", a) for a in (PAPER_ATTACK, "loss")]
      strong = plots.roc_attacks(run, [n for n in ("dense", run.table1_ticket) if n in run.models], pairs, size,
                                 os.path.join(plot_dir, f"roc_strong_{run.label}.png"))
      doc += ["LiRA and RMIA (zoo protocol) against the paper's attack and the loss threshold, dense and the Table 1 "
              "ticket:", "", f"![strong attacks {run.label}]({rel(strong)})", ""]
    doc += adversarial.section(run, size, plot_dir, rel)
    roc = plots.roc_curves(run, leak_attack, size, os.path.join(plot_dir, f"roc_{run.label}.png"))
    names, labels = [n for n in ("dense", run.table1_ticket) if n in run.models], class_names(run)
    per = plots.per_class(run, leak_attack, size, names, labels, os.path.join(plot_dir, f"per_class_{run.label}.png"))
    doc += [f"![ROC {run.label}]({rel(roc)})", ""]
    if per:
      doc += [f"Per-class leakage (`{leak_attack}` attack):", "", f"![per class {run.label}]({rel(per)})", "",
              *per_class_summary(run, leak_attack, size, names, labels), ""]
  path = os.path.join(out_dir, name)
  io.write_text(path, "\n".join(doc) + "\n")
  return path
