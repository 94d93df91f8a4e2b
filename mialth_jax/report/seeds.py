"""Table 1 over seeds: the same recipe run with different seeds (members, initialisation and attack split all drawn
from `config.seed`), each model's paper-attack accuracy and precision as mean +- standard deviation over the runs.

Shown when a report holds two or more runs that differ in their seed only (their model-defining config otherwise
equal), so that "the ticket leaks more than dense" is judged against the spread between runs, not one run's interval.
"""
import json

import numpy as np

from mialth_jax.lottery import recipes
from mialth_jax.report import collect, sections

PAPER_ATTACK = collect.PAPER_ATTACK
RECIPE_KEYS = ("data", "model", "train", "lottery")  # the config sections that define the models of Table 1


def _recipe_key(run, keys) -> str:
  """The config sections `keys` (the seed aside): runs with the same key differ only in their random draws."""
  config = {k: run.config.get(k) for k in keys}
  return json.dumps(config, sort_keys=True)


def groups(runs, keys=RECIPE_KEYS) -> list[list]:
  """Runs of the same recipe (equal config sections `keys`) with distinct seeds, two or more per group, in the order
  they were given."""
  by_recipe = {}
  for run in runs:
    by_recipe.setdefault(_recipe_key(run, keys), []).append(run)
  return [rs for rs in by_recipe.values() if len({r.config["seed"] for r in rs}) > 1]


def _mean_sd(values: list[float]) -> str:
  mean = round(float(np.mean(values)), 3) + 0.0  # + 0.0: a mean that rounds to zero prints 0.000, not -0.000
  return f"{mean:.3f} +- {np.std(values, ddof=1):.3f}"


def rows(group) -> list[dict]:
  """Per model name present in every run of the group: the paper attack's accuracy, precision and ROC AUC, the
  loss threshold's ROC AUC, train and test accuracy (how well the model fits its members drives what it leaks), each a
  list over the runs."""
  kinds = ("dense", *recipes.ticket_kinds())
  names = set.intersection(*({n for n, s in run.models.items() if s["kind"] in kinds} for run in group))
  out = []
  for name in sorted(names, key=lambda n: group[0].models[n]["sparsity"]):
    paper = [collect.paper_result(run, name, PAPER_ATTACK, collect.main_size(run)) for run in group]
    if not all(paper):
      continue
    loss = [collect.paper_result(run, name, "loss", collect.main_size(run)) for run in group]
    out.append({"name": name, "accuracy": [r["accuracy"] for r in paper],
                "precision": [r["precision"] for r in paper], "roc_auc": [r["roc_auc"] for r in paper],
                "loss_auc": [r["roc_auc"] for r in loss if r],
                "train_accuracy": [run.models[name]["train_accuracy"] for run in group],
                "test_accuracy": [run.models[name]["test_accuracy"] for run in group]})
  return out


@sections.register("seeds", order=50)
def section(runs, out: sections.Output) -> str:
  """The report section, or nothing when no two runs differ in their seed only."""
  del out  # no figures
  found = groups(runs)
  if not found:
    return ""
  lines = ["## Table 1 over seeds", "",
           f"Runs that differ only in `seed` (members, initialisation and attack split re-drawn): the paper's attack "
           f"(`{PAPER_ATTACK}`, paper protocol, largest attack set) as mean +- standard deviation over the runs.", ""]
  for group in found:
    seeds = ", ".join(str(run.config["seed"]) for run in group)
    lines += [f"**{group[0].dataset}, {group[0].arch}: {', '.join(run.label for run in group)} (seeds {seeds})**",
              "", "| model | attack accuracy | precision | ROC AUC | loss ROC AUC | train accuracy | test accuracy |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    table = rows(group)
    for row in table:
      loss = _mean_sd(row["loss_auc"]) if len(row["loss_auc"]) == len(group) else "-"
      lines.append(f"| {row['name']} | {_mean_sd(row['accuracy'])} | {_mean_sd(row['precision'])} | "
                   f"{_mean_sd(row['roc_auc'])} | {loss} | {_mean_sd(row['train_accuracy'])} | "
                   f"{_mean_sd(row['test_accuracy'])} |")
    lines += ["", *_paired_lines(table), ""]
  return sections.text(lines)


def _paired_lines(table: list[dict]) -> list[str]:
  """Each ticket minus dense within a run, then mean +- sd over the runs: the seed-to-seed spread of the difference
  itself (a run's dense model and its tickets share members, w0 and attack split)."""
  dense = next((row for row in table if row["name"] == "dense"), None)
  if dense is None:
    return []
  lines = []
  for row in table:
    if row is dense:
      continue
    accuracy = np.subtract(row["accuracy"], dense["accuracy"])
    auc = np.subtract(row["roc_auc"], dense["roc_auc"])
    lines.append(f"- {row['name']} - dense, paired within each seed: attack accuracy {_mean_sd(accuracy)}, "
                 f"ROC AUC {_mean_sd(auc)}; the ticket is lower in {int((auc < 0).sum())} of {len(auc)} runs.")
  return lines
