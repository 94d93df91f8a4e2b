"""Per run: ROC curves of one attack on dense and the tickets, and per-class leakage of dense and the Table 1 ticket
(the paper's future work: do classes leak differently?)."""
import os

import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.report import collect, plots, sections


def leak_attack(run) -> str:
  """The ROC and per-class figures' attack: the loss threshold where the run has it, else the paper's attack."""
  attacks = {r["attack"] for r in run.attacks if r["protocol"] == "paper"}
  return "loss" if "loss" in attacks else collect.PAPER_ATTACK


def class_names(run) -> list[str]:
  """Class names for labels in the report, where the run's data carries them cheaply."""
  data = run.config["data"]
  if data["name"] == "npz" and os.path.exists(data["path"]):
    with np.load(data["path"], allow_pickle=False) as f:  # lazy: reads class_names only, not the images
      return [str(n) for n in f["class_names"]] if "class_names" in f.files else []
  return [str(d) for d in range(10)] if data["name"] == "digits" else []


def per_class_summary(run, attack: str, size: int, names: list[str], class_names_) -> list[str]:
  """The classes whose attack accuracy differs from chance (0.5) after Holm's correction over every class of every
  model listed (two-sided exact binomial tests), or a sentence saying none does."""
  tests = []  # (model, class, correct, count)
  for name in names:
    for r in collect.select(run.attacks, protocol="paper", source=name, target=name, attack=attack, size=size):
      tests += [(name, c, int(k), int(n)) for c, k, n in zip(*(a.tolist() for a in plots.class_counts(r)))]
  if not tests:
    return []
  adjusted = stats.holm([stats.binomial_p_value(k, n, 0.5) for _, _, k, n in tests])
  label = (lambda c: class_names_[int(c)]) if class_names_ else str
  lines = []
  for name in names:
    found = [(c, k / n, p) for (m, c, k, n), p in zip(tests, adjusted) if m == name and p < 0.05]
    said = ", ".join(f"{label(c)} ({a:.2f}, Holm p={p:.2g})" for c, a, p in sorted(found, key=lambda x: -x[1]))
    lines.append(f"- {name}: " + (f"classes whose attack accuracy differs from chance: {said}." if found else
                                   "no class's attack accuracy differs from chance (0.5)") +
                 f" (exact binomial tests, Holm over the {len(tests)} classes x models).")
  return lines


@sections.register("leakage_plots", order=150, per_run=True)
def section(runs, out: sections.Output) -> str:
  [run] = runs
  size = collect.main_size(run)
  if size is None:
    return ""
  attack = leak_attack(run)
  roc = plots.roc_curves(run, attack, size, out.plot(f"roc_{run.label}.png"))
  names, labels = [n for n in ("dense", run.table1_ticket) if n in run.models], class_names(run)
  per = plots.per_class(run, attack, size, names, labels, out.plot(f"per_class_{run.label}.png"))
  doc = [out.image(f"ROC {run.label}", roc), ""]
  if per:
    doc += [f"Per-class leakage (`{attack}` attack):", "", out.image(f"per class {run.label}", per), "",
            *per_class_summary(run, attack, size, names, labels), ""]
  return sections.text(doc)
