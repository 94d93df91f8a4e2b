"""The paper's Table 1 beside ours (attack accuracy and precision, dense vs the Table 1 ticket), and where and why
our numbers differ from the paper's."""
from mialth_jax.experiments import judged
from mialth_jax.report import collect, gap, names, sections
from mialth_jax.report.fmt import number, percent, tpr, with_ci

PAPER_ATTACK = collect.PAPER_ATTACK
ATTACKS = (PAPER_ATTACK, "mlp")  # the paper's attack and ours


def _paper_row(paper: dict, dataset: str) -> dict | None:
  return next((p for p in paper["table1"]["rows"] if p["dataset"] == dataset), None)


def table1(runs, paper: dict) -> list[str]:
  lines = ["| dataset (run) | model | attack | accuracy [95 % CI] | paper | diff | precision | paper | diff | "
           "ROC AUC | TPR @ 1 % FPR [exact 95 % CI] | test acc | train acc |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    row = _paper_row(paper, run.dataset)
    for name, key in (("dense", "dense"), (run.table1_ticket, "ticket")):
      for attack in ATTACKS:
        r = collect.paper_result(run, name, attack, collect.main_size(run))
        if r is None or name not in run.models:
          continue
        m = run.models[name]
        pa, pp = (row["accuracy"][key], row["precision"][key]) if row else (None, None)
        lines.append(
            f"| {run.dataset} ({run.label}) | {name} | {attack} | {with_ci(r)} | {number(pa)} | "
            f"{number(None if pa is None else r['accuracy'] - pa, 3)} | {number(r['precision'])} | {number(pp, 2)} | "
            f"{number(None if pp is None else r['precision'] - pp, 2)} | {number(r['roc_auc'])} | "
            f"{tpr(r, 0.01)} | {number(m['test_accuracy'])} | {number(m['train_accuracy'])} |")
  return lines


def strongest_sentence(run) -> str:
  """The attack that the verdict's rule picks on the baseline (highest ROC AUC on the selection half of attack-test),
  measured on the judged half, as the discrepancies quote it."""
  choice = collect.leakage_choice(run)
  if isinstance(choice, str):
    return ""
  protocol, attack = choice.attack(choice.baseline)
  [r] = collect.select(run.attacks, protocol=protocol, source=choice.baseline, target=choice.baseline, attack=attack,
                       size=choice.size)
  where = "" if protocol == "paper" else f" ({protocol} protocol)"
  on_judged = judged.on_judged_half(r)
  accuracy = f"accuracy {on_judged['accuracy']:.3f}, " if "accuracy" in on_judged else ""
  return (f" The strongest attack on it here (highest ROC AUC on the selection half of attack-test, as the verdict "
          f"picks it) is `{attack}`{where}: on the other (judged) half {accuracy}ROC AUC {on_judged['roc_auc']:.3f}.")


def discrepancies(runs, paper: dict) -> list[str]:
  """Where our Table 1 accuracy differs from the paper's by more than our 95 % interval allows, and likely why."""
  lines = []
  for run in runs:
    row = _paper_row(paper, run.dataset)
    found = collect.select(run.attacks, protocol="paper", source="dense", target="dense", attack=PAPER_ATTACK,
                           size=collect.main_size(run))
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
    text = (f"- **{run.dataset} ({run.label})**: the paper's attack on our dense model reaches {r['accuracy']:.3f} "
            f"[{low:.3f}, {high:.3f}], which {'agrees with' if agrees else 'differs from'} the paper's "
            f"{row['accuracy']['dense']:.3f}. Our dense model has train accuracy {m['train_accuracy']:.3f} and test "
            f"accuracy {m['test_accuracy']:.3f} (generalisation gap {fit_gap:.3f}) after {c['train']['num_epochs']:g} "
            f"epochs on {c['data']['num_train']} members at width x{c['model']['width_multiplier']}."
            + strongest_sentence(run))
    if not agrees:
      text += (" Membership leakage grows with overfitting (Shokri et al. 2017), and a CPU-sized run (fewer members, "
               "a narrower network, another length of training) overfits differently from the paper's full-data "
               "training, whose length, augmentation and Table 1 sparsity the paper does not report.")
    text += gap.paper_regime(row, r, m["train_accuracy"])
    lines.append(text)
  return lines


def _attack_label(runs, attack: str) -> str:
  """`attack` with its attack type's display name (the type's name while it has none)."""
  types = {r["attack_config"]["type"] for run in runs for r in run.attacks if r["attack"] == attack}
  titles = [names.attack(t) for t in sorted(types) if names.attack(t) != attack]
  return f"`{attack}`" + (f" ({', '.join(titles)})" if titles else "")


@sections.register("table1", order=40)
def section(runs, out: sections.Output) -> str:
  del out  # no figures
  paper = collect.paper_numbers()
  sparsity = percent(paper["text"]["fig3_sparsity"]["sparsity"])
  used = " and ".join(_attack_label(runs, a) for a in ATTACKS)
  fallback = [f"{run.label}: {run.table1_ticket}" for run in runs if run.table1_ticket and abs(
      run.models[run.table1_ticket]["sparsity"] - paper["text"]["fig3_sparsity"]["sparsity"]) > 5e-3]
  return sections.text([
      f"## Table 1: attack accuracy and precision, dense vs {names.model_kind('ticket')} (ours vs the paper)", "",
      f"Paper protocol, attack = {used}; ticket = the one-shot ticket at {sparsity} sparsity (the paper does not say "
      f"which sparsity its Table 1 uses; its Fig. 3 fixes {sparsity})"
      + (f", or the nearest where a run has none ({'; '.join(fallback)})" if fallback else "")
      + ". diff = ours - paper.",
      "", *table1(runs, paper), "", "### Where we differ and why", "", *discrepancies(runs, paper), ""])
