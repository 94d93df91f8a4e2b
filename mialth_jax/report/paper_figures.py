"""The paper's Figures 1-3 beside ours: test accuracy, attack accuracy and attack accuracy against attack samples,
each against sparsity (Figure 1 with every model's accuracies as a table)."""
from mialth_jax.report import collect, plots, sections
from mialth_jax.report.fmt import percent

PAPER_ATTACK = collect.PAPER_ATTACK
FIG2_ATTACKS = (PAPER_ATTACK, "mlp", "loss")  # the paper's attack, ours, and a threshold that leaks more


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


@sections.register("figure1", order=60)
def figure1(runs, out: sections.Output) -> str:
  png = plots.accuracy_vs_sparsity(runs, out.plot("fig1_accuracy_vs_sparsity.png"))
  doc = ["## Figure 1: test accuracy vs sparsity", "", out.image("Figure 1", png), ""]
  for run in runs:
    doc += [f"**{run.label}**", "", *accuracy_table(run), ""]
  return sections.text(doc)


@sections.register("figure2", order=70)
def figure2(runs, out: sections.Output) -> str:
  attacks = {r["attack"] for run in runs for r in run.attacks if r["protocol"] == "paper"}
  shown = [a for a in FIG2_ATTACKS if a in attacks]
  doc = ["## Figure 2: attack accuracy vs sparsity", ""]
  if not shown:
    return sections.text(doc + ["No paper-protocol attack results (attacks.protocols must include paper).", ""])
  png = plots.attack_vs_sparsity(runs, shown, collect.main_size, out.plot("fig2_attack_vs_sparsity.png"))
  return sections.text(doc + [out.image("Figure 2", png), ""])


@sections.register("figure3", order=80)
def figure3(runs, out: sections.Output) -> str:
  """Only where a run has paper-protocol results at several attack-set sizes."""
  if not any(len({r["size"] for r in run.attacks if r["protocol"] == "paper"}) > 1 for run in runs):
    return ""
  png = plots.attack_vs_samples(runs, PAPER_ATTACK, out.plot("fig3_attack_vs_samples.png"))
  sparsity = percent(collect.TABLE1_SPARSITY)
  return sections.text([f"## Figure 3: attack accuracy vs number of attack samples ({sparsity} ticket)", "",
                        out.image("Figure 3", png), ""])
