"""Which examples pruning exposes (experiments.per_example), for every run whose zoo holds the leave-one-out scores of
the run's per_example.attack: per kind, how many examples are detectably exposed and how stable their ranking is; per
non-dense kind, which examples' exposure rises or falls against dense, how that relates to memorisation and to the
pruning-identified exemplars, and the TPR at low FPR of classes and groups (Holm over every comparison of a run);
image grids of the most exposed examples and of the largest rises, a scatter of exposure dense vs each kind, and the
per-example numbers as JSON beside the figures. Runs of the same pool (equal zoo ids and labels, e.g. seed runs)
are compared: Spearman's rho of their per-example exposure.
"""
import os

import ml_collections
import numpy as np

from mialth_jax.data import load_dataset
from mialth_jax.data.examples import ExampleSource
from mialth_jax.experiments import exposure, per_example, zoo_targets
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import recipes
from mialth_jax.report import per_example_plots, sections
from mialth_jax.utils import io

METHOD = ("Zoo model s of a kind is one observation of example n: its leave-one-out score (the attack calibrated on the "
          "other zoo models of the kind), IN where s trained on n, OUT where it did not; examples in RMIA's population "
          "half are never scored OUT and are left out. Exposure = mean IN score - mean OUT score, Welch's test over "
          "the models (one-sided) and Benjamini-Hochberg over examples. The change kind - dense uses the per-model "
          "differences of scores (zoo model s of each kind trained on the same examples), Welch's two-sided test and "
          "Benjamini-Hochberg. Caught: the score exceeds its model's threshold at the FPR, set on that model's "
          "non-members (never the example judged). Memorisation: accuracy of the IN models - accuracy of the OUT "
          "models (Feldman & Zhang); exemplars: the modal predictions of the two zoos differ (Hooker et al.). Group "
          "TPRs pool the (model, IN example) pairs (Clopper-Pearson); kind - dense is a paired t over the zoo models, "
          "Holm-adjusted over every group comparison of the run. Intervals over examples (correlations) are "
          "conditional on this zoo.")


def _interval(found: dict) -> str:
  return f"{found['rho']:+.2f} [{found['ci'][0]:+.2f}, {found['ci'][1]:+.2f}]" if found["n"] >= 4 else "-"


def _share(count: int, total: int) -> str:
  return f"{count:,} ({count / total:.1%})" if total else "-"


def kind_table(found: dict) -> list[str]:
  fpr = found["settings"]["fpr"]
  lines = [f"| kind | examples analysed | exposed (BH {found['settings']['fdr']:g}) | mean exposure | TPR @ {fpr:g} FPR "
           "(pooled) | rank stability (rho, zoo halves) | top overlap (halves) | mean memorisation |",
           "| --- |" + " --- |" * 7]
  for kind, s in found["kinds"].items():
    tpr = f"{s['tpr_pooled']:.3f}" if found["estimable"] else "-"
    lines.append(f"| {kind} | {s['analysed']:,} | {_share(s['exposed'], s['analysed'])} | {s['mean_exposure']:.3f} | "
                 f"{tpr} | {_interval(s['stability_halves'])} | {s['top_overlap_halves']['overlap']:.2f} | "
                 f"{s['mean_memorisation']:.3f} |")
  return lines


def _top_classes(counts: dict, names: tuple) -> str:
  ranked = sorted(counts.items(), key=lambda item: (-item[1], int(item[0])))[:3]
  return ", ".join(f"{names[int(c)] if names else c} ({n})" for c, n in ranked) or "-"


def change_table(found: dict, names: tuple) -> list[str]:
  lines = ["| kind vs dense | rises | falls | classes of the rises | classes of the falls | top "
           f"{found['settings']['top_fraction']:.0%} overlap with dense (chance) | change rank stability (halves) | "
           "rho(change, dense memorisation) | exemplars | change of exemplars - others |", "| --- |" + " --- |" * 9]
  for kind, s in found["changes"].items():
    overlap, exemplars = s["top_overlap"], s["relation"]["exemplars"]
    gap = "-" if exemplars["low"] is None else \
        f"{exemplars['difference']:+.2f} [{exemplars['low']:+.2f}, {exemplars['high']:+.2f}]"
    lines.append(f"| {kind} | {_share(s['rises'], s['analysed'])} | {_share(s['falls'], s['analysed'])} | "
                 f"{_top_classes(s['rises_by_class'], names)} | {_top_classes(s['falls_by_class'], names)} | "
                 f"{overlap['overlap']:.2f} ({overlap['chance']:.2f}) | {_interval(s['stability_halves'])} | "
                 f"{_interval(s['relation']['memorisation'])} | {s['exemplars']:,} | {gap} |")
  return lines


def _tpr(side: dict) -> str:
  return f"{side['tpr']:.3f} [{side['ci'][0]:.3f}, {side['ci'][1]:.3f}]" if side["ci"][0] is not None else "-"


def group_table(found: dict, names: tuple) -> list[str]:
  """Rare / frequent and atypical / typical always; a class only where its Holm-adjusted p is below 0.05."""
  if not found["estimable"]:
    return [f"TPR at {found['settings']['fpr']:g} FPR is not compared: a zoo model is scored on as few as "
            f"{found['scored_nonmembers']:,} non-members, and {found['needed_nonmembers']:,} give the 10 expected "
            "false positives it needs (set per_example.fpr higher)."]
  rows = [r for r in found["groups"] if not r["group"].startswith("class ") or r["p_adjusted"] < 0.05]
  classes = [r for r in found["groups"] if r["group"].startswith("class ")]
  lines = [f"TPR at {found['settings']['fpr']:g} FPR by group; {sum(r['p_adjusted'] < 0.05 for r in classes)} of "
           f"{len(classes)} class comparisons differ at Holm-adjusted p < 0.05 (listed).", "",
           "| kind | group | dense TPR | kind TPR | kind - dense over models | Holm p |", "| --- |" + " --- |" * 5]
  for r in rows:
    c = r["comparison"]
    group = r["group"] if not r["group"].startswith("class ") or not names else f"class {names[int(r['group'][6:])]}"
    difference = "-" if c is None else f"{c['mean_difference']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
    holm = "-" if r["p_adjusted"] is None else f"{r['p_adjusted']:.2g}"
    lines.append(f"| {r['kind']} | {group} | {_tpr(r['dense'])} | {_tpr(r['pruned'])} | {difference} | {holm} |")
  return lines


def _caption(index: int, label: int, value: float, q: float, names: tuple) -> str:
  return f"id {index}\n{names[label] if names else label}\n{value:+.2f} q={q:.1g}"


def grids(found: dict, images: ExampleSource, layout: RunLayout, label: str, out: sections.Output,
          names: tuple = ()) -> list[per_example_plots.Grid]:
  """The most exposed examples under dense and each ticket, and the largest rises of each ticket (the controls are
  in the tables and the scatter)."""
  ids, size, drawn = np.asarray(found["ids"]), found["settings"]["grid_size"], []
  drawn_kinds = [k for k in found["kinds"] if io.read_json(layout.zoo(k, "summary.json"))["kind"] in
                 ("dense", *recipes.ticket_kinds())]
  wanted = [(f"most exposed under {k}", f"exposed_{k}", found["kinds"][k]["per_example"]["exposure"],
             found["kinds"][k]["per_example"]["q"]) for k in drawn_kinds]
  wanted += [(f"largest rises {k} - dense", f"rises_{k}", found["changes"][k]["per_example"]["change"],
              found["changes"][k]["per_example"]["q"]) for k in drawn_kinds if k in found["changes"]]
  for title, stem, values, q in wanted:
    chosen = exposure.top(values, size)
    captions = [_caption(ids[i], found["labels"][i], values[i], q[i], names) for i in chosen]
    drawn.append(per_example_plots.image_grid(images[ids[chosen]], ids[chosen], captions, f"{label}: {title}",
                                              out.plot(f"per_example_{stem}_{label}.png")))
  return drawn


def run_part(run, out: sections.Output) -> tuple[list[str], dict | None]:
  """One run's Markdown lines and its analysis (None: nothing to say)."""
  layout = RunLayout(run.workdir)
  settings = per_example.settings_of(run.config)
  if not os.path.exists(zoo_targets.paths(layout, "dense", settings["attack"])[0]):
    return [], None  # not a zoo run, or its dense zoo was not attacked leave-one-out by this attack
  dataset = load_dataset(ml_collections.ConfigDict(run.config["data"]))
  source = ExampleSource(dataset)
  found = per_example.analyse(layout, source.labels(io.read_npy(layout.zoo("ids.npy"))), settings)
  if found is None:
    return [], None
  label, names = run.label, tuple(dataset.class_names or ())
  json_path = out.plot(f"per_example_{label}.json.gz")
  summary = per_example.write(found, out.plot(f"per_example_{label}_summary.json"), json_path)
  scatter = per_example_plots.exposure_scatter(
      found["kinds"]["dense"]["per_example"]["exposure"],
      {k: {"exposure": found["kinds"][k]["per_example"]["exposure"], **v["per_example"]}
       for k, v in found["changes"].items()}, settings["attack"], out.plot(f"per_example_scatter_{label}.png"))
  lines = [f"### {label}: which examples pruning exposes", "",
           f"{found['num_models']} zoo models per kind, attack {settings['attack']} (leave-one-out), FPR "
           f"{settings['fpr']:g}, false discovery rate {settings['fdr']:g}. Per-example numbers: "
           f"[{out.link(json_path)}]({out.link(json_path)}).", "", METHOD, "", *kind_table(summary), ""]
  if found["changes"]:
    lines += [*change_table(summary, names), "", *group_table(summary, names), "",
              out.image(f"exposure dense vs pruned {label}", scatter), ""]
  for grid in grids(found, source, layout, label, out, names):
    lines += [out.image(f"grid {label}", grid.path), ""]
  return lines, found


def across_runs(found: dict) -> list[str]:
  """Spearman's rho of per-example exposure between runs of the same pool, per kind both hold."""
  lines, labels = [], list(found)
  for i, a in enumerate(labels):
    for b in labels[i + 1:]:
      x, y = found[a], found[b]
      if not (np.array_equal(x["ids"], y["ids"]) and np.array_equal(x["labels"], y["labels"])):
        continue
      for kind in (k for k in x["kinds"] if k in y["kinds"]):
        rho = exposure.spearman(x["kinds"][kind]["per_example"]["exposure"], y["kinds"][kind]["per_example"][
            "exposure"])
        lines.append(f"| {a} | {b} | {kind} | {_interval(rho)} | {rho['n']:,} |")
  return ["### Rank stability of per-example exposure across runs of the same pool", "",
          "| run | run | kind | Spearman rho | examples |", "| --- |" + " --- |" * 4, *lines, ""] if lines else []


@sections.register("per_example", order=138)
def section(runs, out: sections.Output) -> str:
  doc, found = [], {}
  for run in runs:
    lines, analysis = run_part(run, out)
    doc += lines
    if analysis is not None:
      found[run.label] = analysis
  return sections.text(doc + across_runs(found))
