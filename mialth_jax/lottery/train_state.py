"""The train state pytree and the optimiser built from `config.train`."""
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mialth_jax import errors


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 scalar
  params: Any
  batch_stats: Any
  opt_state: Any
  mask: Any              # bool pytree parallel to params (see lottery.masks)
  extra: Any = None      # a recipe's own training state (e.g. a defence's second network); None for most


def num_train_steps(train: ml_collections.ConfigDict, num_examples: int) -> tuple[int, int]:
  """(total steps, steps per epoch): the one place where num_epochs / num_steps become steps."""
  if train.batch_size <= 0:
    raise errors.ConfigError(f"train.batch_size must be > 0, got {train.batch_size}")
  steps_per_epoch = num_examples // train.batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError(f"train.batch_size={train.batch_size} exceeds the {num_examples} training examples")
  has_epochs = train.num_epochs > 0
  has_steps = train.num_steps > 0
  if has_epochs == has_steps:
    raise errors.ConfigError("set exactly one of train.num_epochs and train.num_steps (the other to -1); got "
                     f"num_epochs={train.num_epochs}, num_steps={train.num_steps}")
  total = train.num_steps if has_steps else math.ceil(train.num_epochs * steps_per_epoch)
  return int(total), steps_per_epoch


SCHEDULES = ("cosine", "step", "constant")


def learning_rate_schedule(train: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int):
  """Linear warm-up, then cosine decay, step decay at fractions of training, or a constant rate."""
  warmup = int(round(train.warmup_epochs * steps_per_epoch))
  lr = train.learning_rate
  if train.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  elif train.schedule == "step":
    boundaries = {int(round(f * total_steps)) - warmup: train.step_factor for f in train.step_boundaries}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif train.schedule == "constant":
    main = optax.constant_schedule(lr)
  else:
    raise errors.ConfigError(f"train.schedule={train.schedule!r} is unknown; expected one of {', '.join(SCHEDULES)}")
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(train: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int):
  """SGD with momentum and decoupled-from-loss (PyTorch-style, added to the gradient) weight decay."""
  schedule = learning_rate_schedule(train, total_steps, steps_per_epoch)
  return optax.chain(
      optax.add_decayed_weights(train.weight_decay),
      optax.sgd(schedule, momentum=train.momentum or None, nesterov=train.nesterov and train.momentum > 0))


def create_state(params, batch_stats, mask, tx, step=0, extra=None) -> TrainState:
  return TrainState(step=jnp.asarray(step, jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), mask=mask, extra=extra)
