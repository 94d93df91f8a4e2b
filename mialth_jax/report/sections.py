"""The report's sections: each is one function registered in SECTIONS, called with the runs and an `Output`.

A section returns its Markdown (a string; "" when it has nothing to say for the runs, and it is left out) and writes
its PNG figures under `out.plots`, linking them with `out.link`. markdown.write calls the sections in `order`.
A section registered with `per_run=True` is called once per run (with a list holding that run); consecutive per-run
sections are written run by run (run 1's parts, then run 2's).

  @sections.register("my_section", order=95)
  def my_section(runs: list[collect.Run], out: sections.Output) -> str:
    return "## Mine\n\n..."
"""
import dataclasses
import os
from typing import Callable

from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class Output:
  """Where a report goes: `folder` holds the Markdown file, `plots` its PNG figures."""
  folder: str
  plots: str

  @classmethod
  def for_report(cls, folder: str, name: str = "report.md") -> "Output":
    """report.md's figures go to plots/, another name's to <stem>_plots/."""
    stem = os.path.splitext(name)[0]
    return cls(folder, os.path.join(folder, "plots" if name == "report.md" else f"{stem}_plots"))

  def plot(self, filename: str) -> str:
    """The path of a figure file."""
    return os.path.join(self.plots, filename)

  def link(self, path: str) -> str:
    """A figure's path relative to the report, for a Markdown link."""
    return os.path.relpath(path, self.folder)

  def image(self, alt: str, path: str) -> str:
    return f"![{alt}]({self.link(path)})"


@dataclasses.dataclass(frozen=True)
class Section:
  render: Callable        # (runs: list[collect.Run], out: Output) -> str
  order: float            # place in the report: smaller first
  per_run: bool = False   # called once per run, interleaved with the neighbouring per-run sections


SECTIONS = Registry("report section")


def register(name: str, order: float, per_run: bool = False, replace: bool = False):
  """Decorator: registers `render` as the report section `name` at `order`."""
  def add(render):
    SECTIONS.register(name, Section(render, order, per_run), replace=replace)
    return render
  return add


def ordered(names=None) -> list[Section]:
  """The registered sections by order (registration order among equal orders): all, or those named (an unknown
  name is an error naming the known ones)."""
  chosen = SECTIONS.values() if not names else [SECTIONS.lookup(name, "--sections") for name in names]
  return sorted(chosen, key=lambda section: section.order)


def text(lines: list[str]) -> str:
  """A section's lines as its Markdown."""
  return "\n".join(lines)
