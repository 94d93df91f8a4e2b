"""ADMM weight pruning with per-layer cardinality constraints (Zhang et al., ECCV 2018 "ADMM-NN"), the solver that
../shared/papers/pruning-against-mia.spec.md (1.2) reconstructs for Wang et al.'s MIA-Pruning (IJCAI 2021).

    minimise f(W)  subject to  card(W_i) <= k_i  for every prunable layer i   (or sum_i card(W_i) <= k: global)

is split with auxiliary Z (the constraint's copy of W) and scaled duals U, both shaped like the prunable weights:

    W-step   SGD on  f(W) + rho/2 * sum_i ||W_i - Z_i + U_i||^2        (every step, the penalty inside the jitted step)
    Z-step   Z = Proj(W + U): keep the k_i entries of largest magnitude  (at the end of every round)
    U-step   U = U + W - Z;  rho = rho * growth                         (at the end of every round)

The ADMM state lives in `TrainState.extra["admm"]` (checkpointed with the train state, so a killed run resumes
mid-round exactly), and the projection is `lottery.masks.keep_largest`, the jnp twin of the tickets' magnitude rule:
k_i = n_i - round(s * n_i) per layer (layerwise_magnitude) or round(s * n) pruned over all layers together
(global_magnitude), ties broken by position, so ADMM's Z holds exactly the ticket's counts. Z0 = Proj(W0) is made by
`masks.prune` itself (the tickets' code) on the trained dense weights W0; U0 = 0.
"""
import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax import errors
from mialth_jax.lottery import masks

RULES = ("layerwise_magnitude", "global_magnitude")  # the constraint sets ADMM can project onto


def init_state(params, mask, sparsity: float, rule: str, *, rho: float, growth: float, round_steps: int,
               first_step: int) -> dict:
  """The ADMM state at the start of the W-phase, from the starting weights `params` (numpy) and the dense `mask`."""
  if rule not in RULES:
    raise errors.ConfigError(f"defences.rule={rule!r} is unknown; expected one of {', '.join(RULES)}")
  keep = masks.prune(params, mask, sparsity, rule)
  weights = [np.asarray(w) for w in masks.prunable_leaves(params, mask)]
  kept = [np.asarray(k) for k in masks.prunable_leaves(keep, mask)]
  pruned = np.array([k.size - k.sum() for k in kept], np.int32)
  return {"z": [np.where(k, w, np.zeros((), w.dtype)) for w, k in zip(weights, kept)],
          "u": [np.zeros_like(w) for w in weights],
          "pruned": pruned if rule == "layerwise_magnitude" else np.int32(pruned.sum()),
          "rho": np.float32(rho), "growth": np.float32(growth), "round_steps": np.int32(round_steps),
          "first_step": np.int32(first_step)}


def proximal_term(state: dict, weights: list) -> jax.Array:
  """rho/2 * sum_i ||W_i - Z_i + U_i||^2 over the prunable weights (the W-step's addition to the loss)."""
  squares = [jnp.sum(jnp.square(w - z + u)) for w, z, u in zip(weights, state["z"], state["u"])]
  return 0.5 * state["rho"] * jnp.sum(jnp.stack(squares))


def project(state: dict, weights: list) -> list:
  """Proj(W + U) onto the constraint set: W + U with all but the k_i largest magnitudes of each layer set to 0."""
  targets = [w + u for w, u in zip(weights, state["u"])]
  keep = masks.keep_largest([jnp.abs(t) for t in targets], state["pruned"])
  return [jnp.where(k, t, jnp.zeros((), t.dtype)) for k, t in zip(keep, targets)]


def after_step(state: dict, weights: list, done: jax.Array) -> dict:
  """The Z- and U-steps and the rho increase when step `done` ends a round; the state unchanged otherwise."""
  def round_end(state):
    z = project(state, weights)
    u = [u + w - zi for u, w, zi in zip(state["u"], weights, z)]
    return {**state, "z": z, "u": u, "rho": state["rho"] * state["growth"]}
  at_end = (done - state["first_step"]) % state["round_steps"] == 0
  return jax.lax.cond(at_end, round_end, lambda s: s, state)

