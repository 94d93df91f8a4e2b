"""What the trained defences share: a phase that starts from trained weights at a later step of the run, the settings
each defended model records, and the `defences` config section (docs/defences.md).

Phases that start from trained weights take the last `fraction` of the run's train steps (defences.*.fraction): they
start at step T - fraction * T and continue the run's learning-rate schedule from there (the `first_step` step hook:
the optimiser's count is set to the train step before each update, so the phase ends annealed as the run's training
does; no separate learning-rate factor, since multiplying the updates, even by 1, would change how XLA fuses the
update and cost bit-equality). Every defended model writes models/<name>/defence.json (its settings) before
training; a resumed model with other settings is refused. Pruned models use `defences.rule` with the tickets' exact
counts (lottery.masks).
"""
import os

import jax
import numpy as np
import optax

from mialth_jax import errors
from mialth_jax.lottery import masks, recipes, step_hooks
from mialth_jax.utils import config_sections, io

ModelSpec, tag = recipes.ModelSpec, recipes.sparsity_tag
RULES = ("layerwise_magnitude", "global_magnitude")  # the constraint sets the pruning defences prune by
RECORDED = {}  # step-hook name -> fn(its slot) -> {setting: value} that models/<name>/defence.json records


def continue_schedule(first_step, batch: step_hooks.StepBatch):
  """The optimiser state with its count at the train step: the run's schedule, continued from `first_step` on."""
  del first_step  # recorded in defence.json; the count is the step itself
  return optax.tree_utils.tree_set(batch.state.opt_state, count=batch.state.step)


step_hooks.STEP_HOOKS.register("first_step", step_hooks.StepHook(optimizer_state=continue_schedule))


def sparsities(config) -> tuple:
  """The sparsities of the pruning defences: defences.sparsities, or every one of lottery.sparsities."""
  return tuple(config.defences.sparsities) or tuple(config.lottery.sparsities)


def phase_steps(ctx, fraction: float) -> int:
  """Train steps of a phase that takes `fraction` of the run's, at least one."""
  return max(1, int(round(fraction * ctx.total_steps)))


class Defence(recipes.Recipe):
  """A recipe whose models train with the `first_step` hook and the hooks of `state`, and record their settings."""

  def state(self, ctx, spec: ModelSpec) -> dict:
    return {"first_step": np.int32(self.first_step(ctx, spec))}

  def extra(self, ctx, spec):
    extra = self.state(ctx, spec)
    record_settings(ctx, spec, extra)
    return extra


class FineTuned(Defence, recipes.FromTrained):
  """Pruned by magnitude from the final weights of `spec.mask_from`, then fine-tuned with the mask held."""

  def mask(self, ctx, spec):
    return recipes.pruned_mask(ctx, spec, ctx.dense_mask())

  def first_step(self, ctx, spec):
    return ctx.total_steps - phase_steps(ctx, ctx.config.defences.finetune.fraction)


def settings_of(spec: ModelSpec, extra: dict) -> dict:
  """What defines a defended model beyond its summary: its options and the scalar settings of its extra state."""
  flat = {"first_step": extra["first_step"]}
  for name, recorded in RECORDED.items():
    if name in extra:
      flat.update({f"{name}.{k}": v for k, v in recorded(extra[name]).items()})
  return {"kind": spec.kind, "options": dict(spec.options), **{k: np.asarray(v).tolist() for k, v in flat.items()}}


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


def check(ok: bool, field: str, value, expected: str) -> None:
  """One line naming the defences field and what was expected."""
  if not ok:
    raise errors.ConfigError(f"defences.{field}={value!r}: expected {expected}")


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_fraction(config, section: str) -> None:
  fraction = config.defences[section].fraction
  check(is_number(fraction) and 0 < fraction <= 1, f"{section}.fraction", fraction, "a share of the run in (0, 1]")


def _validate(config) -> None:
  d = config.defences
  for s in d.sparsities:
    masks.check_sparsity(s, "defences.sparsities")
    check(s in config.lottery.sparsities, "sparsities", tuple(d.sparsities),
          f"a subset of lottery.sparsities {tuple(config.lottery.sparsities)} (defences compare at equal sparsity)")
  check(d.rule in RULES, "rule", d.rule, f"one of {', '.join(RULES)}")


config_sections.register("defences", "defences against membership inference (defences/; docs/defences.md)", {
    "sparsities": ((), "of finetune / admm / admm_minmax: a subset of lottery.sparsities (empty: all)"),
    "rule": ("layerwise_magnitude", "layerwise_magnitude (k_i per layer, the spec) | global_magnitude"),
}, validate=_validate)
