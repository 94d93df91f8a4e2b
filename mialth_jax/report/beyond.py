""""Beyond the paper": per run, every attack under each protocol, and the strong attacks (LiRA, RMIA) against the
paper's."""
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.report import collect, fmt, names, plots, sections
from mialth_jax.report.fmt import number, tpr, with_ci
from mialth_jax.report.paper_figures import by_sparsity

PAPER_ATTACK = collect.PAPER_ATTACK


@sections.register("beyond", order=110)
def heading(runs, out: sections.Output) -> str:
  del runs, out  # the heading of the per-run sections after it
  return sections.text(["## Beyond the paper", ""])


def attacks_table(run, protocol: str, size: int) -> list[str]:
  lines = ["| model | attack | accuracy [95 % CI] | precision | recall | ROC AUC | advantage | "
           "TPR @ 0.1 % FPR [exact 95 % CI] | TPR @ 1 % FPR [exact 95 % CI] |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name in by_sparsity(run):
    for r in sorted(collect.select(run.attacks, protocol=protocol, source=name, target=name, size=size),
                    key=lambda r: r["attack"]):
      lines.append(f"| {name} | {r['attack']} | {with_ci(r)} | {number(r.get('precision'))} | "
                   f"{number(r.get('recall'))} | "
                   f"{number(r['roc_auc'])} | {number(r['advantage'])} | {tpr(r, 0.001)} | {tpr(r, 0.01)} |")
  return lines


def protocols_present(run, size: int) -> list[str]:
  """Protocols with results on a model's own outputs at `size` (source == target), in registration order; transfer's
  off-diagonal results are Figure 4's."""
  present = {r["protocol"] for r in run.attacks if r["size"] == size and r["source"] == r["target"]}
  return [p for p in PROTOCOLS if p in present and p != "transfer"] + sorted(present - set(PROTOCOLS))


@sections.register("every_attack", order=120, per_run=True)
def every_attack(runs, out: sections.Output) -> str:
  del out  # no figures
  [run] = runs
  size = collect.main_size(run)
  if size is None:
    return ""
  doc = []
  for protocol in protocols_present(run, size):
    ran = collect.select(run.attacks, protocol=protocol)
    doc += [f"### {run.label}: every attack, {names.protocol(protocol)} ({fmt.attack_set(size, ran)})", "",
            *attacks_table(run, protocol, size), ""]
  return sections.text(doc)


@sections.register("strong_attacks", order=130, per_run=True)
def strong_attacks(runs, out: sections.Output) -> str:
  """LiRA and RMIA of the zoo protocol against the paper's attack and the loss threshold, as ROC curves."""
  [run] = runs
  size = collect.main_size(run)
  zoo = sorted({r["attack"] for r in collect.select(run.attacks, protocol="zoo", size=size)})
  if size is None or not zoo:
    return ""
  pairs = [("zoo", a) for a in zoo if a in ("lira", "rmia")] + [("paper", a) for a in (PAPER_ATTACK, "loss")]
  png = plots.roc_attacks(run, [n for n in ("dense", run.table1_ticket) if n in run.models], pairs, size,
                          out.plot(f"roc_strong_{run.label}.png"))
  return sections.text(["LiRA and RMIA (zoo protocol) against the paper's attack and the loss threshold, dense and "
                        "the Table 1 ticket:", "", out.image(f"strong attacks {run.label}", png), ""])
