"""The lottery pipeline: w0 -> dense -> prune -> rewind -> retrain, for every model the config's recipes plan.

Each model is a phase that returns at once if its `summary.json` exists and resumes from its latest checkpoint
otherwise. Every ticket starts from parameters read back from the Orbax checkpoint of w0 (or of the late-rewind point),
never from a live buffer: the train step donates its input, so live copies of w0 would be deleted anyway.
"""
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from mialth_jax import inference
from mialth_jax.lottery import context as context_lib, loop as loop_lib, masks, recipes
from mialth_jax.utils import checkpoint, hosts, io, progress

Context = context_lib.Context
setup = context_lib.setup


def ensure_w0(ctx: Context) -> None:
  """Saves w0 (params + batch statistics at step 0) as its own Orbax checkpoint, once."""
  if not checkpoint.exists(ctx.layout.w0):
    checkpoint.save(ctx.layout.w0, ctx.init_variables(ctx.config.seed))


def start_state(ctx: Context, spec: recipes.ModelSpec, mask: dict):
  """The train state a model starts from: its recipe's start (w0, rewind point, fresh init) with `mask` applied."""
  recipe = recipes.RECIPES.lookup(spec.kind)()
  device_mask = inference.global_array_tree(mask, ctx.replicated)
  return ctx.start_state(recipe.start(ctx, spec), device_mask, recipe.first_step(ctx, spec), recipe.extra(ctx, spec))


def train_model(ctx: Context, spec: recipes.ModelSpec) -> dict:
  """Trains one model to completion (or resumes it) and writes its folder; returns its summary."""
  layout = ctx.layout
  if layout.is_finished(spec.name):
    logging.info("[%s%s] already finished", ctx.log_prefix, spec.name)
    return io.read_json(layout.summary(spec.name))
  started = time.time()
  recipe = recipes.RECIPES.lookup(spec.kind)()
  mask = recipe.mask(ctx, spec)
  if not checkpoint.exists(layout.mask(spec.name)):
    checkpoint.save(layout.mask(spec.name), mask)
  report = masks.sparsity_report(mask)
  if jax.process_index() == 0:
    io.write_json(layout.sparsity_report(spec.name), report)
  state = start_state(ctx, spec, mask)
  logging.info("[%s%s] %s, sparsity %.4f (%d of %d prunable weights kept), steps %d..%d", ctx.log_prefix, spec.name,
               spec.kind,
               report["sparsity"], report["kept"], report["total"], int(state.step), ctx.total_steps)
  loop = ctx.loop(spec.name, **recipe.loop_overrides(ctx, spec))
  state, final_eval = loop_lib.run_loop(state, ctx.train_step(recipe.loss), ctx.logits_fn, loop,
                                         ctx.data, ctx.mesh, layout.checkpoints(spec.name),
                                         io.MetricsLog(layout.metrics(spec.name)))
  if not checkpoint.exists(layout.final(spec.name)):
    checkpoint.save(layout.final(spec.name), {"params": state.params, "batch_stats": state.batch_stats})
  summary = {"name": spec.name, "kind": spec.kind, "sparsity": report["sparsity"], "rule": spec.rule,
             "pruned_from": spec.mask_from, "init": spec.init, "rewind_step": ctx.config.lottery.rewind_step,
             "steps": int(state.step), **({"stopped_at": int(state.step)} if loop.stop_at else {}),
             "devices": ctx.mesh.size, "platform": ctx.mesh.devices.flat[0].platform,
             "wall_seconds": time.time() - started, **final_eval, **recipe.summary(ctx, spec, int(state.step))}
  hosts.on_process_zero(lambda: io.write_json(layout.summary(spec.name), summary))  # others then see it finished
  return summary


def log_model_size(ctx: Context) -> None:
  """Parameter count and forward FLOPs per image (XLA's cost analysis; 2 FLOPs per multiply-add)."""
  num_params = sum(x.size for x in jax.tree.leaves(ctx.variable_shapes["params"]))
  image = jax.ShapeDtypeStruct((1, *ctx.dataset.image_shape), np.uint8)
  lowered = jax.jit(lambda v, x: ctx.model.apply(v, x)).lower(ctx.variable_shapes, image)
  flops = (lowered.cost_analysis() or {}).get("flops", float("nan"))
  logging.info("model %s: %d parameters, %.3g forward FLOPs per image; %d members, %d test images, %d devices, "
               "%d steps (%d per epoch)", ctx.config.model.name, num_params, flops, len(ctx.splits.members),
               len(ctx.dataset.y_test), ctx.mesh.size, ctx.total_steps, ctx.steps_per_epoch)


def _log_remaining(ctx: Context, plan: list, done: int, trained: int, elapsed: float) -> None:
  """The whole pipeline's progress: models done, and the time the others need at this launch's pace so far (every
  model trains as many steps, so the mean time of the models this launch trained is the estimate; models found
  finished took none and give no pace; attacks come after)."""
  if done == len(plan):
    return
  left = len(plan) - done
  need = f"about {progress.hms(elapsed / trained * left)} at this launch's pace" if trained else \
      "a time not known yet (this launch has trained no model to time)"
  logging.info("%s%d of %d models done; the other %d need %s (then the attacks)", ctx.log_prefix, done, len(plan),
               left, need)


def run_models(ctx: Context) -> dict:
  """Runs (or finishes) every phase of the lottery pipeline; returns {model name: summary}."""
  log_model_size(ctx)
  plan = recipes.plan(ctx.config)
  for spec in plan:
    recipes.RECIPES.lookup(spec.kind)().check(ctx, spec)
  ensure_w0(ctx)
  summaries, trained, training_seconds = {}, 0, 0.0
  for done, spec in enumerate(plan, 1):
    finished_before, started = ctx.layout.is_finished(spec.name), time.time()
    summaries[spec.name] = train_model(ctx, spec)
    if not finished_before:
      trained, training_seconds = trained + 1, training_seconds + time.time() - started
    _log_remaining(ctx, plan, done, trained, training_seconds)
  hosts.on_process_zero(lambda: io.write_json(ctx.layout.lottery_summary, summaries))
  for name, s in summaries.items():
    logging.info("%-22s sparsity %.3f  test acc %.4f  train acc %.4f", name, s["sparsity"], s["test_accuracy"],
                 s["train_accuracy"])
  return summaries


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`run_models` for a config and workdir (the lottery half of a launch, usable from Python)."""
  return run_models(setup(config, workdir))
