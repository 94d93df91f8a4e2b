"""The defences as training recipes (`lottery.recipes.RECIPES`): each defended model is an ordinary model of the run
(models/<name>/ with summary.json kind and sparsity), so every protocol attacks it, and the shadow protocol, which
replans the config's recipes, trains its shadows with the same defence (an adaptive attacker).

  lottery.controls   models                                   what they are
  finetune           finetune_s80                             the dense model pruned by magnitude, fine-tuned with
                                                              the mask held, from its trained weights (no rewind)
  admm               admm_train_s80 -> admm_s80               ADMM W-phase from the trained dense model (dense mask);
                                                              then hard-pruned by magnitude and fine-tuned
  minmax             minmax_l1 (one per lambda)               Nasr et al.'s adversarial regularisation, from w0
  admm_minmax        admm_minmax_train_s80_l1 -> admm_minmax_s80_l1   ADMM and its fine-tuning on the Min-Max objective

Phases that start from trained weights take the last `fraction` of the run's train steps (defences.*.fraction): they
start at step T - fraction * T and continue the run's learning-rate schedule from there (`step.defence_step`).
Every model writes models/<name>/defence.json (its settings) before training; a resumed model with other settings is
refused. Pruned models use `defences.rule` with the tickets' exact counts (lottery.masks).
"""
import os

import jax
import numpy as np

from mialth_jax import errors
from mialth_jax.data.examples import ExampleSource
from mialth_jax.defences import admm, minmax, reference, step
from mialth_jax.lottery import recipes
from mialth_jax.utils import io

ModelSpec, tag = recipes.ModelSpec, recipes.sparsity_tag


def sparsities(config) -> tuple:
  """The sparsities of the pruning defences: defences.sparsities, or every one of lottery.sparsities."""
  return tuple(config.defences.sparsities) or tuple(config.lottery.sparsities)


def phase_steps(ctx, fraction: float) -> int:
  """Train steps of a phase that takes `fraction` of the run's, at least one."""
  return max(1, int(round(fraction * ctx.total_steps)))


def admm_round_steps(ctx) -> int:
  settings = ctx.config.defences.admm
  rounds, per_round = settings.rounds, phase_steps(ctx, settings.fraction / settings.rounds)
  if rounds * per_round > ctx.total_steps:
    raise errors.ConfigError(f"defences.admm.rounds={rounds}: more rounds than the run's {ctx.total_steps} train "
                             "steps; lower it or train longer")
  return per_round


class Defence(recipes.Recipe):
  """A recipe trained by `step.defence_step`, its settings in `TrainState.extra` and in models/<name>/defence.json."""
  step_fn = staticmethod(step.defence_step)

  def state(self, ctx, spec: ModelSpec) -> dict:
    return {"first_step": np.int32(self.first_step(ctx, spec))}

  def extra(self, ctx, spec):
    extra = self.state(ctx, spec)
    record_settings(ctx, spec, extra)
    return extra

  def minmax_state(self, ctx, spec: ModelSpec, warmup_step: int) -> dict:
    if not ctx.dataset.in_memory:
      raise errors.ConfigError("defences.minmax: the reference set must fit in memory (digits, npz, tfds CIFAR)")
    ids = reference.load(ctx)
    source, settings = ExampleSource(ctx.dataset), ctx.config.defences.minmax
    return minmax.init_state(ctx.config.seed, ctx.dataset.num_classes, source[ids], source.labels(ids),
                             lam=spec.option("lambda"), learning_rate=settings.learning_rate, warmup_step=warmup_step)


class FineTuned(Defence, recipes.FromTrained):
  """Pruned by magnitude from the final weights of `spec.mask_from`, then fine-tuned with the mask held."""

  def mask(self, ctx, spec):
    return recipes.pruned_mask(ctx, spec, ctx.dense_mask())

  def first_step(self, ctx, spec):
    return ctx.total_steps - phase_steps(ctx, ctx.config.defences.finetune.fraction)


@recipes.RECIPES.register("finetune")
class PruneFineTune(FineTuned):
  title = "prune + fine-tune"

  def plan(self, config, planned):
    rule = config.defences.rule
    return [ModelSpec(f"finetune_{tag(s)}", "finetune", s, "dense", rule, "trained") for s in sparsities(config)]


@recipes.RECIPES.register("admm_train")
class AdmmTrain(Defence, recipes.FromTrained):
  """ADMM's W-phase (planned by `admm`): the trained dense model, its mask dense, with Z, U and rho in extra."""
  title = "ADMM W-phase, before hard pruning"

  def first_step(self, ctx, spec):
    return ctx.total_steps - ctx.config.defences.admm.rounds * admm_round_steps(ctx)

  def state(self, ctx, spec):
    settings = ctx.config.defences.admm
    params = jax.device_get(self.start(ctx, spec)["params"])
    return {**super().state(ctx, spec),
            "admm": admm.init_state(params, ctx.dense_mask(), spec.option("sparsity"), spec.rule, rho=settings.rho,
                                    growth=settings.rho_growth, round_steps=admm_round_steps(ctx),
                                    first_step=self.first_step(ctx, spec))}


@recipes.RECIPES.register("admm")
class Admm(FineTuned):
  """The ADMM-pruned model: admm_train's final weights hard-pruned by magnitude, then fine-tuned (MIA-Pruning)."""
  title = "ADMM pruning"

  def plan(self, config, planned):
    rule, specs = config.defences.rule, []
    for s in sparsities(config):
      specs += [ModelSpec(f"admm_train_{tag(s)}", "admm_train", 0.0, "dense", rule, "trained", (("sparsity", s),)),
                ModelSpec(f"admm_{tag(s)}", "admm", s, f"admm_train_{tag(s)}", rule, "trained")]
    return specs


@recipes.RECIPES.register("minmax")
class MinMax(Defence):
  """A dense model trained from w0 with the Min-Max game, one per defences.minmax.lambdas."""
  title = "Min-Max"

  def plan(self, config, planned):
    return [ModelSpec(f"minmax_l{lam:g}", "minmax", options=(("lambda", float(lam)),))
            for lam in config.defences.minmax.lambdas]

  def state(self, ctx, spec):
    warmup = int(round(ctx.config.defences.minmax.warmup_fraction * ctx.total_steps))
    return {**super().state(ctx, spec), "minmax": self.minmax_state(ctx, spec, warmup)}


@recipes.RECIPES.register("admm_minmax_train")
class AdmmMinMaxTrain(AdmmTrain):
  """ADMM's W-phase on the Min-Max objective (planned by `admm_minmax`); h starts fresh, without a warm-up (the
  dense model it starts from was the warm-up)."""
  title = "ADMM + Min-Max W-phase, before hard pruning"

  def state(self, ctx, spec):
    return {**super().state(ctx, spec), "minmax": self.minmax_state(ctx, spec, self.first_step(ctx, spec))}


@recipes.RECIPES.register("admm_minmax")
class AdmmMinMax(Admm):
  """MIA-Pruning & Min-Max: the ADMM-on-Min-Max weights hard-pruned, then fine-tuned on the Min-Max objective."""
  title = "ADMM + Min-Max"

  def plan(self, config, planned):
    rule, specs = config.defences.rule, []
    for s in sparsities(config):
      for lam in config.defences.minmax.combined_lambdas:
        name, options = f"admm_minmax_{tag(s)}_l{lam:g}", (("lambda", float(lam)),)
        train = f"admm_minmax_train_{tag(s)}_l{lam:g}"
        specs += [ModelSpec(train, "admm_minmax_train", 0.0, "dense", rule, "trained", (*options, ("sparsity", s))),
                  ModelSpec(name, "admm_minmax", s, train, rule, "trained", options)]
    return specs

  def state(self, ctx, spec):
    return {**super().state(ctx, spec), "minmax": self.minmax_state(ctx, spec, self.first_step(ctx, spec))}


def settings_of(spec: ModelSpec, extra: dict) -> dict:
  """What defines a defended model beyond its summary: its options and the scalar settings of its extra state."""
  flat = {"first_step": extra["first_step"], **{f"admm.{k}": extra["admm"][k] for k in
                                            ("rho", "growth", "round_steps", "first_step", "pruned")
                                            if "admm" in extra},
          **{f"minmax.{k}": extra["minmax"][k] for k in ("lam", "h_lr", "warmup_step") if "minmax" in extra}}
  settings = {k: np.asarray(v).tolist() for k, v in flat.items()}
  if "minmax" in extra:
    settings["minmax.reference_size"] = int(extra["minmax"]["labels"].shape[0])
  return {"kind": spec.kind, "options": dict(spec.options), **settings}


def record_settings(ctx, spec: ModelSpec, extra: dict) -> None:
  """Writes models/<name>/defence.json, or refuses to resume a model that was started with other settings."""
  path, settings = ctx.layout.path("models", spec.name, "defence.json"), settings_of(spec, extra)
  recorded = io.read_json(path) if os.path.exists(path) else None
  if recorded is not None and recorded != settings:
    changed = sorted(k for k in settings if recorded.get(k) != settings[k])
    raise errors.ConfigError(f"{path}: {spec.name} was started with other defence settings ({', '.join(changed)}); "
                             "use a new --workdir or --restart")
  if recorded is None and jax.process_index() == 0:
    io.write_json(path, settings)
