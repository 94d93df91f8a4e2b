"""The zoo's models as recipes read them (recipes.OwnMask): zoo model s's own seed, w0, members and finished models,
from the stacked checkpoints of shadows/ (lottery/zoo_pipeline.py), so that every recipe that makes its masks per model
makes each zoo model's own.
"""
import numpy as np

from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import context as context_lib, own_model, recipes, zoo
from mialth_jax.utils import checkpoint


class Stacked:
  """The zoo's stacked checkpoints in shadows/, each read once and shared by its models."""

  def __init__(self, ctx, num_models: int, abstract_variables):
    self.ctx, self.num_models, self.abstract_variables, self._read = ctx, num_models, abstract_variables, {}

  def variables(self, *parts: str) -> dict:
    """The stacked {params, batch_stats} at shadows/<parts>."""
    return self._restore(parts, lambda: self.abstract_variables)

  def masks(self, name: str) -> dict:
    """The stacked masks of the zoo `name`."""
    return self._restore((name, "mask"), lambda: zoo.stack([self.ctx.dense_mask()] * self.num_models))

  def _restore(self, parts: tuple, target):
    if parts not in self._read:
      self._read[parts] = checkpoint.restore(self.ctx.layout.zoo(*parts), target())
    return self._read[parts]


class ZooModel(own_model.OwnModel):
  """Zoo model `index` as a recipe reads it: its seed, its members (its row of keep) and its own slice of the zoo's
  stacked w0, final weights and masks."""

  def __init__(self, ctx, index: int, seed: int, keep_row: np.ndarray, stacked: Stacked):
    self.ctx, self.index, self.seed, self.ids, self.stacked = ctx, index, seed, np.flatnonzero(keep_row), stacked

  def w0(self) -> dict:
    return zoo.unstack(self.stacked.variables("w0"), self.index)

  def members(self) -> tuple:
    source = ExampleSource(self.ctx.dataset)
    return context_lib.MemberSource(source, self.ids), source.labels(self.ids)

  def final_params(self, name: str) -> dict:
    return zoo.unstack(self.stacked.variables(name, "final")["params"], self.index)

  def mask(self, name: str) -> dict:
    return zoo.unstack(self.stacked.masks(name), self.index)


def masks_of(ctx, spec: recipes.ModelSpec, keep: np.ndarray, seeds: np.ndarray, abstract_variables) -> list[dict]:
  """Each zoo model's mask of `spec`: its recipe's own_mask of that zoo model (read back from shadows/<name>/mask
  when a relaunch finds it there); `abstract_variables` the target tree of the zoo's stacked {params, batch_stats}."""
  stacked = Stacked(ctx, len(seeds), abstract_variables)
  if checkpoint.exists(ctx.layout.zoo(spec.name, "mask")):
    return [ZooModel(ctx, s, int(seed), keep[s], stacked).mask(spec.name) for s, seed in enumerate(seeds)]
  recipe = recipes.RECIPES.lookup(spec.kind)()
  return [recipe.own_mask(ctx, spec, ZooModel(ctx, s, int(seed), keep[s], stacked)) for s, seed in enumerate(seeds)]
