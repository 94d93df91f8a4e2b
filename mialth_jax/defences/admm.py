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

The recipes: `admm` plans admm_train_s80 (the W-phase from the trained dense model, its mask dense, with Z, U and rho
in the `admm` step hook's slot of the train state), admm_hard_s80 (admm_train_s80's final weights hard-pruned by
magnitude, not trained: the spec's attack right after the hard prune) and admm_s80 (the same mask, fine-tuned:
MIA-Pruning). admm_s80 records how its mask differs from dense's one-shot magnitude mask (MASK_CHANGE): at a large rho
the W-phase holds W at Z0 and the two masks agree. Settings: config.defences.admm.
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax import errors
from mialth_jax.defences import phase
from mialth_jax.lottery import masks, recipes, step_hooks
from mialth_jax.utils import config_sections, io

ModelSpec, tag = recipes.ModelSpec, recipes.sparsity_tag
MASK_CHANGE = "mask_change.json"  # models/<name>/: the kept weights where its mask differs from dense's magnitude mask


def init_state(params, mask, sparsity: float, rule: str, *, rho: float, growth: float, round_steps: int,
               first_step: int) -> dict:
  """The ADMM state at the start of the W-phase, from the starting weights `params` (numpy) and the dense `mask`."""
  if rule not in phase.RULES:
    raise errors.ConfigError(f"defences.rule={rule!r} is unknown; expected one of {', '.join(phase.RULES)}")
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


def _loss_term(state: dict, params, logits, batch: step_hooks.StepBatch) -> jax.Array:
  del logits
  return proximal_term(state, masks.prunable_leaves(params, batch.state.mask))


def _after(state: dict, new_state, batch: step_hooks.StepBatch) -> dict:
  return after_step(state, masks.prunable_leaves(new_state.params, batch.state.mask), batch.state.step + 1)


# After Min-Max's privacy term in the loss (order 10): the sum's order is the one the defences were measured with.
step_hooks.STEP_HOOKS.register("admm", step_hooks.StepHook(order=20, loss_term=_loss_term, after=_after))
phase.RECORDED["admm"] = lambda state: {k: state[k] for k in ("rho", "growth", "round_steps", "first_step", "pruned")}


def round_steps(ctx) -> int:
  settings = ctx.config.defences.admm
  rounds, per_round = settings.rounds, phase.phase_steps(ctx, settings.fraction / settings.rounds)
  if rounds * per_round > ctx.total_steps:
    raise errors.ConfigError(f"defences.admm.rounds={rounds}: more rounds than the run's {ctx.total_steps} train "
                             "steps; lower it or train longer")
  return per_round


@recipes.RECIPES.register("admm_train")
class AdmmTrain(phase.Defence, recipes.FromTrained):
  """ADMM's W-phase (planned by `admm`): the trained dense model, its mask dense, with Z, U and rho in extra."""
  title = "ADMM W-phase, before hard pruning"

  def first_step(self, ctx, spec):
    return ctx.total_steps - ctx.config.defences.admm.rounds * round_steps(ctx)

  def state(self, ctx, spec):
    settings = ctx.config.defences.admm
    params = jax.device_get(self.start(ctx, spec)["params"])
    return {**super().state(ctx, spec),
            "admm": init_state(params, ctx.dense_mask(), spec.option("sparsity"), spec.rule, rho=settings.rho,
                               growth=settings.rho_growth, round_steps=round_steps(ctx),
                               first_step=self.first_step(ctx, spec))}


@recipes.RECIPES.register("admm_hard")
class AdmmHard(phase.FineTuned):
  """admm_train's final weights hard-pruned by magnitude and not trained (planned by `admm`): it starts at the run's
  last step, so its weights are the W-phase's end with the mask applied and its batch statistics the W-phase's."""
  title = "ADMM, hard-pruned, before fine-tuning"

  def first_step(self, ctx, spec):
    return ctx.total_steps


def mask_change(ctx, spec: ModelSpec, mask) -> dict:
  """The kept weights of `mask` that one-shot magnitude pruning of dense at the same sparsity and rule prunes (the
  tickets' mask where lottery.rule is the same), per layer and in total (masks.kept_difference)."""
  magnitude = recipes.pruned_mask(ctx, dataclasses.replace(spec, mask_from="dense"), ctx.dense_mask())
  return {"reference": "dense", "sparsity": spec.sparsity, "rule": spec.rule, **masks.kept_difference(mask, magnitude)}


@recipes.RECIPES.register("admm")
class Admm(phase.FineTuned):
  """The ADMM-pruned model: admm_train's final weights hard-pruned by magnitude, then fine-tuned (MIA-Pruning)."""
  title = "ADMM pruning"

  def plan(self, config, planned):
    return [spec for s in phase.sparsities(config) for spec in phases("admm", s, config.defences.rule)]

  def mask(self, ctx, spec):
    """The hard prune's mask; its change against dense's magnitude mask is written beside it the first time."""
    mask = super().mask(ctx, spec)
    path = ctx.layout.path("models", spec.name, MASK_CHANGE)
    if not os.path.exists(path) and jax.process_index() == 0:
      io.write_json(path, mask_change(ctx, spec, mask))
    return mask


def phases(kind: str, sparsity: float, rule: str, suffix: str = "", options: tuple = ()) -> list[ModelSpec]:
  """The W-phase model `<kind>_train_s80<suffix>` (from trained dense, its mask dense), the model hard-pruned from it,
  `<kind>_hard_s80<suffix>`, and the same fine-tuned, `<kind>_s80<suffix>`; `options` go to all three, the sparsity
  to the W-phase's as an option."""
  train, name = f"{kind}_train_{tag(sparsity)}{suffix}", f"{tag(sparsity)}{suffix}"
  return [ModelSpec(train, f"{kind}_train", 0.0, "dense", rule, "trained", (*options, ("sparsity", sparsity))),
          ModelSpec(f"{kind}_hard_{name}", f"{kind}_hard", sparsity, train, rule, "trained", options),
          ModelSpec(f"{kind}_{name}", kind, sparsity, train, rule, "trained", options)]


def _validate(config) -> None:
  a, check = config.defences.admm, phase.check
  phase.check_fraction(config, "admm")
  check(isinstance(a.rounds, int) and a.rounds >= 1, "admm.rounds", a.rounds, "an integer >= 1")
  check(phase.is_number(a.rho) and a.rho >= 0, "admm.rho", a.rho, "a penalty >= 0")
  check(phase.is_number(a.rho_growth) and a.rho_growth >= 1, "admm.rho_growth", a.rho_growth,
        "a factor >= 1 (rho never shrinks)")


config_sections.register("defences.admm", "ADMM pruning (admm, admm_minmax)", {
    "rounds": (3, "ADMM rounds (Z- and U-steps), splitting the W-phase evenly"),
    "fraction": (0.5, "the W-phase: the last half of the run's steps, from the trained dense model"),
    "rho": (1e-3, "initial penalty rho (the spec's 1e-3; 1.0 with rho_growth 2 pulls W onto dense's magnitude "
                  "mask: docs/defences.md)"),
    "rho_growth": (1.5, "rho *= rho_growth after every round (the spec's x1.5)"),
}, validate=_validate)
