"""The one jitted masked train step, and what feeds it: batch positions, step inputs, the jitted step over a mesh.

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
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import inference
from mialth_jax.data import augment
from mialth_jax.lottery import masks, step_hooks
from mialth_jax.lottery.train_state import TrainState


def cross_entropy(logits, labels):
  """The classification loss of every recipe that does not bring its own: mean softmax cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: TrainState, images, labels, valid=None, *, model, tx, seed: int, augment_kind: str, mean, std,
               loss_fn=cross_entropy):
  """One SGD step on `loss_fn(logits, labels)`, plus what the hooks of the model's extra state add
  (`step_hooks`); the mask zeroes gradients and parameters so pruned weights and their momentum stay 0.0.
  metrics["loss"] is the whole objective. `valid` (bool per row, from a loop's `batch_selection`) marks the rows of
  a padded batch that are real examples; None: every row is (the epoch shuffles of `batch_indices`)."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  x = augment.normalise(augment.augment(key, images, augment_kind), mean, std, model.dtype)
  hooks = step_hooks.active(state.extra)
  batch = step_hooks.StepBatch(state, images, labels, x, key, model, augment_kind, mean, std, valid)
  extra = dict(state.extra) if hooks else state.extra
  for name, hook in hooks:
    if hook.before is not None:
      extra[name] = hook.before(extra[name], batch)
  objective = _objective(hooks, extra, batch, loss_fn)
  owner, gradients = step_hooks.replacement(hooks, "gradients")
  if gradients is None:
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  else:
    (loss, (logits, batch_stats)), grads = gradients(extra[owner], objective, state.params, batch)
  owner, optimizer_state = step_hooks.replacement(hooks, "optimizer_state")
  opt_state = None if optimizer_state is None else optimizer_state(extra[owner], batch)
  new_state, metrics = masked_update(state, grads, tx, loss=loss, logits=logits, labels=labels,
                                     batch_stats=batch_stats, opt_state=opt_state, valid=valid)
  for name, hook in hooks:
    if hook.after is not None:
      extra[name] = hook.after(extra[name], new_state, batch)
  return new_state.replace(extra=extra), metrics


def _objective(hooks, extra, batch: step_hooks.StepBatch, loss_fn):
  """(params, inputs=batch.inputs, labels=batch.labels) -> (loss, (logits, batch_stats)): the forward pass in train
  mode and the loss with every hook's term, on the batch or on given rows of it (a gradients hook that clips per
  example calls it one example at a time), or the objective of the hook that replaces it."""
  owner, replaced = step_hooks.replacement(hooks, "objective")
  if replaced is not None:
    return replaced(extra[owner], batch, loss_fn)
  terms = [(name, hook.loss_term) for name, hook in hooks if hook.loss_term is not None]

  def objective(params, inputs=batch.inputs, labels=batch.labels):
    logits, updates = batch.model.apply({"params": params, "batch_stats": batch.state.batch_stats}, inputs,
                                        train=True, mutable=["batch_stats"])
    loss = loss_fn(logits, labels)
    for name, term in terms:
      loss = loss + term(extra[name], params, logits, batch)
    return loss, (logits, updates["batch_stats"])
  return objective


def masked_update(state: TrainState, grads, tx, *, loss, logits, labels, batch_stats, opt_state=None, valid=None):
  """The optimiser update of a step (from `opt_state`, default the state's) with the mask applied to gradients and
  parameters, and the step's metrics (accuracy over the `valid` rows of a padded batch)."""
  grads = masks.apply_mask(grads, state.mask)
  updates, opt_state = tx.update(grads, state.opt_state if opt_state is None else opt_state, state.params)
  params = masks.apply_mask(optax.apply_updates(state.params, updates), state.mask)
  correct = jnp.argmax(logits, -1) == labels
  accuracy = jnp.mean(correct) if valid is None else jnp.sum(correct & valid) / jnp.maximum(1, jnp.sum(valid))
  metrics = {"loss": loss, "accuracy": accuracy,
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
  stop_at: object = None            # stop_at.StopAt: end at the first evaluation that reaches it (None: never)
  keep_every_steps: int = 0         # keep params + batch_stats every this many steps (0: never) ...
  keep_dir: str = ""                # ... in <keep_dir>/<step>
  batch_selection: object = None    # fn(step) -> (positions, valid): a recipe's own batches, padded to one length
                                    # (e.g. DP-SGD's Poisson sampling); None: the epoch shuffles of batch_indices


def make_jitted_step(model, tx, loop: LoopConfig, data: TrainData, mesh: Mesh, donate: bool = True,
                     step_fn=None):
  """jit(state, inputs) -> (state, metrics), state donated (unless `donate` is False) and replicated, batch sharded
  along the mesh. `step_fn` (a recipe's step, with `train_step`'s signature) defaults to `train_step`.

  inputs are (member images, member labels, batch positions) on device, or (images, labels) of a streamed batch,
  each followed by the rows' validity for a padded batch (`LoopConfig.batch_selection`).
  Build it once per run and reuse it for every model: each call of this function compiles anew.

  On several CPU devices each step is waited for before the next is dispatched. With steps in flight XLA:CPU wedged
  for good now and then (launches on 4 and 8 devices, tests on 8; every thread idle, single-threaded Eigen or not): native stacks
  showed half the devices of one step waiting in the gradient all-reduce while the others' executions of that step
  waited behind executions of the next (xla::Semaphore::Acquire, BlockUntilReady), the deadlock jax-ml/jax#25861
  reports for asynchronous CPU dispatch, whose switch (jax_cpu_enable_async_dispatch) does not cover computations
  over several devices. One step in flight costs only the overlap of Python's dispatch with a step of 0.1-1 s here.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P(inference.DATA_AXIS))
  step = functools.partial(step_fn or train_step, model=model, tx=tx, seed=loop.seed, augment_kind=loop.augment,
                           mean=data.mean, std=data.std)

  def gather_and_step(state, images, labels, idx, *valid):
    return step(state, jax.lax.with_sharding_constraint(images[idx], batch_sharding), labels[idx], *valid)
  jitted = jax.jit(gather_and_step if data.images is not None else step, donate_argnums=0 if donate else (),
                   out_shardings=(replicated, replicated))
  if mesh.devices.flat[0].platform == "cpu" and mesh.size > 1:
    return lambda state, inputs: jax.block_until_ready(jitted(state, *inputs))
  return lambda state, inputs: jitted(state, *inputs)


def step_inputs(loop: LoopConfig, data: TrainData, mesh: Mesh, first_step: int):
  """Yields each step's inputs from `first_step` on; streamed batches are read two steps ahead on a thread, each
  process reading and decoding only its own devices' part of the global batch."""
  batch_sharding = NamedSharding(mesh, P(inference.DATA_AXIS))
  num_members = len(data.host_labels)

  def make(step):
    if loop.batch_selection is None:
      idx, valid = batch_indices(loop.seed, step, num_members, loop.batch_size, loop.steps_per_epoch), ()
    else:
      idx, rows = loop.batch_selection(step)
      valid = (inference.global_array(np.asarray(rows, bool), batch_sharding),)
    if data.images is not None:
      return data.images, data.labels, inference.global_array(idx.astype(np.int32), batch_sharding), *valid
    return (inference.process_local_batch(data.host_images, idx, batch_sharding),
            inference.process_local_batch(data.host_labels, idx, batch_sharding), *valid)
  if data.images is not None:
    yield from (make(step) for step in range(first_step, loop.total_steps))
    return
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    ahead = collections.deque(pool.submit(make, s) for s in range(first_step, min(first_step + 2, loop.total_steps)))
    for step in range(first_step, loop.total_steps):
      if step + 2 < loop.total_steps:
        ahead.append(pool.submit(make, step + 2))
      yield ahead.popleft().result()
