"""Which examples pruning exposes, read from a zoo run (experiments.exposure, experiments.exposure_groups): every zoo
kind's per-example exposure, memorisation and caught rate; every other kind's change from dense per example, its
pruning-identified exemplars and the TPR at low FPR of classes and groups against dense (Holm over all of them).

After the zoo's leave-one-out targets (per_example.record = True), the run keeps what `analyse` finds:

  attacks/per_example/<attack>.json            settings, per-kind and per-change summaries, group comparisons
  attacks/per_example/<attack>_examples.json.gz   ids, labels and every per-example number ({kind: {field: [N]}},
                                                  null where undefined), for a user to plot (gzip: 12 MB of JSON
                                                  for the CIFAR-10 subset's pool)

The report (report/per_example.py) computes the same from any zoo run that holds the attack's leave-one-out scores.
"""
import os

import numpy as np

from mialth_jax import errors, layout as layout_lib
from mialth_jax.attacks import contracts, registry, stats
from mialth_jax.data.examples import ExampleSource
from mialth_jax.experiments import exposure, exposure_groups as groups_lib, zoo, zoo_targets
from mialth_jax.utils import config_sections, hosts, io

FOLDER = ("attacks", "per_example")


def zoo_kinds(layout: layout_lib.RunLayout) -> list[str]:
  """The run's zoo kinds: dense, then tickets, then the others, each by sparsity."""
  root = layout.zoo()
  found = {k: io.read_json(layout.zoo(k, "summary.json")) for k in sorted(os.listdir(root)) if os.path.exists(
      layout.zoo(k, "summary.json"))} if os.path.isdir(root) else {}
  return sorted(found, key=lambda k: (k != "dense", found[k]["kind"] != "ticket", found[k]["sparsity"], k))


def zoo_scores(layout: layout_lib.RunLayout, kind: str, attack: str, keep: np.ndarray) -> exposure.ZooScores | None:
  """The zoo models' rows (zoo model s at row s) of one kind's leave-one-out scores, or None where not recorded."""
  targets = zoo_targets.read(layout, kind, attack)
  if targets is None:
    return None
  names = list(targets.names)
  rows = [names.index(zoo_targets.zoo_name(s)) for s in range(len(keep))]
  if not np.array_equal(targets.member[rows], keep):
    raise errors.UserError(f"{layout.path(*zoo_targets.FOLDER, kind)}: its members differ from shadows/keep.npy")
  return exposure.ZooScores(targets.scores[rows], keep)


def predicted(layout: layout_lib.RunLayout, kind: str) -> np.ndarray:
  """int [S, N]: each zoo model's prediction on the pool under the identity query."""
  queries = io.read_json(layout.zoo("zoo.json"))["queries"]
  logits = np.load(layout.zoo(kind, "logits.npy"), mmap_mode="r")
  return groups_lib.predictions(logits[:, :, queries.index("identity")])


def _counts(labels: np.ndarray, chosen: np.ndarray) -> dict[str, int]:
  classes, counts = np.unique(labels[chosen], return_counts=True)
  return {str(c): int(n) for c, n in zip(classes, counts)}


def kind_summary(found: dict, zoo_scores_: exposure.ZooScores, hit: np.ndarray, top_fraction: float) -> dict:
  analysed = np.isfinite(found["exposure"])
  first, second = exposure.split_halves(zoo_scores_.scores, zoo_scores_.inside, zoo_scores_.outside)
  return {"analysed": int(analysed.sum()), "exposed": int(found["exposed"].sum()),
          "mean_exposure": float(np.nanmean(found["exposure"])),
          "tpr_pooled": float((hit & zoo_scores_.inside).sum() / zoo_scores_.inside.sum()),
          "mean_memorisation": float(np.nanmean(found["memorisation"])),
          "stability_halves": exposure.spearman(first, second),
          "top_overlap_halves": exposure.top_overlap(first, second, top_fraction)}


def change_summary(found: dict, dense: dict, pruned: dict, labels: np.ndarray, top_fraction: float) -> dict:
  analysed = np.isfinite(found["change"])
  exposed_either = dense["exposed"] | pruned["exposed"]
  return {"analysed": int(analysed.sum()), "rises": int(found["rises"].sum()), "falls": int(found["falls"].sum()),
          "rises_by_class": _counts(labels, found["rises"]), "falls_by_class": _counts(labels, found["falls"]),
          "exemplars": int(found["exemplar"].sum()),
          "top_overlap": exposure.top_overlap(dense["exposure"], pruned["exposure"], top_fraction),
          "exposed_jaccard": float((dense["exposed"] & pruned["exposed"]).sum() / max(exposed_either.sum(), 1)),
          "relation": groups_lib.relation(found["change"], dense["memorisation"], found["exemplar"])}


def analyse(layout: layout_lib.RunLayout, labels: np.ndarray, settings: dict) -> dict | None:
  """Everything the section and the record hold for one run (None: no dense leave-one-out scores of the attack)."""
  keep = io.read_npy(layout.zoo("keep.npy"))
  scores = {k: s for k in zoo_kinds(layout) if (s := zoo_scores(layout, k, settings["attack"], keep)) is not None}
  if "dense" not in scores:
    return None
  guesses = {k: predicted(layout, k) for k in scores}
  num_classes = int(max(labels.max(), *(g.max() for g in guesses.values())) + 1)
  hits = {k: exposure.caught(s, settings["fpr"]) for k, s in scores.items()}
  kinds = {}
  for kind, zoo_scores_ in scores.items():
    found = exposure.exposure(zoo_scores_, hits[kind], settings["fdr"])
    found["memorisation"] = groups_lib.memorisation(guesses[kind] == labels, keep)
    kinds[kind] = {"per_example": found, "summary": kind_summary(found, zoo_scores_, hits[kind],
                                                                settings["top_fraction"])}
  without = groups_lib.memorisation_without_each(guesses["dense"] == labels, keep)
  found_groups = groups_lib.groups(labels, without, settings["rare_ratio"], settings["atypical"])
  changes, rows = {}, []
  for kind in list(scores)[1:]:
    found = exposure.change(scores["dense"], scores[kind], settings["fdr"])
    found["exemplar"] = groups_lib.exemplars(guesses["dense"], guesses[kind], num_classes)
    found["stability_halves"] = exposure.change_stability(scores["dense"], scores[kind])
    changes[kind] = {"per_example": {k: v for k, v in found.items() if k != "stability_halves"},
                     "summary": {**change_summary(found, kinds["dense"]["per_example"], kinds[kind]["per_example"],
                                                  labels, settings["top_fraction"]),
                                 "stability_halves": found["stability_halves"]}}
    rows += [{"kind": kind, **row} for row in groups_lib.compare_groups(hits["dense"], hits[kind], keep, found_groups)]
  fewest = int(min(s.outside.sum(1).min() for s in scores.values()))
  return {"attack": settings["attack"], "settings": dict(settings), "num_models": int(len(keep)),
          "ids": io.read_npy(layout.zoo("ids.npy")), "labels": labels, "kinds": kinds, "changes": changes,
          "groups": groups_lib.holm_adjust(rows), "scored_nonmembers": fewest,
          "estimable": fewest >= stats.needed_nonmembers(settings["fpr"]),
          "needed_nonmembers": stats.needed_nonmembers(settings["fpr"])}


def jsonable(value):
  """Arrays as lists, NaN as None (strict JSON)."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [jsonable(v) for v in np.asarray(value, object).tolist()] if isinstance(value, np.ndarray) else \
        [jsonable(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return None if np.isnan(value) else float(value)
  return value.item() if isinstance(value, np.generic) else value


def split(found: dict) -> tuple[dict, dict]:
  """(summary, per-example numbers) of an analysis, JSON-able."""
  per_example = {"ids": found["ids"], "labels": found["labels"],
                 "kinds": {k: v["per_example"] for k, v in found["kinds"].items()},
                 "changes": {k: v["per_example"] for k, v in found["changes"].items()}}
  summary = {k: v for k, v in found.items() if k not in ("ids", "labels")}
  summary["kinds"] = {k: v["summary"] for k, v in found["kinds"].items()}
  summary["changes"] = {k: v["summary"] for k, v in found["changes"].items()}
  return jsonable(summary), jsonable(per_example)


def write(found: dict, summary_path: str, examples_path: str) -> dict:
  """Writes the summary (indented) and the per-example numbers (compact and gzip-compressed: tens of thousands of
  numbers), per-example first; returns the summary."""
  summary, per_example = split(found)
  io.write_json(examples_path, per_example)
  io.write_json(summary_path, summary)
  return summary


def paths(layout: layout_lib.RunLayout, attack: str) -> tuple[str, str]:
  stem = layout.path(*FOLDER, attack)
  return stem + ".json", stem + "_examples.json.gz"


@zoo.AFTER_TARGETS.register("per_example")
def record(ctx, zoo_summaries: dict, reference_of, attack_configs: dict) -> None:
  """attacks/per_example/ of the run, when per_example.record asks for it (a finished record is kept)."""
  settings = ctx.config.per_example.to_dict()
  summary_path, examples_path = paths(ctx.layout, settings["attack"])
  if not settings["record"] or os.path.exists(summary_path):
    return
  labels = ExampleSource(ctx.dataset).labels(io.read_npy(ctx.layout.zoo("ids.npy")))
  found = analyse(ctx.layout, labels, settings)
  if found is not None:
    hosts.on_process_zero(lambda: write(found, summary_path, examples_path))


def validate(config) -> None:
  section = config.per_example
  calibrated = registry.of_contract(config.attacks.models.to_dict(), contracts.ReferenceAttack)
  if section.record and section.attack not in calibrated:
    raise errors.ConfigError(f"per_example.attack={section.attack!r}: expected one of the attacks of attacks.models "
                             f"that learn from reference models ({', '.join(calibrated) or 'none configured'})")
  for name, low, high in (("fpr", 0.0, 0.5), ("fdr", 0.0, 1.0), ("top_fraction", 0.0, 1.0), ("rare_ratio", 0.0, 1.0)):
    value = section[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
      raise errors.ConfigError(f"per_example.{name}: expected a number in ({low}, {high}], got {value!r}")
  if isinstance(section.atypical, bool) or not isinstance(section.atypical, (int, float)) or \
      not -1 < section.atypical <= 1:
    raise errors.ConfigError(f"per_example.atypical: expected a memorisation in (-1, 1], got {section.atypical!r}")
  if isinstance(section.grid_size, bool) or not isinstance(section.grid_size, int) or section.grid_size < 1:
    raise errors.ConfigError(f"per_example.grid_size: expected a whole number >= 1, got {section.grid_size!r}")


SETTINGS = config_sections.register("per_example", "which examples pruning exposes, from the zoo's leave-one-out "
                                                   "scores (experiments/per_example.py)", {
    "record": (False, "after the zoo, keep the analysis in attacks/per_example/ (the report computes it either way)"),
    "attack": ("lira_fixed_var", "the attack of attacks.models whose leave-one-out zoo scores measure exposure"),
    "fpr": (0.01, "the low FPR at which an example counts as caught (thresholds set on other examples)"),
    "fdr": (0.1, "Benjamini-Hochberg false discovery rate over examples (exposed; exposure rises or falls)"),
    "atypical": (0.25, "an example is atypical where its dense memorisation (without the judged model) is >= this"),
    "rare_ratio": (0.5, "a class is rare where its pool count is below this times the median class count"),
    "top_fraction": (0.01, "the share of most exposed examples whose overlap between kinds is reported"),
    "grid_size": (24, "examples in each image grid of the report"),
}, validate=validate)


def settings_of(config: dict) -> dict:
  """A run's per_example settings (the defaults where it was recorded without the section)."""
  return {**{name: default for name, (default, _) in SETTINGS.fields.items()}, **config.get("per_example", {})}
