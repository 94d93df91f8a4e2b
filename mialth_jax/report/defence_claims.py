"""The paper's claims at matched test accuracy (spec sections 5 and 6: a defence only wins at equal test accuracy).

Each defence family's headline model is its strongest setting (the highest sparsity, then the highest lambda) whose
test accuracy is within TOLERANCE (1 point, either way) of dense's; a family with none has no headline, and the claims
that need it say "not available". Over runs of one config that differ only in their seed, the headline is chosen on
the test accuracies averaged over the runs, and a claim is the mean over the runs of the within-run difference with a
Student t interval over runs (`stats.paired_over_models`: the run is the unit of replication); one run gives its own
interval (on the judged half of attack-test: paired bootstrap for attack accuracy, DeLong for ROC AUC, as
`defence_compare`; each model's most accurate attack is chosen on the other, selection half: `defences.Row`).
"""
import dataclasses

import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.report import defence_compare, names

TOLERANCE = 0.01  # the spec's "within 1 point of dense test accuracy"
FAMILIES = ("finetune", "admm", "minmax", "admm_minmax")


@dataclasses.dataclass(frozen=True)
class Judged:
  """One run as the claims read it: its models (defences.Row by name), its baseline and its paired comparisons."""
  rows: dict
  baseline: str
  comparisons: defence_compare.Comparisons


def _mean_accuracy(runs: list[Judged], name: str) -> float:
  return float(np.mean([run.rows[name].test_accuracy for run in runs]))


def headline(runs: list[Judged], family: str) -> tuple[str | None, str]:
  """(the family's headline model, "") or (None, why there is none), chosen on the mean test accuracy over `runs`."""
  first = runs[0].rows
  found = [n for n, row in first.items() if row.kind == family and all(n in run.rows for run in runs)]
  if not found:
    return None, f"no {names.model_kind(family)} model"
  dense = _mean_accuracy(runs, runs[0].baseline)
  gaps = {n: _mean_accuracy(runs, n) - dense for n in found}
  within = [n for n in found if abs(gaps[n]) <= TOLERANCE + 1e-9]  # + 1e-9: accuracies are fractions of the test set
  if within:
    return max(within, key=lambda n: (first[n].sparsity, first[n].lam or 0.0, n)), ""
  closest = min(found, key=lambda n: (abs(gaps[n]), n))
  return None, (f"not available: no {names.model_kind(family)} model within {TOLERANCE * 100:g} point of dense's test "
                f"accuracy (the closest, {closest}, is {gaps[closest] * 100:+.1f} points)")


def difference(runs: list[Judged], base: str, other: str, metric: str) -> tuple[float, tuple, int] | None:
  """`metric` of `other` minus `base`: (mean over runs, its 95 % interval, runs where it is negative); None where a
  run has no such comparison (ROC AUC: `base` has no result of `other`'s attack)."""
  found = [run.comparisons.versus(run.rows[base], run.rows[other], metric) for run in runs]
  if any(d is None for d in found):
    return None
  lower = sum(d.difference < 0 for d in found)
  if len(found) == 1:
    return found[0].difference, found[0].ci, lower
  t = stats.paired_over_models([d.other for d in found], [d.base for d in found])
  return t["mean_difference"], t["ci"], lower


def _said(runs: list[Judged], base: str, other: str) -> str:
  """`other` against `base`: test accuracies, attack accuracy of each one's most accurate adaptive attack (points),
  and the verdict's attack's ROC AUC."""
  acc, auc = difference(runs, base, other, "accuracy"), difference(runs, base, other, "roc_auc")
  over = f" (lower in {acc[2]} of {len(runs)} runs)" if len(runs) > 1 else ""
  auc_said = "-" if auc is None else f"{auc[0]:+.3f} [{auc[1][0]:+.3f}, {auc[1][1]:+.3f}]"
  return (f"{other} vs {base} (test acc {_mean_accuracy(runs, other):.3f} vs {_mean_accuracy(runs, base):.3f}): "
          f"attack accuracy {acc[0] * 100:+.1f} points [{acc[1][0] * 100:+.1f}, {acc[1][1] * 100:+.1f}]{over}; "
          f"ROC AUC {auc_said}")


def _lowest(runs: list[Judged], heads: dict) -> str:
  """Whether the ADMM + Min-Max headline has the lowest attack accuracy of all the families' headlines."""
  if heads["admm_minmax"][0] is None:
    return heads["admm_minmax"][1]
  chosen = [n for n, _ in heads.values() if n]
  accuracy = {n: float(np.mean([run.rows[n].most_accurate["accuracy"] for run in runs])) for n in chosen}
  lowest = min(chosen, key=lambda n: (accuracy[n], n))
  return (f"the lowest attack accuracy of the headline models is {lowest}'s ({accuracy[lowest]:.3f}): "
          f"{'an' if runs[0].rows[lowest].kind == 'admm_minmax' else 'not an'} ADMM + Min-Max model")


def lines(runs: list[Judged], paper: dict) -> list[str]:
  """The headline models, then the paper's claims against them."""
  heads = {family: headline(runs, family) for family in FAMILIES}
  dense, over = runs[0].baseline, f", mean over {len(runs)} runs" if len(runs) > 1 else ""
  picked = "; ".join(f"{names.model_kind(f)}: {n} ({_mean_accuracy(runs, n):.3f})" if n else
                     f"{names.model_kind(f)}: {why}" for f, (n, why) in heads.items())
  ours = {"admm_minmax_lowest": _lowest(runs, heads)}
  admm, admm_why = heads["admm"]
  for key, (base, why) in (("admm_vs_dense", (dense, "")), ("admm_vs_minmax", heads["minmax"])):
    ours[key] = _said(runs, base, admm) if admm and base else admm_why or why
  interval = "95 % t interval over runs" if len(runs) > 1 else "95 % CI"
  out = [f"Headline models (the highest sparsity, then lambda, within {TOLERANCE * 100:g} point of {dense}'s test "
         f"accuracy {_mean_accuracy(runs, dense):.3f}{over}): {picked}.", "",
         f"| claim (abstract) | paper | ours at matched test accuracy: the headline models{over} [{interval}] |",
         "| --- | --- | --- |"]
  for c in paper["claims"]:
    said = f"up to {c['attack_accuracy_lower_by'] * 100:.1f} points lower" if c["attack_accuracy_lower_by"] else "-"
    out.append(f"| {c['comparison']} | {said} | {ours.get(c['ours'], 'no such models in this run')} |")
  return out
