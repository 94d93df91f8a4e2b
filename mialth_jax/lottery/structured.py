"""Structured pruning rules for trained weights (`lottery.rule`): whole output channels, and N:M sparsity.

channel_l1 (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): each convolution kernel (HWIO) loses the
round(s * O) of its O output channels (filters) with the smallest L1 norm sum |w[..., o]| (masks.target_pruned's
rounding; ties by position), so "sparsity s" is a share of each layer's filters, as Li et al. prune each layer by a
share of its own. The weight sparsity that results, sum_l round(s O_l) k_l / n (k_l: the weights of one filter of
layer l, n: all prunable weights), is what the run's summary reports; it differs from s by that rounding and because
2-D kernels stay as they are (the classifier's output channels are the classes). The network keeps its shape: a
pruned filter's kernel is zero, but its BatchNorm offset is not pruned, so the channel carries a learned constant
(Li et al. remove that BatchNorm with the filter), and the next layer's weights reading it are not pruned.

nm[:N:M] (2:4 by default, the pattern of NVIDIA's sparse tensor cores): in every group of M consecutive weights along
a kernel's input axis (I of a convolution's HWIO, `in` of a Dense kernel [in, out]: the second-to-last axis of both)
the N largest |w| are kept (ties by position), so each layer loses exactly 1 - N/M of its weights. A kernel whose
input axis is not a multiple of M (the first convolution of a 1- or 3-channel image) is left as it is, as NVIDIA's
ASP leaves such layers dense; the summary's sparsity is then a little below 1 - N/M.

Both rank weights that the current mask already prunes first, so pruned weights stay pruned (IMP rounds nest).

Each is also a pruning method of its own (a one-shot ticket: the trained dense model pruned by the rule, rewound as
tickets are), so that it runs beside the magnitude tickets in one run and is repeated by the zoo: lottery.method or
lottery.controls `channel` (models channel_s<p>, at lottery.structured.channel_sparsities, empty: lottery.sparsities)
and `nm` (one model nm<N>of<M>_s<p> at its one sparsity 1 - N/M, the pattern lottery.structured.nm).
"""
import functools
import re

import ml_collections
import numpy as np

from mialth_jax import errors, run_dir
from mialth_jax.lottery import masks, recipes
from mialth_jax.utils import config_sections


def _channel_l1(weights, old, sparsity, seed):
  """Keep masks that prune round(s * O) whole output channels of every 4-D (convolution) kernel by L1 norm."""
  del seed
  convolutions = [i for i, w in enumerate(weights) if np.ndim(w) == 4]
  norms = [np.abs(np.where(old[i], weights[i], 0)).astype(np.float64).sum(axis=(0, 1, 2)) for i in convolutions]
  alive = [np.any(old[i], axis=(0, 1, 2)) for i in convolutions]  # a filter pruned before ranks first
  kept_channels = dict(zip(convolutions, masks.keep_highest(norms, alive, sparsity, "layerwise")))
  return [np.asarray(m, bool) & kept_channels[i] if i in kept_channels else np.asarray(m, bool)
          for i, m in enumerate(old)]


def _nm_select(n: int, m: int, weights, old, sparsity, seed):
  """Keep masks with the N largest |w| of every M consecutive weights along each kernel's second-to-last axis."""
  del sparsity, seed
  return [_nm_layer(n, m, w, np.asarray(keep, bool)) if np.shape(w)[-2] % m == 0 else np.asarray(keep, bool)
          for w, keep in zip(weights, old)]


def _nm_layer(n: int, m: int, w: np.ndarray, keep: np.ndarray) -> np.ndarray:
  scores = np.moveaxis(np.where(keep, np.abs(w).astype(np.float64), -np.inf), -2, -1)  # [..., O, I]
  groups = scores.reshape(*scores.shape[:-1], scores.shape[-1] // m, m)
  lowest = np.argsort(groups, axis=-1, kind="stable")[..., :m - n]
  pruned = np.zeros(groups.shape, bool)
  np.put_along_axis(pruned, lowest, True, axis=-1)
  return keep & np.moveaxis(~pruned.reshape(scores.shape), -1, -2)


def nm_pattern(pattern: str, field: str) -> tuple[int, int]:
  """(N, M) of "N:M"; a malformed pattern or one without 0 < N < M raises naming `field`."""
  match = re.fullmatch(r"(\d+):(\d+)", pattern)
  if not match:
    raise errors.ConfigError(f"{field}='nm:{pattern}' is malformed; expected nm:N:M with whole numbers, e.g. nm:2:4")
  n, m = int(match.group(1)), int(match.group(2))
  if not 0 < n < m:
    raise errors.ConfigError(f"{field}='nm:{pattern}': N:M keeps N of every M weights and needs 0 < N < M")
  return n, m


def _nm(argument: str | None, field: str) -> masks.Rule:
  """The N:M rule of `argument` ("N:M"; None: 2:4), pruning exactly 1 - N/M."""
  n, m = nm_pattern("2:4" if argument is None else argument, field)
  return masks.Rule(functools.partial(_nm_select, n, m), sparsity=1.0 - n / m)


masks.RULES.register("channel_l1", masks.Rule(_channel_l1),
                     about="whole conv output channels by L1 norm, round(s * channels) per layer")
masks.RULES.register("nm", _nm, about="nm:N:M keeps the N largest |w| of every M along the input axis, nm = nm:2:4; "
                                      "needs lottery.sparsities=(1 - N/M,)")


@recipes.RECIPES.register("channel")
class ChannelTicket(recipes.Pruned):
  title = "channel ticket: whole filters by L1 norm (Li et al. 2017)"

  def plan(self, config, planned):
    if not recipes.selected(config, "channel"):
      return []
    sparsities = config.lottery.structured.channel_sparsities or config.lottery.sparsities
    return [recipes.ModelSpec(f"channel_{recipes.sparsity_tag(s)}", "channel", s, "dense", "channel_l1")
            for s in sparsities]


@recipes.RECIPES.register("nm")
class NMTicket(recipes.Pruned):
  title = "N:M ticket (2:4: NVIDIA's sparse tensor cores)"

  def plan(self, config, planned):
    if not recipes.selected(config, "nm"):
      return []
    pattern = config.lottery.structured.nm
    n, m = nm_pattern(pattern, "lottery.structured.nm")
    sparsity = 1.0 - n / m  # what the rule nm:N:M prunes (`_nm`)
    return [recipes.ModelSpec(f"nm{n}of{m}_{recipes.sparsity_tag(sparsity)}", "nm", sparsity, "dense",
                              f"nm:{pattern}")]


recipes.METHOD_RECIPES.register("channel", "channel", about="one-shot ticket of whole filters by L1 norm, Li et al. "
                                                           "2017")
recipes.METHOD_RECIPES.register("nm", "nm", about="one-shot N:M ticket, lottery.structured.nm")


def _validate(config: ml_collections.ConfigDict) -> None:
  settings, lottery = config.lottery.structured, config.lottery
  nm_pattern(str(settings.nm), "lottery.structured.nm")
  for s in settings.channel_sparsities:
    masks.check_sparsity(s, "lottery.structured.channel_sparsities")
  if lottery.method in ("channel", "nm") and lottery.rule != "global_magnitude":
    raise errors.ConfigError(f"lottery.rule={lottery.rule!r}: lottery.method={lottery.method} prunes by its own rule "
                             "(lottery.structured); leave lottery.rule at global_magnitude")


# channel_s<p> and nm<N>of<M>_s<p> name their settings: other values add models beside those a run holds
run_dir.register_additive("lottery.structured.channel_sparsities", "lottery.structured.nm")
config_sections.register("lottery.structured", "the channel and nm pruning methods (lottery/structured.py)", {
    "channel_sparsities": ((), "channel: the share of each convolution's filters pruned (empty: lottery.sparsities)"),
    "nm": ("2:4", "nm: N:M, the N largest |w| of every M along the input axis kept (the one sparsity 1 - N/M)"),
}, validate=_validate)
