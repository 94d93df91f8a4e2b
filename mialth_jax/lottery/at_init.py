"""Pruning at initialisation (lottery.method = snip | grasp | synflow): the mask is computed at w0 from a saliency
score (lottery/init_scores.py) and the model is trained from w0 with it, from step 0. Dense is trained too, as the
run's baseline; the pruned models are the run's tickets (recipes.ticket_kinds), attacked and judged as tickets are.

The scores rank the prunable weights over all layers together (lottery.at_init.scope = global) or in each layer
(layerwise), and "prune p" removes exactly round(p * n) (or round(p * n_l)) of them, ties by position, as masks.prune
does for magnitudes.

BatchNorm while scoring: SNIP and GraSP score the loss the network trains on, BatchNorm normalising with the scoring
batch's statistics (train mode, as Wang et al.'s GraSP code does); SynFlow scores the network in eval mode,
BatchNorm using w0's running statistics (mean 0, variance 1: an affine map), as in Tanaka et al.'s code, where batch
statistics of its constant all-ones input would normalise the signal away. SynFlow takes |.| of every parameter and
running statistic, as Tanaka et al. do. The scoring batch of SNIP and GraSP is lottery.at_init.examples of the model's
members drawn with the model's seed (the run's for the run's model), normalised as training normalises them, not
augmented.

Each method is planned when lottery.method names it or lottery.controls lists it (beside the run's other pruned
models), and is repeated by the zoo: zoo model s is scored at its own w0 on its own members (recipes.OwnMask).
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mialth_jax import errors
from mialth_jax.data import augment
from mialth_jax.lottery import init_scores, masks, own_model, recipes
from mialth_jax.lottery import train as train_lib
from mialth_jax.utils import checkpoint, config_sections

METHODS = {"snip": "SNIP at initialisation (Lee et al. 2019)", "grasp": "GraSP at initialisation (Wang et al. 2020)",
           "synflow": "SynFlow at initialisation (Tanaka et al. 2020), data-free"}


def scoring_batch(ctx, model: own_model.OwnModel, examples: int) -> tuple[jax.Array, np.ndarray]:
  """(normalised images, labels) of `examples` of `model`'s members drawn with its seed."""
  images, labels = model.members()
  positions = np.sort(np.random.default_rng([model.seed, 0x1417]).choice(
      len(labels), min(examples, len(labels)), replace=False))
  return augment.normalise(np.asarray(images[positions]), ctx.data.mean, ctx.data.std, ctx.model.dtype), \
      labels[positions]


@functools.lru_cache(maxsize=8)
def _data_scores_fn(score_fn, model, temperature: float):
  """jit(params, batch_stats, x, labels) -> scores, compiled once per network (a zoo scores each of its models)."""
  def loss(params, batch_stats, x, labels):
    logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
    return train_lib.cross_entropy(logits / temperature, labels)
  return jax.jit(lambda p, b, x, y: score_fn(lambda q: loss(q, b, x, y), p))


def data_scores(score_fn, model, variables: dict, x, labels, temperature: float = 1.0):
  """`score_fn` (init_scores.snip_scores or grasp_scores) of the cross-entropy of the network's logits / temperature
  on the batch (x, labels), BatchNorm in train mode; numpy."""
  scores = _data_scores_fn(score_fn, model, float(temperature))(variables["params"], variables["batch_stats"], x,
                                                                 labels)
  return jax.device_get(scores)


@functools.lru_cache(maxsize=8)
def _synflow_fn(model, image_shape: tuple):
  """jit(params, |batch statistics|, mask) -> SynFlow's scores, compiled once per network."""
  def scores(params, statistics, mask):
    def apply(p, x):
      return model.apply({"params": p, "batch_stats": statistics}, x, train=False)
    return init_scores.synflow_scores(apply, masks.apply_mask(params, mask), jnp.ones((1, *image_shape), jnp.float32))
  return jax.jit(scores)


def synflow_score_of(model, variables: dict, image_shape):
  """mask -> SynFlow's scores of the network masked by it: eval mode, |.| of every parameter and statistic, one
  all-ones image."""
  statistics = jax.tree.map(jnp.abs, variables["batch_stats"])
  scores = _synflow_fn(model, tuple(image_shape))
  return lambda mask: _finite(jax.device_get(scores(variables["params"], statistics, mask)))


def _finite(scores):
  if not all(np.all(np.isfinite(s)) for s in jax.tree.leaves(scores)):
    raise errors.UserError("synflow: the scores overflow float32 (the product of |w| along the network's paths); "
                           "use lottery.method snip or grasp for this network")
  return scores


class AtInit(recipes.OwnMask):
  """A model pruned at its w0 by its method's score (each subclass's `scored_mask(ctx, model, spec, settings)`),
  started from w0 at step 0 (the base's start)."""
  method = ""

  def plan(self, config, planned):
    if not recipes.selected(config, self.method):
      return []
    return [recipes.ModelSpec(f"{self.method}_{recipes.sparsity_tag(s)}", self.method, s, "w0",
                              config.lottery.at_init.scope) for s in config.lottery.sparsities]

  def mask(self, ctx, spec):
    if checkpoint.exists(ctx.layout.mask(spec.name)):  # a resumed model: its mask was scored and saved before
      return ctx.load_mask(spec.name)
    return super().mask(ctx, spec)

  def own_mask(self, ctx, spec, model):
    return self.scored_mask(ctx, model, spec, ctx.config.lottery.at_init)


@recipes.RECIPES.register("snip")
class Snip(AtInit):
  method, title = "snip", METHODS["snip"]

  def scored_mask(self, ctx, model, spec, settings):
    scores = data_scores(init_scores.snip_scores, ctx.model, model.w0(), *scoring_batch(ctx, model, settings.examples))
    return masks.prune_by_scores(scores, ctx.dense_mask(), spec.sparsity, spec.rule)


@recipes.RECIPES.register("grasp")
class Grasp(AtInit):
  method, title = "grasp", METHODS["grasp"]

  def scored_mask(self, ctx, model, spec, settings):
    scores = data_scores(init_scores.grasp_scores, ctx.model, model.w0(),
                         *scoring_batch(ctx, model, settings.examples), temperature=settings.grasp_temperature)
    # GraSP prunes the highest -w * Hg: keep the highest w * Hg.
    return masks.prune_by_scores(jax.tree.map(np.negative, scores), ctx.dense_mask(), spec.sparsity, spec.rule)


@recipes.RECIPES.register("synflow")
class Synflow(AtInit):
  method, title = "synflow", METHODS["synflow"]

  def scored_mask(self, ctx, model, spec, settings):
    score_of = synflow_score_of(ctx.model, model.w0(), ctx.dataset.image_shape)
    return init_scores.synflow_mask(score_of, ctx.dense_mask(), spec.sparsity, spec.rule, settings.synflow_rounds)


recipes.METHOD_RECIPES.register("snip", "snip", about="SNIP at w0, Lee et al. 2019")
recipes.METHOD_RECIPES.register("grasp", "grasp", about="GraSP at w0, Wang et al. 2020")
recipes.METHOD_RECIPES.register("synflow", "synflow", about="SynFlow at w0, Tanaka et al. 2020, data-free")


def _validate(config: ml_collections.ConfigDict) -> None:
  settings, lottery = config.lottery.at_init, config.lottery
  if settings.scope not in masks.SCOPES:
    raise errors.ConfigError(f"lottery.at_init.scope={settings.scope!r} is unknown; expected one of "
                             f"{', '.join(masks.SCOPES)}")
  for field, value, low in (("examples", settings.examples, 1), ("synflow_rounds", settings.synflow_rounds, 1)):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise errors.ConfigError(f"lottery.at_init.{field}: expected a whole number >= {low}, got {value!r}")
  if not settings.grasp_temperature > 0:
    raise errors.ConfigError(f"lottery.at_init.grasp_temperature must be > 0, got {settings.grasp_temperature!r}")
  if lottery.method not in METHODS:
    return
  if lottery.rule != "global_magnitude":
    raise errors.ConfigError(f"lottery.rule={lottery.rule!r}: lottery.method={lottery.method} ranks w0 by its own "
                             "score, not by a rule; choose global or layerwise with lottery.at_init.scope")
  if lottery.rewind_step:
    raise errors.ConfigError(f"lottery.rewind_step={lottery.rewind_step}: lottery.method={lottery.method} trains from "
                             "w0 (pruning at initialisation); set it to 0")


config_sections.register("lottery.at_init", "pruning at initialisation: lottery.method snip | grasp | synflow "
                                            "(lottery/at_init.py)", {
    "scope": ("global", "global (one ranking of all prunable weights) | layerwise (each layer pruned to the sparsity)"),
    "examples": (128, "snip, grasp: the member examples (a seeded draw) the scores are computed on"),
    "grasp_temperature": (200.0, "grasp: the logits are divided by this in the scored loss (Wang et al.'s code: 200)"),
    "synflow_rounds": (100, "synflow: pruning rounds; the density after round r is d^(r / rounds), the last exactly d"),
}, validate=_validate)
