"""Targets built from run folders: this run's models, and read-only views of other runs (cross-run transfer)."""
import os

import ml_collections

from mialth_jax.attacks import target as target_lib
from mialth_jax.data import load_dataset, splits as splits_lib
from mialth_jax.data.examples import ExampleSource
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import context as context_lib
from mialth_jax.utils import checkpoint, io


def model_target(ctx: context_lib.Context, name: str, label: str | None = None,
                 cache: RunLayout | None = None) -> target_lib.Target:
  """The finished model `name` of the run `ctx` as a target; its outputs are cached in `cache` (default: that run)."""
  if not ctx.layout.is_finished(name):
    raise checkpoint.CheckpointError(f"{ctx.layout.model_dir(name)}: no finished model there (summary.json "
                                     "missing); train it first")
  label = label or name
  return target_lib.Target(
      label=label, cache_path=(cache or ctx.layout).confidences(label), source=ExampleSource(ctx.dataset),
      model=ctx.model, load_variables=lambda: ctx.restore_variables(ctx.layout.final(name)), mean=ctx.data.mean,
      std=ctx.data.std, mesh=ctx.mesh, batch_size=ctx.config.attacks.batch_size)


def open_run(workdir: str, field: str) -> context_lib.Context:
  """Another run folder's context, read without writing anything into it (it may be another launch's workdir).

  `field` names the config field that pointed there, for errors.
  """
  layout = RunLayout(workdir)
  for path in (layout.config, layout.splits):
    if not os.path.exists(path):
      raise io.UnreadableFileError(f"{field}: {workdir} holds no run ({os.path.basename(path)} missing)")
  config = ml_collections.ConfigDict(io.read_json(layout.config))
  dataset = load_dataset(config.data)
  return context_lib.build(config, layout, dataset, splits_lib.load(layout.splits), for_training=False)


def finished_targets(ctx: context_lib.Context, prefix: str = "", cache: RunLayout | None = None) -> list:
  """Every finished model of a run as a target, dense first; labels get `prefix` (e.g. "<run>/")."""
  return [model_target(ctx, name, prefix + name, cache) for name in ctx.layout.finished_models()]
