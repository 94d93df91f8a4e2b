"""Defence D2 (ours: the paper's own defence is unknown, see docs/adversarial.md): training with an input-gradient-
norm penalty ("double backpropagation", Drucker & LeCun 1992; Ross & Doshi-Velez 2018).

The adversarial attacks read how much the model's output moves near an example, and the input-gradient norm is that
movement's small-eps limit (attacks/adversarial.py); members overfit into flat regions, non-members do not. This
recipe trains a dense model from w0 on

    cross-entropy + weight * mean_i || grad_{x_i} l(x_i, y_i) ||_2^2

with x_i the (augmented) image in pixel units [0, 1], before normalisation, as the attacks perturb it. The gradient
is that of the batch-mean loss times the batch size, i.e. each example's own loss gradient; in train mode BatchNorm's
batch statistics add a small coupling between examples (the usual double-backprop practice with BatchNorm).
`weight` is `defences.input_gradient_penalty.weight`, the `input_gradient_penalty` step hook's slot of the train state
(the hook replaces the step's objective), so the step compiles once whatever its value. Control name and model name:
`input_gradient_penalty`.
"""
import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax import errors
from mialth_jax.data import augment
from mialth_jax.lottery import recipes, step_hooks
from mialth_jax.utils import config_sections


def penalised_objective(weight, batch: step_hooks.StepBatch, loss_fn):
  """params -> (loss + weight * mean input-gradient norm^2, (logits, batch_stats)), the images in pixel units."""
  model, images, labels, state = batch.model, batch.images, batch.labels, batch.state
  pixels = augment.augment(batch.key, images, batch.augment_kind).astype(jnp.float32) / 255.0

  def objective(params):
    def classification(x):
      logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    ((x - batch.mean) / batch.std).astype(model.dtype), train=True,
                                    mutable=["batch_stats"])
      return loss_fn(logits, labels), (logits, updates["batch_stats"])
    (loss, aux), input_grad = jax.value_and_grad(classification, has_aux=True)(pixels)
    per_example = input_grad * images.shape[0]  # the loss is a batch mean
    penalty = jnp.mean(jnp.sum(per_example.reshape(images.shape[0], -1) ** 2, axis=1))
    return loss + weight * penalty, aux
  return objective


step_hooks.STEP_HOOKS.register("input_gradient_penalty", step_hooks.StepHook(objective=penalised_objective))


@recipes.RECIPES.register("input_gradient_penalty")
class InputGradientPenalty(recipes.Recipe):
  """A dense model from w0, trained with the penalty."""
  title = "input-gradient penalty"

  def plan(self, config, planned):
    return [recipes.ModelSpec("input_gradient_penalty", "input_gradient_penalty")]

  def extra(self, ctx, spec):
    return {"input_gradient_penalty": np.float32(ctx.config.defences.input_gradient_penalty.weight)}


def _validate(config) -> None:
  weight = config.defences.input_gradient_penalty.weight
  if not weight >= 0:
    raise errors.ConfigError(f"defences.input_gradient_penalty.weight must be >= 0, got {weight}")


config_sections.register("defences.input_gradient_penalty", "defence D2: the input_gradient_penalty control", {
    "weight": (0.01, "weight of the mean ||grad_x loss||^2 added to the loss"),
}, validate=_validate)
