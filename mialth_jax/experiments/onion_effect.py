"""The privacy onion effect, measured: an onion run (its source's k most exposed examples left out) against its control
run (k random ones left out), on the examples both kept (experiments.onion).

Per zoo kind both runs hold (dense, tickets, controls), over the shared examples (removed in neither run, exposure
measured in both runs under every kind):
- newly exposed: detectably exposed in the onion run and not in the control (and the reverse); each run's one-sided
  p-values are adjusted by Benjamini-Hochberg over the shared examples only, so both runs test one family. The
  discordant examples give McNemar's exact test (two-sided binomial, 1/2).
- the mean change of exposure (onion - control): over the examples (a t interval, conditional on the two zoos), and
  over the zoo models, the unit of replication: zoo model s of the onion run and of the control share their seed and,
  but for the removed examples, their members, and each one's IN - OUT gap of leave-one-out scores on the shared
  examples gives a paired difference (t interval over the S pairs).
- each non-dense kind against dense: whether the onion layer differs (the kind's change minus dense's, per example and
  per model pair; zoo model s of a ticket was pruned from dense model s), and its newly exposed share minus dense's
  (McNemar over the examples newly exposed under one kind only).
The model-level p-values of a pair of runs are Holm-adjusted together.
"""
import dataclasses
import os

import numpy as np
from scipy import stats as scipy_stats

from mialth_jax import errors, layout as layout_lib
from mialth_jax.attacks import stats
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.experiments import exposure, onion as onion_lib, per_example
from mialth_jax.utils import io


@dataclasses.dataclass(frozen=True)
class RunExposure:
  """What one run of the pair contributes: per kind, its examples' exposure and one-sided p, and its zoo's scores."""
  ids: np.ndarray                          # int [N]: the zoo's pool ids
  removed: np.ndarray                      # int [k]: ids left out of every training set
  exposure: dict[str, np.ndarray]          # kind -> float [N] (NaN: not measured)
  p: dict[str, np.ndarray]                 # kind -> float [N]: one-sided p of "IN exceeds OUT"
  zoo: dict[str, exposure.ZooScores]       # kind -> leave-one-out scores [S, N]


def shared(onion: RunExposure, control: RunExposure, kinds: list[str]) -> np.ndarray:
  """bool [N]: removed in neither run, exposure and p finite in both under every kind."""
  if not np.array_equal(onion.ids, control.ids):
    raise AttackError("onion effect: the two runs' zoos hold other pools (shadows/ids.npy)")
  kept = ~np.isin(onion.ids, np.union1d(onion.removed, control.removed))
  for run in (onion, control):
    for kind in kinds:
      kept &= np.isfinite(run.exposure[kind]) & np.isfinite(run.p[kind])
  return kept


def mean_interval(values: np.ndarray) -> dict:
  """Mean with its 95 % t interval and the two-sided p of "mean 0" (NaN below two values)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "low": float("nan"),
            "high": float("nan"), "p_value": float("nan"), "n": len(values)}
  found = scipy_stats.ttest_1samp(values, 0.0)
  low, high = found.confidence_interval(0.95)
  return {"mean": float(values.mean()), "low": float(low), "high": float(high), "p_value": float(found.pvalue),
          "n": len(values)}


def mcnemar(first: np.ndarray, second: np.ndarray) -> dict:
  """Examples where only `first` holds vs only `second`, with McNemar's exact two-sided p (1 with none)."""
  only_first, only_second = int((first & ~second).sum()), int((~first & second).sum())
  p = scipy_stats.binomtest(only_first, only_first + only_second, 0.5).pvalue if only_first + only_second else 1.0
  return {"only_first": only_first, "only_second": only_second, "p_value": float(p)}


def model_gaps(zoo: exposure.ZooScores, columns: np.ndarray) -> np.ndarray:
  """float [S]: each zoo model's mean leave-one-out score on its IN examples among `columns` minus on its OUT ones."""
  inside, outside = zoo.inside & columns, zoo.outside & columns
  scores = np.where(inside | outside, zoo.scores, 0.0)
  return (scores * inside).sum(1) / inside.sum(1) - (scores * outside).sum(1) / outside.sum(1)


def detected(p: np.ndarray, columns: np.ndarray, fdr: float) -> np.ndarray:
  """bool [N]: Benjamini-Hochberg at `fdr` over the `columns` only (False elsewhere)."""
  return exposure.benjamini_hochberg(np.where(columns, p, np.nan), fdr)[1]


def kind_parts(onion: RunExposure, control: RunExposure, kind: str, columns: np.ndarray, fdr: float) -> dict:
  """The per-example and per-model quantities of one kind on the shared `columns`."""
  if onion.zoo[kind].scores.shape[0] != control.zoo[kind].scores.shape[0]:
    raise AttackError(f"onion effect: the two runs' {kind} zoos hold different numbers of models")
  return {"exposed_onion": detected(onion.p[kind], columns, fdr),
          "exposed_control": detected(control.p[kind], columns, fdr),
          "change": (onion.exposure[kind] - control.exposure[kind])[columns],
          "model_change": model_gaps(onion.zoo[kind], columns) - model_gaps(control.zoo[kind], columns)}


def kind_summary(parts: dict, count: int) -> dict:
  newly = mcnemar(parts["exposed_onion"], parts["exposed_control"])
  return {"shared": count, "exposed_onion": int(parts["exposed_onion"].sum()),
          "exposed_control": int(parts["exposed_control"].sum()), "newly_exposed": newly["only_first"],
          "no_longer_exposed": newly["only_second"], "newly_exposed_fraction": newly["only_first"] / count,
          "mcnemar_p": newly["p_value"], "change_over_examples": mean_interval(parts["change"]),
          "change_over_models": mean_interval(parts["model_change"])}


def against_dense(parts: dict, dense: dict, count: int) -> dict:
  """A kind's onion layer minus dense's: newly exposed share, change per example and per model pair."""
  newly, dense_newly = (p["exposed_onion"] & ~p["exposed_control"] for p in (parts, dense))
  return {"newly_exposed_difference": float((newly.sum() - dense_newly.sum()) / count),
          "mcnemar": mcnemar(newly, dense_newly),
          "change_over_examples": mean_interval(parts["change"] - dense["change"]),
          "change_over_models": mean_interval(parts["model_change"] - dense["model_change"])}


def compare(onion: RunExposure, control: RunExposure, fdr: float) -> dict:
  """The onion effect of every kind both runs hold, and of every non-dense kind against dense (Holm over the
  model-level p-values of both)."""
  kinds = [k for k in onion.exposure if k in control.exposure]
  if "dense" not in kinds:
    raise AttackError("onion effect: both runs need per-example exposure under dense")
  columns = shared(onion, control, kinds)
  count = int(columns.sum())
  if not count:
    raise AttackError("onion effect: the two runs share no example with a measured exposure")
  parts = {k: kind_parts(onion, control, k, columns, fdr) for k in kinds}
  found = {"shared": count, "kinds": {k: kind_summary(v, count) for k, v in parts.items()},
           "against_dense": {k: against_dense(parts[k], parts["dense"], count) for k in kinds if k != "dense"}}
  tests = [s["change_over_models"] for s in (*found["kinds"].values(), *found["against_dense"].values())]
  for test, adjusted in zip(tests, stats.holm([t["p_value"] for t in tests])):
    test["p_holm"] = float(adjusted)
  return found


def _array(values: list) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def read_run(workdir: str, attack: str) -> RunExposure:
  """A finished onion or control run's part of the comparison: onion.json, its recorded per-example exposure
  (attacks/per_example/<attack>_examples.json.gz) and its zoo's leave-one-out scores."""
  layout = layout_lib.RunLayout(workdir)
  examples_path = per_example.paths(layout, attack)[1]
  for path in (layout.path(onion_lib.FILE), examples_path):
    if not os.path.exists(path):
      raise errors.UserError(f"{workdir}: no {os.path.relpath(path, workdir)}; expected a finished onion run "
                             "(onion.of set, per_example.record=True)")
  recorded = io.read_json(examples_path)
  keep = io.read_npy(layout.zoo("keep.npy"))
  kinds = list(recorded["kinds"])
  return RunExposure(ids=np.asarray(recorded["ids"], np.int64),
                     removed=np.asarray(io.read_json(layout.path(onion_lib.FILE))["removed"], np.int64),
                     exposure={k: _array(recorded["kinds"][k]["exposure"]) for k in kinds},
                     p={k: _array(recorded["kinds"][k]["p"]) for k in kinds},
                     zoo={k: per_example.zoo_scores(layout, k, attack, keep) for k in kinds})
