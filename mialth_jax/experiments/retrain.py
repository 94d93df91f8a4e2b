"""`--retrain`: make chosen models of a run (or its w0) again, keeping the rest, e.g. after a damaged checkpoint.

What depends on the bits of a named model (`RunLayout.made_with`: its folder, dense's late-rewind point, its cached
outputs, its attack results) is moved into <workdir>/set_aside/<names>-<UTC time>/, nothing deleted, and the launch
then makes it again, as it makes any missing model, and attacks it again. Models made from a named model's weights
(tickets pruned from dense, controls made from a ticket) are kept: training is bit for bit the same on the same
device count and platform, so the named model comes back with the weights they were made from. That is checked
(its new summary.json must equal the set-aside one, timings aside) before the attacks; otherwise the launch stops,
naming the kept models to retrain too. w0 is made again from the seed alone (its initialisation), the same bits on
the same platform; nothing else is set aside with it.
"""
import os
import time

from absl import logging

from mialth_jax import errors, run_dir
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import recipes
from mialth_jax.utils import hosts, io

# {retrained model: (its summary without timings, the kept models made from its weights)}
Expected = dict[str, tuple[dict | None, list[str]]]


class RetrainError(errors.UserError, ValueError):
  """--retrain names something the run does not have, or a retrained model no longer matches the models kept."""


def set_aside(ctx, names) -> Expected:
  """Checks the names, notes what the kept models expect of them (for `check`), then moves their files aside
  (process 0)."""
  if not names:
    return {}
  expected = expectations(ctx.layout, names, [spec.name for spec in recipes.plan(ctx.config)])
  hosts.on_process_zero(lambda: move_aside(ctx.layout, names))
  return expected


def expectations(layout: RunLayout, names, planned: list[str]) -> Expected:
  """Refuses names other than w0 and the planned models; returns {name: (its summary without timings, None if
  unreadable; the kept models made from its weights)} for each named model that kept models were made from."""
  unknown = [name for name in names if name not in ("w0", *planned)]
  if unknown:
    raise RetrainError(f"--retrain: {', '.join(unknown)}: not a model of this run; expected names among w0, "
                       f"{', '.join(planned)}")
  summaries = _summaries(layout, names)
  expected = {}
  for name in names:
    kept = [model for model in made_from(summaries, name) if model not in names]
    if kept:
      expected[name] = (_without_timings(summaries.get(name)), kept)
  return expected


def _summaries(layout: RunLayout, names) -> dict[str, dict | None]:
  """{model: summary.json} of the finished models; None for a named one whose summary cannot be read."""
  found = {}
  for model in layout.finished_models():
    try:
      found[model] = io.read_json(layout.summary(model))
    except io.UnreadableFileError:
      if model not in names:
        raise
      found[model] = None
  return found


def made_from(summaries: dict[str, dict | None], name: str) -> list[str]:
  """The finished models whose mask or start was made from the weights of `name`, directly or through another (their
  summaries' `pruned_from`)."""
  made = {name}
  for _ in summaries:
    made |= {model for model, summary in summaries.items() if (summary or {}).get("pruned_from") in made}
  return [model for model in summaries if model in made and model != name]


def _without_timings(summary: dict | None) -> dict | None:
  return summary and {k: v for k, v in summary.items() if k != "wall_seconds"}


def move_aside(layout: RunLayout, names) -> str | None:
  """Moves what depends on the bits of each of `names` into <workdir>/set_aside/<names>-<UTC time>/, at the same
  relative paths; returns that folder (None when there was nothing to move)."""
  paths = list(dict.fromkeys(path for name in names for path in layout.made_with(name)))
  if not paths:
    return None
  stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
  folder = run_dir.unused_path(os.path.join(layout.set_aside, f"{'+'.join(names)}-{stamp}"))
  for path in paths:
    target = os.path.join(folder, os.path.relpath(path, layout.workdir))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(path, target)
  logging.warning("--retrain: moved %s into %s", ", ".join(os.path.relpath(p, layout.workdir) for p in paths), folder)
  return folder


def check(layout: RunLayout, expected: Expected) -> None:
  """Stops the launch (before the attacks) if a retrained model came back other than the one set aside while kept
  models were made from that one (retrained on another device count or platform, its bits differ)."""
  for name, (before, kept) in expected.items():
    after = _without_timings(io.read_json(layout.summary(name)))
    if after != before:
      differing = sorted(k for k in after if before is None or before.get(k) != after[k])
      raise RetrainError(f"--retrain={name}: the retrained {name} differs from the one set aside "
                         f"({', '.join(differing)}); {', '.join(kept)} were made from the set-aside one: relaunch "
                         f"with --retrain={','.join(kept)} to make them again from the new {name}")
