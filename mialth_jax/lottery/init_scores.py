"""The saliency scores of pruning at initialisation, as pure functions of a network's parameters (pytrees).

  snip_scores(loss, params)              |g * w|, g = dL/dw: the connection sensitivity of Lee et al. 2019 (SNIP),
                                         dL/dc at c = 1 for the network with weights c * w (its normalisation by the
                                         sum does not change the ranking); the lowest are pruned
  grasp_scores(loss, params)             -w * (H g), H the Hessian of L: Wang et al. 2020 (GraSP); the HIGHEST are
                                         pruned (removing them reduces the gradient flow least), as in the paper
  synflow_scores(apply, params, inputs)  dR/dw * w on the network with |w| everywhere, R = the sum of its output on
                                         `inputs` (all ones): Tanaka et al. 2020 (SynFlow), data-free
  synflow_mask(score_of, mask, ...)      SynFlow's iterative pruning: `rounds` rounds, the density after round r
                                         d^(r / rounds) (the paper's exponential schedule), the last exactly d

Scores are trees parallel to `params`; masks.prune_by_scores keeps the highest.
"""
import jax
import jax.numpy as jnp

from mialth_jax.lottery import masks


def snip_scores(loss_fn, params):
  """|dL/dw * w| of every parameter."""
  grads = jax.grad(loss_fn)(params)
  return jax.tree.map(lambda g, w: jnp.abs(g * w), grads, params)


def hessian_gradient(loss_fn, params):
  """H g, g = dL/dw: forward-mode derivative of the gradient along g (the Hessian is never formed)."""
  grad_fn = jax.grad(loss_fn)
  return jax.jvp(grad_fn, (params,), (grad_fn(params),))[1]


def grasp_scores(loss_fn, params):
  """-w * (H g) of every parameter."""
  return jax.tree.map(lambda w, hg: -w * hg, params, hessian_gradient(loss_fn, params))


def synflow_scores(apply_fn, params, inputs):
  """|dR/dw * w| at |w|, R = sum(apply_fn(|params|, inputs)): the synaptic flow through each weight."""
  positive = jax.tree.map(jnp.abs, params)
  grads = jax.grad(lambda p: jnp.sum(apply_fn(p, inputs)))(positive)
  return jax.tree.map(lambda g, w: jnp.abs(g * w), grads, positive)


def round_sparsities(sparsity: float, rounds: int) -> list[float]:
  """The sparsity after each SynFlow round: 1 - d^(r / rounds) for density d = 1 - sparsity, the last `sparsity`
  itself (1 - (1 - s) may differ from s in the last bit, which could move round(s * n) by one)."""
  return [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds)] + [sparsity]


def synflow_mask(score_of, mask, sparsity: float, scope: str, rounds: int):
  """`mask` pruned to `sparsity` in `rounds` rounds, each scoring the network masked by the previous round's mask
  (`score_of(mask)` -> a tree of scores) and pruning the lowest (masks.prune_by_scores: the masks nest)."""
  for round_sparsity in round_sparsities(sparsity, rounds):
    mask = masks.prune_by_scores(jax.device_get(score_of(mask)), mask, round_sparsity, scope)
  return mask
