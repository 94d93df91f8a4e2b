"""Trains (or finishes) a run's reference-model zoo: the dense zoo, then a zoo of each pruned kind of the run, named
as the run's models (ticket_s80; imp_r1, imp_r2, ...; snip_s80, ...). The zoo repeats every recipe that makes its
masks per model (recipes.OwnMask): zoo model s's mask is the recipe's `own_mask` of zoo model s (`ZooModel`: its own
seed, w0, members and finished models), e.g. pruned from its own trained model (an IMP round from its own previous
round's survivors) or scored at its own w0 on its own members, and it starts from its own w0, or with late rewinding
from its own dense model's state at lottery.rewind_step, as the target's models do. Then every zoo model's logits on
every pool example are written. Resumable like every phase: each kind is skipped when its summary.json exists and
resumed from its latest stacked checkpoint otherwise.

  <workdir>/shadows/zoo.json keep.npy ids.npy seeds.npy w0/ rewind/ (late rewinding)
                    <name>/{mask,final,checkpoints,metrics.jsonl,logits.npy,summary.json}
                    <name>/curve/<step>/ <step>.npy   (zoo.curve_every_epochs)

With zoo.curve_every_epochs = e, the zoo also keeps its models' weights and their logits on the pool under
zoo.curve_queries every e epochs of training (`curve_steps`; the final step's are final/ and logits.npy): the points
at which experiments.fit_curves attacks every zoo model along its training.
"""
import os
import time

import jax
import numpy as np
from absl import logging

from mialth_jax import errors, inference
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import masks, recipes, zoo, zoo_models
from mialth_jax.utils import checkpoint, hosts, interrupts, io, progress


def zoo_settings(ctx) -> dict:
  """What defines the zoo's models; a zoo recorded with other settings is refused, not mixed with new models. Every
  zoo model trains like the target: on `subset_size` (the target's member count) examples for `steps` (the target's
  steps); a zoo recorded before these were fixed (its models on about that many examples) lacks them and is refused."""
  return {"num_models": ctx.config.zoo.num_models, "queries": list(ctx.config.zoo.queries), "seed": ctx.config.seed,
          "pool_size": len(ExampleSource(ctx.dataset)), "subset_size": len(ctx.splits.members),
          "steps": ctx.total_steps, "steps_per_epoch": ctx.steps_per_epoch}


def record_zoo(ctx) -> tuple[np.ndarray, np.ndarray]:
  """(keep [S, N], seeds [S]), recorded in shadows/ on first use and checked against the config afterwards."""
  layout, settings = ctx.layout, zoo_settings(ctx)
  if os.path.exists(layout.zoo("zoo.json")):
    recorded = io.read_json(layout.zoo("zoo.json"))
    if recorded != settings:
      raise errors.ConfigError(f"{layout.zoo('zoo.json')}: the zoo was trained with other settings ({recorded}); "
                               "move shadows/ away to train a new one")
    keep = io.read_npy(layout.zoo("keep.npy"))
    if keep.shape != (settings["num_models"], settings["pool_size"]) or np.any(keep.sum(1) != settings["subset_size"]):
      raise errors.UserError(f"{layout.zoo('keep.npy')}: expected {settings['num_models']} rows of "
                             f"{settings['subset_size']} members over {settings['pool_size']} examples; it is damaged: "
                             "move shadows/ away to train a new zoo")
    return keep, io.read_npy(layout.zoo("seeds.npy"))
  keep = zoo.random_subsets(settings["num_models"], settings["pool_size"], len(ctx.splits.members), ctx.config.seed)
  seeds = zoo.model_seeds(ctx.config.seed, settings["num_models"])

  def write():
    for name, array in (("keep.npy", keep), ("seeds.npy", seeds), ("ids.npy", np.arange(settings["pool_size"]))):
      io.write_npy(layout.zoo(name), array)
    io.write_json(layout.zoo("zoo.json"), settings)  # last: the zoo's membership is recorded once this exists
  hosts.on_process_zero(write)
  return keep, seeds


def zoo_plan(ctx) -> list[recipes.ModelSpec]:
  """The zoo's model kinds, named as the run's models: dense, and the pruned ones whose recipes make their masks per
  model (the tickets of every method, one-shot, every IMP round or pruned at initialisation, and the random-prune
  controls when lottery.controls has them) of zoo.sparsities (empty: all)."""
  wanted = ctx.config.zoo.sparsities
  return [s for s in recipes.plan(ctx.config)
          if s.kind == "dense" or (issubclass(recipes.RECIPES.lookup(s.kind), recipes.OwnMask)
                                   and (not wanted or s.sparsity in wanted))]


def curve_steps(ctx) -> list[int]:
  """The steps before the last at which the zoo keeps its weights and pool logits (zoo.curve_every_epochs)."""
  every = ctx.config.zoo.curve_every_epochs * ctx.steps_per_epoch
  return list(range(every, ctx.total_steps, every)) if every else []


def train_zoo(ctx) -> dict[str, dict]:
  """Every zoo kind trained and its logits written; returns {name: summary}."""
  keep, seeds = record_zoo(ctx)
  if not checkpoint.exists(ctx.layout.zoo("w0")):
    checkpoint.save(ctx.layout.zoo("w0"), zoo.stack([ctx.init_variables(int(s)) for s in seeds]))
  return {spec.name: train_kind(ctx, spec, keep, seeds) for spec in zoo_plan(ctx)}


def _abstract_zoo(ctx, num_models: int):
  """Target tree for restoring the stacked {params, batch_stats} of a zoo, replicated over this run's mesh (which may
  have another number of devices than the one that saved it)."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct((num_models, *s.shape), s.dtype, sharding=ctx.replicated),
                      ctx.variable_shapes)


def train_kind(ctx, spec: recipes.ModelSpec, keep: np.ndarray, seeds: np.ndarray) -> dict:
  """Trains the zoo of one model kind (or resumes it), then writes its logits on the whole pool."""
  layout, num_models = ctx.layout, len(seeds)
  if os.path.exists(layout.zoo(spec.name, "summary.json")):
    return io.read_json(layout.zoo(spec.name, "summary.json"))
  started = time.time()
  model_masks = zoo_models.masks_of(ctx, spec, keep, seeds, _abstract_zoo(ctx, len(seeds)))
  if not checkpoint.exists(layout.zoo(spec.name, "mask")):
    checkpoint.save(layout.zoo(spec.name, "mask"), zoo.stack(model_masks))
  total_steps, steps_per_epoch = ctx.total_steps, ctx.steps_per_epoch  # the target's: keep's rows hold its count
  if checkpoint.exists(layout.zoo(spec.name, "final")):  # trained; stopped while its logits were computed
    variables = checkpoint.restore(layout.zoo(spec.name, "final"), _abstract_zoo(ctx, num_models))
  else:
    variables = _train_kind(ctx, spec, keep, seeds, model_masks, total_steps, steps_per_epoch)
    checkpoint.save(layout.zoo(spec.name, "final"), variables)
  write_pool_logits(ctx, variables, layout.zoo(spec.name, "logits.npy"), tuple(ctx.config.zoo.queries))
  summary = {"name": spec.name, "kind": spec.kind, "sparsity": masks.sparsity_report(model_masks[0])["sparsity"],
             "num_models": num_models, "steps": total_steps, "curve_steps": curve_steps(ctx),
             "curve_queries": list(ctx.config.zoo.curve_queries),
             "wall_seconds": time.time() - started}
  if jax.process_index() == 0:
    io.write_json(layout.zoo(spec.name, "summary.json"), summary)
  return summary


def write_pool_logits(ctx, variables: dict, path: str, queries: tuple[str, ...]) -> None:
  """Every zoo model's logits on every pool example under `queries`, float32 [S, N, A, C], to `path`."""
  source = ExampleSource(ctx.dataset)
  logits = zoo.zoo_logits(ctx.model, variables, source[np.arange(len(source))], ctx.data.mean, ctx.data.std,
                          ctx.mesh, queries, ctx.config.attacks.batch_size)
  hosts.on_process_zero(lambda: io.write_npy(path, logits.astype(np.float32)))


def curve_point(layout, name: str, step: int) -> tuple[str, str]:
  """(weights checkpoint, pool logits .npy) of the zoo `name` at curve step `step`."""
  return layout.zoo(name, "curve", str(step)), layout.zoo(name, "curve", f"{step}.npy")


def _keep(path: str, state) -> dict:
  """The zoo's {params, batch_stats} at this step, saved at `path` unless a relaunch finds them there already."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  if not checkpoint.exists(path):
    checkpoint.save(path, variables)
  return variables


def _keep_curve_point(ctx, name: str, state, step: int) -> None:
  """The zoo's weights and pool logits at `step`, each written unless a relaunch finds it there already."""
  weights, logits = curve_point(ctx.layout, name, step)
  variables = _keep(weights, state)
  if not os.path.exists(logits):
    write_pool_logits(ctx, variables, logits, tuple(ctx.config.zoo.curve_queries))


def _train_kind(ctx, spec: recipes.ModelSpec, keep: np.ndarray, seeds: np.ndarray, model_masks: list,
                total_steps: int, steps_per_epoch: int) -> dict:
  """The zoo's {params, batch_stats} after training from its start (resumed from its latest stacked checkpoint); the
  dense zoo keeps its state at lottery.rewind_step (late rewinding) for the pruned kinds to rewind to."""
  rewind_step = ctx.config.lottery.rewind_step
  state = start_state(ctx, spec, model_masks)
  batches = zoo.Batches(keep, seeds, ctx.config.train.batch_size, steps_per_epoch)
  state = _loop(ctx, spec.name, state, batches, total_steps, rewind_step if spec.kind == "dense" else 0)
  return {"params": state.params, "batch_stats": state.batch_stats}


def start_state(ctx, spec: recipes.ModelSpec, model_masks: list[dict]):
  """The stacked state each zoo model of `spec` starts from, at its recipe's first step: its own w0 (step 0), or
  its own dense model's state at lottery.rewind_step (late rewinding), masked by its own mask."""
  num_models, first_step = len(model_masks), recipes.RECIPES.lookup(spec.kind)().first_step(ctx, spec)
  starts = checkpoint.restore(ctx.layout.zoo("rewind" if first_step else "w0"), _abstract_zoo(ctx, num_models))
  return zoo.start_states([zoo.unstack(starts, s) for s in range(num_models)], model_masks, ctx.tx, first_step,
                          zoo.models_sharding(ctx.mesh, num_models))


def zoo_pool(ctx) -> tuple[jax.Array, jax.Array]:
  """Every example of the dataset by global id (the zoo's population pool): images and labels on device, once."""
  if not ctx.dataset.in_memory:
    raise errors.ConfigError("zoo protocol: the dataset must fit in memory (digits, npz, tfds CIFAR)")
  source = ExampleSource(ctx.dataset)
  ids = np.arange(len(source))
  return ctx.compiled("zoo_pool", lambda: (inference.global_array(source[ids], ctx.replicated),
                                           inference.global_array(source.labels(ids), ctx.replicated)))


def zoo_step(ctx, num_models: int):
  """The vectorised train step of a zoo of `num_models` (compiled once per run and zoo size)."""
  return ctx.compiled(("zoo_step", num_models), lambda: zoo.make_zoo_step(
      ctx.model, ctx.tx, zoo.augment_seed(ctx.config.seed), ctx.config.data.augment, ctx.data.mean, ctx.data.std,
      ctx.mesh, num_models))


def _loop(ctx, name: str, state, batches: zoo.Batches, total_steps: int, rewind_step: int):
  """Runs the vectorised step from the state's step (or its latest checkpoint) to `total_steps`; with `rewind_step`
  > 0, keeps the state after that many steps in shadows/rewind/ (late rewinding)."""
  num_models = len(batches.seeds)
  by_model = zoo.models_sharding(ctx.mesh, num_models)
  manager = checkpoint.manager(ctx.layout.zoo(name, "checkpoints"))
  resumed, state = checkpoint.restore_latest(manager, state, by_model)
  curve = set(curve_steps(ctx))
  if resumed is not None:
    logging.info("[zoo %s] resumed from the checkpoint at step %d", name, resumed)
    if resumed in curve:  # a kill between that checkpoint and its curve point: the restored state is that point's
      _keep_curve_point(ctx, name, state, resumed)
  log = io.MetricsLog(ctx.layout.zoo(name, "metrics.jsonl"))
  log.truncate_after(int(state.step[0]))
  pool = zoo_pool(ctx)
  step_fn = zoo_step(ctx, num_models)
  meter = progress.Meter(f"zoo {name}", total_steps, int(state.step[0]), batches.batch_size * num_models)
  logging.info("[zoo %s] compiling the step of %d models on %d devices; the first progress line comes after it", name,
               num_models, ctx.mesh.size)
  every, checkpoint_every = max(1, ctx.config.train.log_every_steps), ctx.config.checkpoint_every_steps
  for step in range(int(state.step[0]), total_steps):
    interrupts.check()
    if rewind_step and step == rewind_step:  # before the step, as the run's dense model keeps its rewind point
      _keep(ctx.layout.zoo("rewind"), state)
    positions = inference.global_array(batches.positions(step), by_model)
    state, metrics = step_fn(state, *pool, positions)
    done = step + 1
    save = checkpoint_every and done % checkpoint_every == 0 and done < total_steps
    if done % every == 0 or done == total_steps or save:  # checked before any checkpoint: NaN is never saved
      fetched = jax.device_get(metrics)
      if not np.all(fetched["finite"]):
        raise errors.UserError(f"[zoo {name}] a zoo model's loss or parameters became NaN or Inf at step {done}; "
                               "lower train.learning_rate")
      log({"phase": "train", "step": done, "loss_mean": float(fetched["loss"].mean()),
           "loss_max": float(fetched["loss"].max()), "accuracy_mean": float(fetched["accuracy"].mean())})
      meter.update(done, float(fetched["loss"].mean()), float(fetched["accuracy"].mean()))
    if save:
      checkpoint.save_step(manager, done, state)
    if done in curve:  # its time counts in the rate: the ETA includes the points still to keep
      _keep_curve_point(ctx, name, state, done)
  manager.close()
  return state
