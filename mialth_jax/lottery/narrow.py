"""The narrow dense control (issue 27): a dense network narrowed until it has as many weights as a ticket keeps.

A ticket at sparsity s is a smaller model than its dense parent; a dense model of the same size tells "leaks less
because it is sparse" from "leaks less because it is small". Both sides are counted alike, as trainable parameters
(the `params` collection; BatchNorm's running statistics are not trained and not counted): the narrow model's are all
its parameters, the ticket's are the ones it keeps nonzero, i.e. its kept prunable weights plus every parameter the
config leaves unprunable (BatchNorm scales and offsets, the classifier's bias, layers kept dense by the config).

Widths are searched finely: `resnet.stage_channels` rounds each stage's 64 * 2**k * width on its own, so widths
off the 1/64 grid give networks between two of it (on that grid stage k has 2**k times the first stage's channels, and
at CPU sizes, 16 first-stage channels, neighbouring networks differ by 20-45 % in size, too coarse for 2 %). Every
stage's rounding points lie on multiples of half a last-stage channel, so a grid of a quarter of one
(`width_grid`) reaches every network that widths give; the parameter count grows with the width, so a bisection over
that grid finds the closest.

The narrow model has other shapes than the reference's models, so it is its own run (`narrow_config`, its own
--workdir), recorded as the control of sparsity s in `controls.narrow_of_sparsity`. It keeps the reference run's
member split (`data.splits.make_splits`: dataset sizes, data.num_train, seed), attack splits (members, non-member
pool, attacks.test_fraction, seed), reserved ids (seed, unused training images) and zoo membership
(`lottery.zoo.random_subsets`: zoo.num_models, dataset size, member count, seed): none depends on a model field.
Its w0 comes from the same seed, drawn for other shapes. A config file for the control of the default run at 80 %:

  from configs import default
  from mialth_jax.lottery import narrow

  def get_config(arg=None):
    return narrow.narrow_config(default.get_config(), 0.8)
"""
import bisect
import math

import jax
import ml_collections
import numpy as np

from mialth_jax import errors
from mialth_jax.data import load_dataset
from mialth_jax.lottery import masks
from mialth_jax.models import resnet
from mialth_jax.utils import config_sections


def param_shapes(config: ml_collections.ConfigDict, dataset, width: float) -> dict:
  """The `params` tree (shapes only) of the config's network at `width` for `dataset` (its image shape, classes)."""
  model = resnet.from_config(config.model, dataset.num_classes, width)
  images = np.zeros((1, *dataset.image_shape), np.uint8)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]


def dense_count(params) -> int:
  """Trainable parameters of a dense model: every entry of every leaf."""
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def ticket_count(config: ml_collections.ConfigDict, sparsity: float, dataset) -> int:
  """Trainable parameters a ticket at `sparsity` of the config's network keeps nonzero: its non-prunable parameters
  plus the prunable weights that `masks.prune` keeps by the config's rule (per layer for layerwise_magnitude, over
  all prunable weights otherwise; random keeps global magnitude's counts, IMP's last round a one-shot's)."""
  lottery = config.lottery
  params = param_shapes(config, dataset, config.model.width_multiplier)
  is_prunable = masks.prunable_predicate(lottery.prunable, lottery.keep_first_conv, lottery.keep_classifier)
  sizes = [m.size for m in jax.tree.leaves(masks.dense_mask(params, is_prunable)) if np.ndim(m)]
  if lottery.rule == "layerwise_magnitude":
    pruned = sum(masks.target_pruned(n, sparsity) for n in sizes)
  else:
    pruned = masks.target_pruned(sum(sizes), sparsity)
  return dense_count(params) - pruned


def _stages(config: ml_collections.ConfigDict) -> int:
  return len(resnet.ARCHITECTURES[config.model.name]["stage_sizes"])


def width_grid(config: ml_collections.ConfigDict) -> int:
  """Widths searched are multiples of 1 / width_grid: a quarter of a last-stage channel at width 1."""
  return 4 * resnet.stage_channels(1.0, _stages(config))[-1]


def matched_width(config: ml_collections.ConfigDict, sparsity: float, dataset=None, tolerance: float = 0.02) -> float:
  """The width multiplier whose dense model's parameter count is closest to what the config's ticket at `sparsity`
  keeps (the narrower one on a tie); a ConfigError if it is off by more than `tolerance` (relative to the ticket's).

  `dataset` (anything with `image_shape` and `num_classes`) is loaded from config.data when not given.
  """
  dataset = load_dataset(config.data) if dataset is None else dataset
  target = ticket_count(config, sparsity, dataset)
  grid, stages = width_grid(config), _stages(config)
  counts = {}  # stage channels -> parameter count: many widths of the grid build the same network

  def count(step: int) -> int:
    channels = resnet.stage_channels(step / grid, stages)
    if channels not in counts:
      counts[channels] = dense_count(param_shapes(config, dataset, step / grid))
    return counts[channels]

  # The reference network has at least the ticket's count, so the first width reaching it is at most the reference's;
  # the closest is that one or the one below.
  last = math.ceil(config.model.width_multiplier * grid)
  reaching = bisect.bisect_left(range(1, last + 1), target, key=count) + 1
  step = min((s for s in (reaching - 1, reaching) if s >= 1), key=lambda s: abs(count(s) - target))
  error = abs(count(step) - target) / target
  if error > tolerance:
    raise errors.ConfigError(
        f"no width of {config.model.name} matches the ticket at sparsity {sparsity}: it keeps {target:,} weights, "
        f"the closest dense model (width {step / grid}, stage channels {resnet.stage_channels(step / grid, stages)}) "
        f"has {count(step):,}, {error:.2%} off (tolerance {tolerance:.2%})")
  return step / grid


def narrow_config(config: ml_collections.ConfigDict, sparsity: float, dataset=None,
                  tolerance: float = 0.02) -> ml_collections.ConfigDict:
  """A copy of `config` whose network is the narrow dense control of its ticket at `sparsity`, for its own run."""
  narrow = config.copy_and_resolve_references()
  narrow.model.width_multiplier = matched_width(config, sparsity, dataset, tolerance)
  narrow.controls.narrow_of_sparsity = masks.check_sparsity(sparsity, "controls.narrow_of_sparsity")
  return narrow


def _validate(config: ml_collections.ConfigDict) -> None:
  masks.check_sparsity(config.controls.narrow_of_sparsity, "controls.narrow_of_sparsity")


config_sections.register("controls", "runs that control a ticket at equal capacity (lottery/narrow.py)", {
    "narrow_of_sparsity": (0.0, "this run's network is the narrow dense control of the reference's ticket at this "
                                "sparsity (model.width_multiplier from narrow.matched_width; 0: not a control)"),
}, validate=_validate)
