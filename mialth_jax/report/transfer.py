"""Figure 4: the transfer matrix, as a heatmap and as a table (an attack learnt on one model's outputs, applied to
another's; with attacks.transfer_runs, the models of other runs on the same members, e.g. another architecture).

A run launched with only the transfer protocol (configs/experiments/fig4_transfer.py on a new folder) has no
paper-protocol results; its matrix is shown at the largest attack size it has transfer results for.
"""
import numpy as np

from mialth_jax.report import collect, fmt, plots, sections

ATTACKS = (collect.PAPER_ATTACK, "mlp", "loss")  # the paper's Fig. 4 attack, ours, and a threshold that leaks more


def largest_size(run: collect.Run) -> int | None:
  """The largest attack size with transfer results."""
  sizes = [r["size"] for r in run.attacks if r["protocol"] == "transfer"]
  return max(sizes) if sizes else None


def matrix(run: collect.Run, attack: str, size: int) -> tuple[list[str], np.ndarray] | None:
  """Model labels (own models first, then other runs', each by sparsity) and accuracy[source, target] (NaN: not
  attacked) at attack set `size`; None without transfer results for `attack` there."""
  rows = collect.select(run.attacks, protocol="transfer", attack=attack, size=size)
  if not rows:
    return None
  labels = sorted({r["source"] for r in rows} | {r["target"] for r in rows},
                  key=lambda l: (l.count("/"), l.split("/")[0], (run.summary(l) or {}).get("sparsity", 0.0), l))
  accuracy = np.full((len(labels), len(labels)), np.nan)
  for r in rows:
    accuracy[labels.index(r["source"]), labels.index(r["target"])] = r["accuracy"]
  return labels, accuracy


def table(labels: list[str], accuracy: np.ndarray) -> list[str]:
  """Rows: the model the attack was trained on; columns: the model attacked; the diagonal (own outputs) in bold."""
  lines = ["| trained on \\ attacked | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
  for i, source in enumerate(labels):
    cells = ["-" if np.isnan(a) else (f"**{a:.3f}**" if i == j else f"{a:.3f}") for j, a in enumerate(accuracy[i])]
    lines.append(f"| {source} | " + " | ".join(cells) + " |")
  return lines


@sections.register("transfer", order=90)
def section(runs, out: sections.Output) -> str:
  """The Figure 4 section: per run and attack, the heatmap and its numbers."""
  doc = ["## Figure 4: do attacks transfer between models?", ""]
  for run in runs:
    size = largest_size(run)
    for attack in ATTACKS:
      found = matrix(run, attack, size)
      if found is None:
        continue
      heat = plots.transfer_heatmap(*found, f"{run.label}: transfer accuracy\n({attack})",
                                    out.plot(f"fig4_{run.label}_{attack}.png"))
      doc += [out.image(f"Figure 4, {run.label}, {attack}", heat), "",
              f"{run.label}, `{attack}`, {fmt.attack_set(size, collect.select(run.attacks, protocol='transfer'))}, "
              "attack accuracy:", "", *table(*found), ""]
  if len(doc) == 2:
    attacks = ", ".join(f"`{a}`" for a in ATTACKS)
    doc += [f"No transfer results ({attacks}) in {', '.join(r.workdir for r in runs)}: run "
            "configs/experiments/fig4_transfer.py on the run folder (`python -m launch.main "
            "--config=configs/experiments/fig4_transfer.py:<run config> --workdir=<run folder>`).", ""]
  return sections.text(doc)
