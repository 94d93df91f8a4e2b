"""Defence D2 (ours: the paper's own defence is unknown, see docs/adversarial.md): training with an input-gradient-
norm penalty ("double backpropagation", Drucker & LeCun 1992; Ross & Doshi-Velez 2018).

The adversarial attacks read how much the model's output moves near an example, and the input-gradient norm is that
movement's small-eps limit (attacks/adversarial.py); members overfit into flat regions, non-members do not. This
recipe trains a dense model from w0 on

    cross-entropy + weight * mean_i || grad_{x_i} l(x_i, y_i) ||_2^2

with x_i the (augmented) image in pixel units [0, 1], before normalisation, as the attacks perturb it. The gradient
is that of the batch-mean loss times the batch size, i.e. each example's own loss gradient; in train mode BatchNorm's
batch statistics add a small coupling between examples (the usual double-backprop practice with BatchNorm).
`weight` is `lottery.input_gradient_penalty`, carried in the train state (`TrainState.extra`), so the step compiles
once whatever its value. Control name and model name: `input_gradient_penalty`.
"""
import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax.data import augment
from mialth_jax.lottery import recipes
from mialth_jax.lottery import train as train_lib

DEFAULT_WEIGHT = 0.01  # config_lib.base()'s lottery.input_gradient_penalty; read by configs written before it existed


def penalised_step(state, images, labels, *, model, tx, seed: int, augment_kind: str, mean, std,
                   loss_fn=train_lib.cross_entropy):
  """train.train_step with the penalty added to the loss; metrics["loss"] is the penalised objective."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  pixels = augment.augment(key, images, augment_kind).astype(jnp.float32) / 255.0

  def objective(params):
    def classification(x):
      logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    ((x - mean) / std).astype(model.dtype), train=True, mutable=["batch_stats"])
      return loss_fn(logits, labels), (logits, updates["batch_stats"])
    (loss, aux), input_grad = jax.value_and_grad(classification, has_aux=True)(pixels)
    per_example = input_grad * images.shape[0]  # the loss is a batch mean
    penalty = jnp.mean(jnp.sum(per_example.reshape(images.shape[0], -1) ** 2, axis=1))
    return loss + state.extra["weight"] * penalty, aux

  (total, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  return train_lib.masked_update(state, grads, tx, loss=total, logits=logits, labels=labels, batch_stats=batch_stats)


@recipes.RECIPES.register("input_gradient_penalty")
class InputGradientPenalty(recipes.Recipe):
  """A dense model from w0, trained with the penalty (its own compiled step)."""
  title = "input-gradient penalty"
  step_fn = staticmethod(penalised_step)

  def plan(self, config, planned):
    return [recipes.ModelSpec("input_gradient_penalty", "input_gradient_penalty")]

  def extra(self, ctx, spec):
    return {"weight": np.float32(ctx.config.lottery.get("input_gradient_penalty", DEFAULT_WEIGHT))}
