"""Masks as pytrees parallel to the parameters, and the pruning rules that make them.

A mask has the parameters' tree structure. Prunable leaves hold a bool array of the leaf's shape; every other leaf
(BatchNorm scales and biases, the classifier bias, anything the config excludes) holds a scalar `True`, which
broadcasts, so one `jax.tree.map` applies a mask without special cases.

Pruning ranks weights by raw magnitude |w| (the paper, Frankle & Carbin, open_lth), not by layer-normalised scores.
"Prune p" removes exactly round(p * n) weights of the n prunable ones. Ties are broken by position: weights are
ranked by (|w|, flat index in a fixed leaf order), so the same weights always give the same mask.

A rule is one registration in `RULES`: a `Rule`, or for a rule that takes an argument (`lottery.rule="name:argument"`)
a function (argument, field) -> Rule. Rules that rank other scores than |w| reuse `keep_highest`.
"""
import dataclasses
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax import errors
from mialth_jax.utils.registry import Registry

SCOPES = ("global", "layerwise")


@dataclasses.dataclass(frozen=True)
class Rule:
  """How `prune` picks the weights to remove: select(weights, masks, sparsity, seed) -> the new keep masks, each a
  bool array of its leaf's size, given the prunable leaves' weights and current masks (numpy, in leaf order)."""
  select: Callable
  sparsity: float | None = None  # the one sparsity the rule prunes to (set by its argument), None: any


RULES = Registry("pruning rule")  # name -> Rule, or fn(argument: str | None, field) -> Rule for a rule with one


def path_name(path) -> str:
  """'stage1_block0/conv1/kernel' for a jax key path."""
  return "/".join(str(getattr(k, "key", k)) for k in path)


def prunable_predicate(prunable: str, keep_first_conv: bool = False, keep_classifier: bool = False):
  """Returns `is_prunable(name, leaf)`: matches the regex, is at least 2-D, and is not excluded."""
  try:
    pattern = re.compile(prunable)
  except re.error as e:
    raise errors.ConfigError(f"lottery.prunable={prunable!r} is not a valid regex ({e})") from e
  excluded = ([r"^stem_conv/"] if keep_first_conv else []) + ([r"^head/"] if keep_classifier else [])

  def is_prunable(name: str, leaf) -> bool:
    return (pattern.search(name) is not None and np.ndim(leaf) >= 2
            and not any(re.search(e, name) for e in excluded))
  return is_prunable


def dense_mask(params, is_prunable):
  """The all-ones mask: bool ones on prunable leaves, scalar True elsewhere."""
  def leaf_mask(path, leaf):
    if is_prunable(path_name(path), leaf):
      return np.ones(np.shape(leaf), dtype=bool)
    return np.ones((), dtype=bool)
  mask = jax.tree_util.tree_map_with_path(leaf_mask, params)
  if not any(np.ndim(m) for m in jax.tree.leaves(mask)):
    raise errors.ConfigError("lottery.prunable matches no parameter: nothing could be pruned")
  return mask


def apply_mask(tree, mask):
  """Zeroes masked entries exactly (where, not multiply: no -0.0, and NaN*0 cannot leak)."""
  return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros((), x.dtype)), tree, mask)


def _prunable_leaves(params, mask):
  """(path, weights, mask) of prunable leaves as numpy, in the tree's fixed leaf order."""
  flat_params = jax.tree_util.tree_leaves_with_path(params)
  flat_mask = jax.tree.leaves(mask)
  return [(path, np.asarray(w), np.asarray(m)) for (path, w), m in zip(flat_params, flat_mask) if np.ndim(m)]


def _lowest(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k smallest scores, ties broken by index (a stable sort keeps index order)."""
  return np.argsort(scores, kind="stable")[:k]


def check_sparsity(sparsity, field: str = "sparsity") -> float:
  """`sparsity` as a float in [0, 1); anything else raises naming `field`."""
  if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
    raise errors.ConfigError(f"{field}: {sparsity!r} is not a number in [0, 1)")
  if not 0.0 <= sparsity < 1.0:
    raise errors.ConfigError(f"{field}: {sparsity!r} is outside [0, 1)")
  return float(sparsity)


def target_pruned(n: int, sparsity: float) -> int:
  """How many of `n` weights "prune `sparsity`" removes: round(sparsity * n), Python's round (half to even)."""
  return int(round(check_sparsity(sparsity) * n))


def keep_highest(scores: list, old: list, sparsity: float, scope: str = "global") -> list[np.ndarray]:
  """Flat keep masks that prune the lowest `scores` (one array per prunable leaf) to total sparsity `sparsity`:
  round(s * n) of all n weights (scope global) or round(s * n_l) of each leaf's n_l (layerwise). Weights that the
  masks `old` already prune rank below every score, so they stay pruned (masks nest across calls); ties by position."""
  ranked = [np.where(np.ravel(m), np.ravel(s).astype(np.float64), -np.inf) for s, m in zip(scores, old)]
  if scope == "layerwise":
    return [_layer_mask(s, target_pruned(s.size, sparsity)) for s in ranked]
  return _global_masks(ranked, target_pruned(sum(s.size for s in ranked), sparsity))


def _rebuild(mask, new_leaf_masks):
  """Puts new prunable-leaf masks back into the mask tree."""
  leaves, treedef = jax.tree.flatten(mask)
  it = iter(new_leaf_masks)
  return jax.tree.unflatten(treedef, [next(it) if np.ndim(m) else m for m in leaves])


def resolve_rule(name: str, field: str = "lottery.rule") -> Rule:
  """The rule `name` gives ("global_magnitude", or "name:argument" for a rule with one); an unknown name or a bad
  argument raises naming `field`."""
  base, colon, argument = str(name).partition(":")
  if base not in RULES:
    raise errors.ConfigError(f"{field}={name!r} is unknown; expected one of {', '.join(RULES)}")
  entry = RULES[base]
  if not isinstance(entry, Rule):
    return entry(argument if colon else None, field)
  if colon:
    raise errors.ConfigError(f"{field}={name!r}: the rule {base} takes no ':' argument")
  return entry


def prune(params, mask, sparsity: float, rule: str, seed: int = 0):
  """Returns a new mask with total sparsity `sparsity` over prunable weights by the rule named `rule` (`RULES`);
  already-pruned weights stay pruned."""
  chosen = resolve_rule(rule)
  if chosen.sparsity is not None and sparsity != chosen.sparsity:
    raise errors.ConfigError(f"lottery.rule={rule!r} prunes exactly {chosen.sparsity!r}, not {sparsity!r}")
  leaves = _prunable_leaves(params, mask)
  new = chosen.select([w for _, w, _ in leaves], [m for _, _, m in leaves], sparsity, seed)
  return _rebuild(mask, [np.reshape(n, w.shape) for n, (_, w, _) in zip(new, leaves)])


def prune_by_scores(scores, mask, sparsity: float, scope: str):
  """`mask` pruned further to `sparsity` by `keep_highest` on `scores`, a tree parallel to the parameters."""
  leaves = _prunable_leaves(scores, mask)
  new = keep_highest([s for _, s, _ in leaves], [m for _, _, m in leaves], sparsity, scope)
  return _rebuild(mask, [np.reshape(n, s.shape) for n, (_, s, _) in zip(new, leaves)])


def _magnitude(scope: str) -> Callable:
  """The rule that prunes the smallest |w|: round(s*n) across all prunable layers (global) or round(s*n_l) in each
  layer l (layerwise)."""
  return lambda weights, old, sparsity, seed: keep_highest([np.abs(w) for w in weights], old, sparsity, scope)


def _random(weights, old, sparsity, seed):
  """The per-layer counts global_magnitude would give, positions drawn at random (the standard control for "does the
  magnitude ranking matter")."""
  return _random_like(_magnitude("global")(weights, old, sparsity, seed), [np.ravel(m) for m in old], seed)


RULES.register("global_magnitude", Rule(_magnitude("global")))
RULES.register("layerwise_magnitude", Rule(_magnitude("layerwise")))
RULES.register("random", Rule(_random))


def _layer_mask(scores: np.ndarray, k: int) -> np.ndarray:
  keep = np.ones(scores.size, dtype=bool)
  keep[_lowest(scores, k)] = False
  return keep


def _global_masks(scores: list[np.ndarray], k: int) -> list[np.ndarray]:
  keep = _layer_mask(np.concatenate(scores), k)
  return np.split(keep, np.cumsum([s.size for s in scores])[:-1])


def _random_like(magnitude_masks, old_masks, seed: int) -> list[np.ndarray]:
  """Per layer, prunes as many weights as `magnitude_masks` does, at random among the current survivors."""
  rng = np.random.default_rng([seed, 0xD1CE])
  out = []
  for new, old in zip(magnitude_masks, old_masks):
    keep = old.copy()
    survivors = np.flatnonzero(old)
    extra = int(old.sum() - new.sum())
    keep[rng.choice(survivors, size=extra, replace=False)] = False
    out.append(keep)
  return out


def prunable_leaves(tree, mask) -> list:
  """The leaves of `tree` (params, gradients, numpy or traced) at the mask's prunable positions, in leaf order."""
  return [x for x, m in zip(jax.tree.leaves(tree), jax.tree.leaves(mask)) if np.ndim(m)]


def keep_largest(scores: list, pruned: jax.Array) -> list:
  """`prune`'s magnitude rule in jnp, for use inside jit (ADMM's projection): keep masks that drop the `pruned`
  smallest scores of each leaf (`pruned` int [L], layerwise) or of all leaves together (`pruned` int [], global).

  One stable sort of every score keyed by (leaf, score) ranks each score within its leaf (or within all of them), ties
  by position exactly as `_lowest` breaks them, so on the same |w| it returns the masks `prune` returns.
  """
  sizes = [int(np.size(s)) for s in scores]
  flat = jnp.concatenate([jnp.ravel(s) for s in scores])
  # Computed at run time: XLA would otherwise spend minutes folding weight-sized constants out of the iota.
  position = jax.lax.optimization_barrier(jnp.arange(flat.size, dtype=jnp.int32))
  if jnp.ndim(pruned):
    starts = jnp.asarray(np.cumsum([0, *sizes[:-1]]), jnp.int32)
    segment = (jnp.searchsorted(starts, position, side="right") - 1).astype(jnp.int32)
  else:
    segment, starts, pruned = jnp.zeros_like(position), jnp.zeros(1, jnp.int32), jnp.reshape(pruned, (1,))
  _, _, order = jax.lax.sort((segment, flat, position), num_keys=2, is_stable=True)
  rank = jnp.zeros_like(position).at[order].set(position) - starts[segment]
  keep = rank >= pruned[segment]
  return [k.reshape(jnp.shape(s)) for k, s in zip(jnp.split(keep, np.cumsum(sizes)[:-1].tolist()), scores)]


def imp_sparsity(fraction: float, rounds: int) -> float:
  """Sparsity after `rounds` of pruning `fraction` of the survivors: 1 - (1 - f)^L."""
  return 1.0 - (1.0 - fraction) ** rounds


def sparsity_report(mask) -> dict:
  """Per-layer and total counts of prunable weights, as JSON-able numbers."""
  layers = {}
  for path, m in jax.tree_util.tree_leaves_with_path(mask):
    if np.ndim(m):
      m = np.asarray(m)
      layers[path_name(path)] = {"total": int(m.size), "kept": int(m.sum()), "pruned": int(m.size - m.sum()),
                                 "sparsity": float(1 - m.sum() / m.size)}
  total = sum(v["total"] for v in layers.values())
  kept = sum(v["kept"] for v in layers.values())
  return {"total": total, "kept": kept, "pruned": total - kept, "sparsity": float(1 - kept / total),
          "layers": layers}


def kept_difference(mask, reference) -> dict:
  """Per-layer and total counts of the weights `mask` keeps that `reference` prunes ("differ"; where both keep as
  many per layer, as many the other way round, so the masks' XOR counts twice that), next to the weights `mask`
  keeps, as JSON-able numbers."""
  layers = {}
  for (path, m), r in zip(jax.tree_util.tree_leaves_with_path(mask), jax.tree.leaves(reference)):
    if np.ndim(m):
      m, r = np.asarray(m, bool), np.asarray(r, bool)
      layers[path_name(path)] = {"kept": int(m.sum()), "differ": int((m & ~r).sum())}
  return {"kept": sum(v["kept"] for v in layers.values()), "differ": sum(v["differ"] for v in layers.values()),
          "layers": layers}
