"""DP-SGD (Abadi et al., CCS 2016), the defence with a guarantee, through jax-privacy 2.0 and dp-accounting 0.6.

Each step trains on a Poisson batch (defences/dp_budget.py: sampling rate q = train.batch_size / N, truncated and
padded to one length; padding rows carry no gradient). Per-example gradients are clipped to L2 norm `clip_norm` and
summed (`jax_privacy.clipped_grad`), Gaussian noise of std noise_multiplier x clip_norm is added to the sum
(jax-privacy's `gaussian_privatizer`, keyed by the step's key), and the result is divided by the expected batch size
train.batch_size; the optimiser (momentum, weight decay, the learning-rate schedule) and the mask only post-process
it. The guarantee, (epsilon, delta)-DP under add-or-remove-one adjacency for the run's actual sampling, truncation,
noise and steps, is dp-accounting's (dp_budget.py), written into every DP model's summary.json; given a target
epsilon, the noise multiplier is calibrated to it.

Models (lottery.controls): `dp` trains from w0 with DP-SGD, one model per target epsilon (`dp_eps8`) or per noise
multiplier (`dp_nm1.1`); `dp_ticket` prunes, rewinds to w0 (never to the late-rewind point, a non-private state) and
trains privately with its dp model's noise (`dp_ticket_s80_eps8`). Its mask comes from `ticket_from`: the private
model (the mask is post-processing, and the guarantee composes both trainings: a larger epsilon than the dp model's)
or the non-private dense model (the guarantee then covers the training given the mask, not the mask, which depends on
the members; summary.json says which). BatchNorm mixes the examples of a batch, so DP models need model.norm=group.
The noise and the batches are functions of the run's seed: the guarantee holds against an adversary who does not
know it.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax_privacy import clipping, noise_addition

from mialth_jax import errors
from mialth_jax.defences import dp_budget
from mialth_jax.lottery import masks, recipes, step_hooks
from mialth_jax.utils import config_sections, io

_NOISE_STREAM = 0xD96
DP_KINDS = ("dp", "dp_ticket")


def private_gradients(slot, objective, params, batch: step_hooks.StepBatch):
  """The `dp_sgd` step hook's gradients: clipped per example, summed, noised, divided by the expected batch size; the
  loss is the mean over the batch's real rows."""
  clipped = clipping.clipped_grad(objective, has_aux=True, l2_clip_norm=slot["clip_norm"], batch_argnums=(1, 2),
                                  return_values=True)
  padding = jnp.zeros(batch.labels.shape, bool) if batch.valid is None else ~batch.valid
  summed, aux = clipped(params, batch.inputs, batch.labels, is_padding_example=padding)
  stddev = slot["noise_multiplier"] * clipped.sensitivity(dp_budget.ADJACENCY)  # the clip norm
  privatizer = noise_addition.gaussian_privatizer(stddev=stddev, prng_key=jax.random.fold_in(batch.key, _NOISE_STREAM))
  noisy, _ = privatizer.update(summed, privatizer.init(params))
  real = (~padding).astype(jnp.float32)
  loss = jnp.sum(aux.values * real) / jnp.maximum(1.0, jnp.sum(real))
  logits, _ = aux.aux
  return (loss, (logits, batch.state.batch_stats)), jax.tree.map(lambda g: g / slot["expected_batch_size"], noisy)


step_hooks.STEP_HOOKS.register("dp_sgd", step_hooks.StepHook(gradients=private_gradients))


def budget_tag(budget: tuple) -> str:
  """`eps8` or `nm1.1`: what a DP model's name says of its budget."""
  (name, value), = budget
  return f"{'eps' if name == 'target_epsilon' else 'nm'}{value:g}"


def budgets(config) -> list[tuple]:
  """One budget per DP model: ((target_epsilon, e),) for each of `epsilons`, or ((noise_multiplier, z),)."""
  settings = config.defences.dp_sgd
  return ([(("target_epsilon", float(e)),) for e in settings.epsilons] or
          [(("noise_multiplier", float(z)),) for z in settings.noise_multipliers])


class Private(recipes.Recipe):
  """A model trained with the `dp_sgd` hook on Poisson batches, its guarantee in its summary.json."""

  def noise_multiplier(self, ctx, spec) -> float:
    options = dict(spec.options)
    if "noise_multiplier" in options:
      return options["noise_multiplier"]
    settings = ctx.config.defences.dp_sgd
    return dp_budget.calibrated_noise(dp_budget.sampling_of(ctx), ctx.total_steps, options["target_epsilon"],
                                      settings.delta)

  def earlier_phases(self, ctx, spec) -> tuple:
    """(noise multiplier, steps) of the private trainings this model's mask depends on."""
    return ()

  def check(self, ctx, spec):
    settings, sampling = ctx.config.defences.dp_sgd, dp_budget.sampling_of(ctx)
    if not settings.delta < 1 / sampling.members:
      raise errors.ConfigError(f"defences.dp_sgd.delta={settings.delta:g} must be below 1 / members = "
                               f"1/{sampling.members} = {1 / sampling.members:.3g}")
    if not ctx.config.train.batch_size <= sampling.max_batch_size <= sampling.members:
      raise errors.ConfigError(f"defences.dp_sgd.max_batch_size={sampling.max_batch_size} must lie between "
                               f"train.batch_size={ctx.config.train.batch_size} and the {sampling.members} members "
                               "(0: automatic)")

  def extra(self, ctx, spec):
    self.check(ctx, spec)  # again for a protocol's own copy of the run (its members), which trains without check
    return {"dp_sgd": {"clip_norm": np.float32(ctx.config.defences.dp_sgd.clip_norm),
                       "noise_multiplier": np.float32(self.noise_multiplier(ctx, spec)),
                       "expected_batch_size": np.float32(ctx.config.train.batch_size)}}

  def loop_overrides(self, ctx, spec):
    sampling = dp_budget.sampling_of(ctx)
    length = math.ceil(sampling.max_batch_size / ctx.mesh.size) * ctx.mesh.size
    return {"batch_selection": dp_budget.PoissonBatches(ctx.config.seed, sampling, length)}

  def summary(self, ctx, spec, steps):
    settings, sampling, noise = ctx.config.defences.dp_sgd, dp_budget.sampling_of(ctx), self.noise_multiplier(ctx, spec)
    phases = (*self.earlier_phases(ctx, spec), (noise, steps))
    return {"epsilon": dp_budget.epsilon(sampling, phases, settings.delta), "delta": settings.delta,
            "target_epsilon": dict(spec.options).get("target_epsilon"), "noise_multiplier": noise,
            "clip_norm": settings.clip_norm, "sampling_rate": sampling.sampling_rate,
            "expected_batch_size": ctx.config.train.batch_size, "max_batch_size": sampling.max_batch_size,
            "members": sampling.members, "private_steps": steps, "privacy_phases": [list(p) for p in phases],
            "accountant": dp_budget.ACCOUNTANT, "epsilon_covers": self.covers(spec)}

  def covers(self, spec) -> str:
    return "the weights"


@recipes.RECIPES.register("dp")
class DpSgd(Private):
  title = "DP-SGD"

  def plan(self, config, planned):
    return [recipes.ModelSpec(f"dp_{budget_tag(b)}", "dp", options=b) for b in budgets(config)]


@recipes.RECIPES.register("dp_ticket")
class DpTicket(Private):
  """Pruned from a finished model, rewound to w0, trained with DP-SGD at its dp model's noise."""
  title = "DP-SGD lottery ticket"

  def plan(self, config, planned):
    settings = config.defences.dp_sgd
    return [recipes.ModelSpec(f"dp_ticket_{recipes.sparsity_tag(s)}_{budget_tag(b)}", "dp_ticket", s,
                              "dense" if settings.ticket_from == "dense" else f"dp_{budget_tag(b)}",
                              config.lottery.rule, options=b)
            for b in budgets(config) for s in settings.ticket_sparsities]

  def mask(self, ctx, spec):
    return recipes.pruned_mask(ctx, spec, ctx.dense_mask())

  def earlier_phases(self, ctx, spec):
    if spec.mask_from == "dense":
      return ()
    return tuple(tuple(p) for p in io.read_json(ctx.layout.summary(spec.mask_from))["privacy_phases"])

  def covers(self, spec):
    if spec.mask_from == "dense":
      return "the weights given the mask (pruned from the non-private dense model, which the guarantee does not cover)"
    return f"the weights and the mask (pruned from {spec.mask_from}: both private trainings composed)"


def _validate(config) -> None:
  settings = config.defences.dp_sgd
  for field, values in (("epsilons", settings.epsilons), ("noise_multipliers", settings.noise_multipliers)):
    if not all(v > 0 for v in values):
      raise errors.ConfigError(f"defences.dp_sgd.{field} must all be > 0, got {tuple(values)}")
  if not settings.clip_norm > 0:
    raise errors.ConfigError(f"defences.dp_sgd.clip_norm must be > 0, got {settings.clip_norm}")
  if not 0 < settings.delta < 1:
    raise errors.ConfigError(f"defences.dp_sgd.delta must lie in (0, 1 / members), got {settings.delta}")
  if settings.ticket_from not in ("dp", "dense"):
    raise errors.ConfigError(f"defences.dp_sgd.ticket_from={settings.ticket_from!r} is unknown; expected dp or dense")
  for s in settings.ticket_sparsities:
    masks.check_sparsity(s, "defences.dp_sgd.ticket_sparsities")
  kinds = [k for k in config.lottery.controls if k in DP_KINDS]
  if not kinds:
    return
  if bool(settings.epsilons) == bool(settings.noise_multipliers):
    raise errors.ConfigError("set exactly one of defences.dp_sgd.epsilons and defences.dp_sgd.noise_multipliers (the "
                             f"other empty); got {tuple(settings.epsilons)} and {tuple(settings.noise_multipliers)}")
  if config.model.norm != "group":
    raise errors.ConfigError(f"model.norm={config.model.norm!r}: DP-SGD models ({', '.join(kinds)}) need "
                             "model.norm='group' (BatchNorm mixes a batch's examples, so no gradient is one example's)")
  if config.train.stop_at:
    raise errors.ConfigError(f"train.stop_at={config.train.stop_at!r}: DP-SGD models need '' (where training stops "
                             "would depend on the members' accuracy, which the guarantee does not cover)")
  if "dp_ticket" in kinds and settings.ticket_from == "dp" and "dp" not in kinds[:kinds.index("dp_ticket")]:
    raise errors.ConfigError("lottery.controls: dp_ticket prunes the dp models (defences.dp_sgd.ticket_from=dp), so "
                             "dp must come before it")


config_sections.register("defences.dp_sgd", "DP-SGD: the dp and dp_ticket recipes (defences/dp_sgd.py)", {
    "epsilons": ((8.0,), "target epsilons: one dp model each, its noise calibrated (empty: noise_multipliers)"),
    "noise_multipliers": ((), "noise multipliers: one dp model each, its epsilon computed (empty: epsilons)"),
    "delta": (1e-5, "delta of every guarantee; must be below 1 / members"),
    "clip_norm": (1.0, "per-example gradient L2 clipping norm"),
    "max_batch_size": (0, "Poisson batches are truncated at random to this size (padded to it, rounded up to the "
                          "device count); 0: the size a batch exceeds with probability <= 1e-4"),
    "ticket_sparsities": ((0.8,), "dp_ticket: one model per sparsity and budget"),
    "ticket_from": ("dp", "dp_ticket's mask: dp (from the private model; epsilon composes both trainings) | dense "
                          "(from the non-private model; the guarantee does not cover the mask)"),
}, validate=_validate)
