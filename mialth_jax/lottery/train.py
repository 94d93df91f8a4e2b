"""The jitted masked train step and the loop that runs it with evaluation, progress, metrics and checkpoints.

Data order and augmentation are pure functions of (seed, step), so a run resumed from a checkpoint at step k continues
exactly as an uninterrupted run would.
"""
import collections
import concurrent.futures
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import errors, inference
from mialth_jax.data import augment
from mialth_jax.lottery import masks
from mialth_jax.lottery.train_state import TrainState
from mialth_jax.utils import checkpoint, io, progress


MAX_TRAIN_EVAL = 10_000  # members evaluated for train accuracy (all of them for CIFAR-sized runs)


class NonFiniteError(errors.UserError, FloatingPointError):
  """NaN or Inf in the loss or parameters."""


def cross_entropy(logits, labels):
  """The classification loss of every recipe that does not bring its own: mean softmax cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: TrainState, images, labels, *, model, tx, seed: int, augment_kind: str, mean, std,
               loss_fn=cross_entropy):
  """One SGD step on `loss_fn(logits, labels)`; the mask zeroes gradients and parameters so pruned weights and their
  momentum stay 0.0. `state.extra` (a recipe's own training state) is passed through unchanged."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  x = augment.normalise(augment.augment(key, images, augment_kind), mean, std, model.dtype)

  def objective(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                  mutable=["batch_stats"])
    loss = loss_fn(logits, labels)
    return loss, (logits, updates["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  return masked_update(state, grads, tx, loss=loss, logits=logits, labels=labels, batch_stats=batch_stats)


def masked_update(state: TrainState, grads, tx, *, loss, logits, labels, batch_stats, opt_state=None):
  """The optimiser update of a step (from `opt_state`, default the state's) with the mask applied to gradients and
  parameters, and the step's metrics."""
  grads = masks.apply_mask(grads, state.mask)
  updates, opt_state = tx.update(grads, state.opt_state if opt_state is None else opt_state, state.params)
  params = masks.apply_mask(optax.apply_updates(state.params, updates), state.mask)
  metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
             "finite": jnp.isfinite(loss) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(p))
                                                                 for p in jax.tree.leaves(params)]))}
  return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), metrics


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int, steps_per_epoch: int) -> np.ndarray:
  """Positions of the examples of `step`: a fresh seeded permutation per epoch, remainder dropped."""
  epoch, offset = divmod(step, steps_per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return order[offset * batch_size:(offset + 1) * batch_size]


@dataclasses.dataclass
class TrainData:
  """Member images and labels, and the test set for evaluation.

  `images`/`labels` hold the members on device (replicated) for datasets that fit (digits, CIFAR: the step gathers its
  batch on device); they are None for streamed datasets (ImageNet), whose batches are read from `host_images` (any
  `ImageSource`) on a background thread and sharded over the mesh.
  """
  images: jax.Array | None
  labels: jax.Array | None
  host_images: object
  host_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  mean: np.ndarray
  std: np.ndarray


@dataclasses.dataclass
class LoopConfig:
  name: str
  seed: int
  total_steps: int
  steps_per_epoch: int
  batch_size: int
  augment: str
  eval_every_steps: int
  log_every_steps: int
  checkpoint_every_steps: int
  eval_batch_size: int = 512
  save_at_step: int = -1            # late rewinding: save params + batch_stats at this step
  save_at_step_path: str = ""


def make_jitted_step(model, tx, loop: LoopConfig, data: TrainData, mesh: Mesh, donate: bool = True,
                     step_fn=None):
  """jit(state, inputs) -> (state, metrics), state donated (unless `donate` is False) and replicated, batch sharded
  along the mesh. `step_fn` (a recipe's step, with `train_step`'s signature) defaults to `train_step`.

  inputs are (member images, member labels, batch positions) on device, or (images, labels) of a streamed batch.
  Build it once per run and reuse it for every model: each call of this function compiles anew.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P(inference.DATA_AXIS))
  step = functools.partial(step_fn or train_step, model=model, tx=tx, seed=loop.seed, augment_kind=loop.augment,
                           mean=data.mean, std=data.std)

  def gather_and_step(state, images, labels, idx):
    return step(state, jax.lax.with_sharding_constraint(images[idx], batch_sharding), labels[idx])
  jitted = jax.jit(gather_and_step if data.images is not None else step, donate_argnums=0 if donate else (),
                   out_shardings=(replicated, replicated))
  return lambda state, inputs: jitted(state, *inputs)


def step_inputs(loop: LoopConfig, data: TrainData, mesh: Mesh, first_step: int):
  """Yields each step's inputs from `first_step` on; streamed batches are read two steps ahead on a thread, each
  process reading and decoding only its own devices' part of the global batch."""
  batch_sharding = NamedSharding(mesh, P(inference.DATA_AXIS))
  num_members = len(data.host_labels)

  def make(step):
    idx = batch_indices(loop.seed, step, num_members, loop.batch_size, loop.steps_per_epoch)
    if data.images is not None:
      return data.images, data.labels, inference.global_array(idx.astype(np.int32), batch_sharding)
    return (inference.process_local_batch(data.host_images, idx, batch_sharding),
            inference.process_local_batch(data.host_labels, idx, batch_sharding))
  if data.images is not None:
    yield from (make(step) for step in range(first_step, loop.total_steps))
    return
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    ahead = collections.deque(pool.submit(make, s) for s in range(first_step, min(first_step + 2, loop.total_steps)))
    for step in range(first_step, loop.total_steps):
      if step + 2 < loop.total_steps:
        ahead.append(pool.submit(make, step + 2))
      yield ahead.popleft().result()


def evaluate(logits_fn, state: TrainState, data: TrainData, mesh: Mesh, batch_size: int) -> dict:
  """Test accuracy/loss and train (member, at most MAX_TRAIN_EVAL evenly spaced) accuracy/loss in eval mode."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  result = {}
  train_positions = np.linspace(0, len(data.host_labels) - 1, min(len(data.host_labels), MAX_TRAIN_EVAL)).astype(int)
  for split, images, labels, positions in (
      ("test", data.test_images, data.test_labels, np.arange(len(data.test_labels))),
      ("train", data.host_images, data.host_labels, train_positions)):
    logits = inference.predict_logits(logits_fn, variables, images, positions, batch_size, mesh)
    labels = labels[positions]
    result[f"{split}_accuracy"], result[f"{split}_loss"] = inference.accuracy_and_loss(logits, labels)
  return result


def run_loop(state: TrainState, jitted_step, logits_fn, loop: LoopConfig, data: TrainData, mesh: Mesh,
             checkpoint_dir: str, log: io.MetricsLog) -> tuple[TrainState, dict]:
  """Trains from `state` (or its latest checkpoint in checkpoint_dir) to `loop.total_steps` with `jitted_step`
  (`make_jitted_step`), evaluating with `logits_fn` (`inference.make_logits_fn`)."""
  log = log if jax.process_index() == 0 else _NotWritten()
  manager = checkpoint.manager(checkpoint_dir)
  resumed_from, state = checkpoint.restore_latest(manager, state, NamedSharding(mesh, P()))
  if resumed_from is not None:
    logging.info("[%s] resuming from the checkpoint at step %d", loop.name, resumed_from)
  log.truncate_after(int(state.step))
  meter = progress.Meter(loop.name, loop.total_steps, int(state.step), loop.batch_size)
  pending, last_eval = [], {}
  for step, inputs in zip(range(int(state.step), loop.total_steps), step_inputs(loop, data, mesh, int(state.step))):
    if step == loop.save_at_step and not checkpoint.exists(loop.save_at_step_path):
      checkpoint.save(loop.save_at_step_path, {"params": state.params, "batch_stats": state.batch_stats})
    state, metrics = jitted_step(state, inputs)
    pending.append(metrics)
    done = step + 1
    last = done == loop.total_steps
    do_eval = done % loop.eval_every_steps == 0 or last
    do_checkpoint = bool(loop.checkpoint_every_steps) and done % loop.checkpoint_every_steps == 0 and not last
    if done % loop.log_every_steps == 0 or do_eval or do_checkpoint or last:
      _flush(pending, done - len(pending), loop, meter, log, manager)
      pending = []
    if do_eval:
      last_eval = evaluate(logits_fn, state, data, mesh, loop.eval_batch_size)
      meter.skip_time()
      log({"phase": "eval", "step": done, "epoch": done / loop.steps_per_epoch, **last_eval})
      logging.info("[%s] step %d eval: %s", loop.name, done,
                   ", ".join(f"{k} {v:.4f}" for k, v in sorted(last_eval.items())))
    if do_checkpoint:
      manager.save(done, args=checkpoint.ocp.args.StandardSave(state))
      manager.wait_until_finished()
  manager.close()
  return state, last_eval


class _NotWritten:
  """The metrics log of processes other than 0: every process computes the same lines, process 0 writes them."""

  def truncate_after(self, step: int) -> None:
    del step

  def __call__(self, record: dict) -> None:
    del record


def _flush(pending, first_step: int, loop: LoopConfig, meter, log, manager) -> None:
  """Fetches the pending step metrics in one host transfer, checks them and logs them.

  Runs before every checkpoint, so a NaN or Inf stops training before it could be saved.
  """
  if not pending:
    return
  fetched = jax.device_get(pending)
  for offset, m in enumerate(fetched):
    step = first_step + offset + 1
    if not m["finite"]:
      kept = manager.latest_step()
      raise NonFiniteError(
          f"[{loop.name}] the loss or the parameters became NaN or Inf at step {step} (loss {m['loss']}); "
          + (f"the checkpoint of step {kept} is kept" if kept is not None else "no periodic checkpoint was saved")
          + "; lower train.learning_rate and relaunch with --restart")
    log({"phase": "train", "step": step, "loss": float(m["loss"]), "accuracy": float(m["accuracy"])})
  meter.update(first_step + len(fetched), float(fetched[-1]["loss"]), float(fetched[-1]["accuracy"]))
