"""What a feature adds to the one train step (`train.train_step`): a `StepHook`, registered under the name of its
slot in `TrainState.extra`.

A recipe turns a hook on by giving its model an `extra` dict with the hook's name as a key (`Recipe.extra`); the
value there is the hook's own state (a pytree: dual variables, a second network, a weight). The step runs the hooks
whose names are keys of `state.extra`, by their `order` (ties in registration order; the order of loss terms decides
float rounding, so it is fixed rather than left to the order of imports), each part optional:

  before(slot, batch)                      -> slot      before the gradient (e.g. a second network's step)
  loss_term(slot, params, logits, batch)   -> scalar    added to the loss, in hook order
  objective(slot, batch, loss_fn)          -> f(params) -> (loss, (logits, batch_stats)): replaces the forward pass
                                                        and the loss (e.g. a penalty on the inputs' gradients)
  gradients(slot, objective, params, batch)-> ((loss, (logits, batch_stats)), grads): replaces jax.value_and_grad
                                                        (e.g. per-example clipped and noised gradients; the step's
                                                        own objective also takes (params, inputs, labels) of some
                                                        rows of the batch)
  optimizer_state(slot, batch)             -> opt_state the optimiser state the update starts from
  after(slot, new_state, batch)            -> slot      after the update (e.g. dual-variable updates)

At most one active hook may replace each of objective, gradients and optimizer_state. Every value a hook reads from
its slot is an array, so one compiled step serves every setting of it; a model without extra state runs the plain
step, unchanged.
"""
import dataclasses
from typing import Any, Callable

from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class StepBatch:
  """What the step knows when the hooks run (a plain container of traced values, not a pytree)."""
  state: Any            # the TrainState the step started from
  images: Any           # uint8 member images of the batch
  labels: Any
  inputs: Any           # the augmented, normalised images the network sees
  key: Any              # the step's PRNG key: fold_in(PRNGKey(seed), step)
  model: Any
  augment_kind: str
  mean: Any
  std: Any
  valid: Any = None     # bool per row of a padded batch (LoopConfig.batch_selection); None: every row is an example


@dataclasses.dataclass(frozen=True)
class StepHook:
  order: int = 0
  before: Callable | None = None
  loss_term: Callable | None = None
  objective: Callable | None = None
  gradients: Callable | None = None
  optimizer_state: Callable | None = None
  after: Callable | None = None


STEP_HOOKS = Registry("train-step hook")
REPLACING = ("objective", "gradients", "optimizer_state")


def active(extra) -> list[tuple[str, StepHook]]:
  """(name, hook) of every registered hook with a slot in `extra`, by `order` (then registration order); a key of
  `extra` that no hook owns is a bug of the recipe that made it."""
  if not isinstance(extra, dict):
    return []
  unknown = sorted(set(extra) - set(STEP_HOOKS))
  if unknown:
    raise ValueError(f"TrainState.extra holds {unknown}, which no registered train-step hook owns")
  hooks = sorted(((name, hook) for name, hook in STEP_HOOKS.items() if name in extra), key=lambda h: h[1].order)
  for part in REPLACING:
    owners = [name for name, hook in hooks if getattr(hook, part) is not None]
    if len(owners) > 1:
      raise ValueError(f"train-step hooks {owners} each replace the step's {part}; at most one may")
  return hooks


def replacement(hooks: list[tuple[str, StepHook]], part: str):
  """(name, function) of the active hook that replaces `part`, or (None, None)."""
  return next(((name, getattr(hook, part)) for name, hook in hooks if getattr(hook, part) is not None), (None, None))
