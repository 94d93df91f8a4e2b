"""The privacy onion (experiments.onion, experiments.onion_effect): for every onion run among the report's runs and
each control run of it (the same source, k and attack, random removal), whether the examples both kept become more
exposed once the most exposed ones are gone, under dense and under each ticket, and whether tickets' onion layer
differs from dense's. The numbers go beside the figures as JSON.
"""
import os

from mialth_jax.experiments import onion_effect, per_example
from mialth_jax.report import sections
from mialth_jax.utils import io

METHOD = ("Shared examples: removed in neither run, exposure measured in both under every kind. Exposed: "
          "Benjamini-Hochberg over the shared examples of each run at per_example.fdr; newly exposed: exposed in the "
          "onion run and not in the control; McNemar's exact test on the examples exposed in one run only. Change: "
          "exposure in the onion run - in the control, its mean with a t interval over the shared examples "
          "(conditional on the two zoos) and over the zoo models (each model's IN - OUT gap of scores on the shared "
          "examples, paired by zoo model: same seed, same members but for the removed); model-level p-values "
          "Holm-adjusted over the rows of both tables. Kind - dense: the kind's change minus dense's, per example and "
          "per model pair (zoo model s of a ticket was pruned from dense model s).")


def _onion(run) -> dict | None:
  section = run.config.get("onion", {})
  if not section.get("of"):
    return None
  return {"of": os.path.realpath(section["of"]), "remove": section["remove"], "removal": section["removal"],
          "attack": per_example.settings_of(run.config)["attack"]}


def pairs(runs) -> list[tuple]:
  """(onion run, control run) for every control of every onion run among `runs`."""
  found = [(run, _onion(run)) for run in runs]
  return [(a, b) for a, sa in found if sa and sa["removal"] == "most_exposed"
          for b, sb in found if sb and sb["removal"] == "random" and {**sb, "removal": ""} == {**sa, "removal": ""}]


def _interval(found: dict, holm: bool = False) -> str:
  if found["n"] < 2:
    return "-"
  text = f"{found['mean']:+.3f} [{found['low']:+.3f}, {found['high']:+.3f}]"
  return text + (f" (Holm p={found['p_holm']:.2g})" if holm else "")


def kind_table(found: dict) -> list[str]:
  lines = ["| kind | exposed (onion) | exposed (control) | newly exposed | no longer exposed | McNemar p | change over "
           "examples | change over model pairs |", "| --- |" + " --- |" * 7]
  for kind, s in found["kinds"].items():
    lines.append(f"| {kind} | {s['exposed_onion']:,} | {s['exposed_control']:,} | {s['newly_exposed']:,} "
                 f"({s['newly_exposed_fraction']:.1%}) | {s['no_longer_exposed']:,} | {s['mcnemar_p']:.2g} | "
                 f"{_interval(s['change_over_examples'])} | {_interval(s['change_over_models'], True)} |")
  return lines


def dense_table(found: dict) -> list[str]:
  if not found["against_dense"]:
    return []
  lines = ["| kind - dense | newly exposed share | newly exposed under the kind only / dense only (McNemar p) | "
           "change over examples | change over model pairs |", "| --- |" + " --- |" * 4]
  for kind, s in found["against_dense"].items():
    m = s["mcnemar"]
    lines.append(f"| {kind} | {s['newly_exposed_difference']:+.1%} | {m['only_first']} / {m['only_second']} "
                 f"({m['p_value']:.2g}) | {_interval(s['change_over_examples'])} | "
                 f"{_interval(s['change_over_models'], True)} |")
  return lines


def pair_part(onion_run, control_run, out: sections.Output) -> list[str]:
  settings = per_example.settings_of(onion_run.config)
  found = onion_effect.compare(onion_effect.read_run(onion_run.workdir, settings["attack"]),
                               onion_effect.read_run(control_run.workdir, settings["attack"]), settings["fdr"])
  json_path = out.plot(f"onion_{onion_run.label}_vs_{control_run.label}.json")
  io.write_json(json_path, per_example.jsonable(found))
  source = _onion(onion_run)
  source_name = os.path.basename(source["of"])  # the folder's name: the recorded path is this machine's
  return [f"### {onion_run.label} vs {control_run.label}: the privacy onion", "",
          f"The {source['remove']} most exposed examples under dense of run folder {source_name} left out of every "
          f"training set ({onion_run.label}) against {source['remove']} random ones of the same candidates "
          f"({control_run.label}); "
          f"{found['shared']:,} shared examples, attack {settings['attack']} (leave-one-out over the zoo), false "
          f"discovery rate {settings['fdr']:g}. Numbers: [{out.link(json_path)}]({out.link(json_path)}).", "",
          METHOD, "", *kind_table(found), "", *dense_table(found), ""]


@sections.register("onion", order=139)
def section(runs, out: sections.Output) -> str:
  doc = []
  for onion_run, control_run in pairs(runs):
    doc += pair_part(onion_run, control_run, out)
  return sections.text(doc)
