"""The loop that runs the train step (`train.make_jitted_step`) with evaluation, progress, metrics and checkpoints.

A run resumed from a checkpoint at step k continues exactly as an uninterrupted run would (train.py: data order and
augmentation are pure functions of (seed, step)).
"""
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import errors, inference
from mialth_jax.lottery.train import LoopConfig, TrainData, step_inputs
from mialth_jax.lottery.train_state import TrainState
from mialth_jax.utils import checkpoint, interrupts, io, progress

MAX_TRAIN_EVAL = 10_000  # members evaluated for train accuracy (all of them for CIFAR-sized runs)


class NonFiniteError(errors.UserError, FloatingPointError):
  """NaN or Inf in the loss or parameters."""


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
  (`make_jitted_step`), evaluating with `logits_fn` (`inference.make_logits_fn`); with `loop.stop_at`, until the first
  evaluation that reaches it (the returned state's step says where). A state already at `loop.total_steps` (a model
  planned with no steps to train) is evaluated once as it is."""
  log = log if jax.process_index() == 0 else _NotWritten()
  manager = checkpoint.manager(checkpoint_dir)
  resumed_from, state = checkpoint.restore_latest(manager, state, NamedSharding(mesh, P()))
  if resumed_from is not None:
    logging.info("[%s] resuming from the checkpoint at step %d", loop.name, resumed_from)
    _keep_point(state, loop, resumed_from)  # a kill between that checkpoint and the point kept at its step
  log.truncate_after(int(state.step))
  meter = progress.Meter(loop.name, loop.total_steps, int(state.step), loop.batch_size)
  pending = []
  last_eval = {}
  for step, inputs in zip(range(int(state.step), loop.total_steps), step_inputs(loop, data, mesh, int(state.step))):
    interrupts.check()
    if step == loop.save_at_step:
      _keep(state, loop.save_at_step_path)
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
      if loop.stop_at is not None and loop.stop_at.met(last_eval):
        logging.info("[%s] stopped at step %d of %d: %s reached (train.stop_at=%s)", loop.name, done,
                     loop.total_steps, loop.stop_at.metric, loop.stop_at)
        break
    if do_checkpoint:
      checkpoint.save_step(manager, done, state)
    _keep_point(state, loop, done)
  manager.close()
  if int(state.step) == loop.total_steps and not last_eval:  # nothing was left to train: evaluated as it starts
    last_eval = evaluate(logits_fn, state, data, mesh, loop.eval_batch_size)
    log({"phase": "eval", "step": loop.total_steps, "epoch": loop.total_steps / loop.steps_per_epoch, **last_eval})
  return state, last_eval


def _keep_point(state: TrainState, loop: LoopConfig, step: int) -> None:
  """The weights at `step` if train.keep_every_epochs keeps them there (every keep_every_steps, before the last)."""
  if loop.keep_every_steps and step % loop.keep_every_steps == 0 and step < loop.total_steps:
    _keep(state, os.path.join(loop.keep_dir, str(step)))


def _keep(state: TrainState, path: str) -> None:
  """The weights at this step, kept for good (the late-rewind point, train.keep_every_epochs) unless a relaunch finds
  them there."""
  if not checkpoint.exists(path):
    checkpoint.save(path, {"params": state.params, "batch_stats": state.batch_stats})


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
