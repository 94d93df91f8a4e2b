"""report.md: a heading, then every registered report section (report.sections.SECTIONS) in order.

The core names no section: the built-in ones register themselves when plugins.load() imports them (launch.report
calls it; so does a test session's conftest), a user's when its module is imported.
"""
import itertools
import os
import platform

from mialth_jax.report import collect, sections
from mialth_jax.utils import io, provenance


# The papers the reports cite, written "../shared/papers/<file>" (from the repository) and linked from the report.
PAPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "..", "shared",
                      "papers")


def header(runs: list[collect.Run], preamble: str) -> str:
  paper = collect.paper_numbers()
  return sections.text([
      preamble.rstrip() or "# mialth_jax report", "",
      f"Generated from {', '.join(r.workdir for r in runs)} on {platform.node()} ({platform.machine()}). Every "
      "attack metric below is recomputed from the saved per-example scores (`attacks/**/<attack>.npz`). "
      f"Paper: {paper['source']}.", "",
      *(f"- {r.label}: made by {provenance.summary(r.workdir)}" for r in runs), ""])


def body(runs: list[collect.Run], out: sections.Output, names=None) -> list[str]:
  """The non-empty Markdown of every section (or of those named), in order; consecutive per-run sections run by
  run."""
  parts = []
  for per_run, group in itertools.groupby(sections.ordered(names), key=lambda section: section.per_run):
    group = list(group)
    calls = [[run] for run in runs] if per_run else [runs]
    parts += [section.render(given, out) for given in calls for section in group]
  return [part for part in parts if part]


def write(runs: list[collect.Run], out_dir: str, name: str = "report.md", preamble: str = "", names=None) -> str:
  """Writes out_dir/<name> (preamble first) and its PNGs in out_dir/plots (<stem>_plots for other names), with every
  section or those `names` gives."""
  if not sections.SECTIONS:
    raise collect.ReportError("no report sections registered: call mialth_jax.plugins.load() (or import your "
                              "section modules) before writing a report")
  out = sections.Output.for_report(out_dir, name)
  path = os.path.join(out_dir, name)
  text = "\n".join([header(runs, preamble), *body(runs, out, names)]) + "\n"
  io.write_text(path, text.replace("../shared/papers/", os.path.relpath(PAPERS, out_dir) + "/"))
  return path
