"""The defences' train step: `lottery.train.train_step` plus what the model's `TrainState.extra` holds.

  extra["first_step"]  where a phase that starts from trained weights starts (fine-tuning, ADMM)
  extra["admm"]        ADMM's Z, U, rho, ...: the proximal term joins the loss; Z and U are updated at round ends
  extra["minmax"]      Nasr et al.'s inference network h: one h-step before the classifier's, the privacy term joins it

Every setting is an array in `extra`, so one compiled step per combination serves every lambda, rho and sparsity.
A phase that starts at step k of the run (fine-tuning, the ADMM W-phase: `first_step` > 0) continues the run's
learning-rate schedule from step k: the optimiser's count is set to the train step before each update, so the phase
ends annealed as the run's training does (no separate learning-rate factor: multiplying the updates, even by 1,
would change how XLA fuses the update and cost bit-equality). With rho 0 and lambda 0 the step is `train_step` bit for
bit (tests/test_defences.py checks both).
"""
import jax
import jax.numpy as jnp
import optax

from mialth_jax.data import augment
from mialth_jax.defences import admm, minmax
from mialth_jax.lottery import masks
from mialth_jax.lottery import train as train_lib


def defence_step(state, images, labels, *, model, tx, seed: int, augment_kind: str, mean, std,
                 loss_fn=train_lib.cross_entropy):
  """One step with `train_step`'s signature; metrics["loss"] is the whole objective."""
  extra = dict(state.extra)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  x = augment.normalise(augment.augment(key, images, augment_kind), mean, std, model.dtype)
  if "minmax" in extra:
    extra["minmax"] = _inference_step(extra["minmax"], state, x, labels, key, model, augment_kind, mean, std)

  def objective(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                  mutable=["batch_stats"])
    loss = loss_fn(logits, labels)
    if "minmax" in extra:
      loss = loss + minmax.privacy_term(extra["minmax"], logits, labels, state.step)
    if "admm" in extra:
      loss = loss + admm.proximal_term(extra["admm"], masks.prunable_leaves(params, state.mask))
    return loss, (logits, updates["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  opt_state = optax.tree_utils.tree_set(state.opt_state, count=state.step)
  new_state, metrics = train_lib.masked_update(state, grads, tx, loss=loss, logits=logits, labels=labels,
                                               batch_stats=batch_stats, opt_state=opt_state)
  if "admm" in extra:
    extra["admm"] = admm.after_step(extra["admm"], masks.prunable_leaves(new_state.params, state.mask), state.step + 1)
  return new_state.replace(extra=extra), metrics


def _inference_step(state: dict, train_state, x, labels, key, model, augment_kind: str, mean, std) -> dict:
  """h's step on the classifier's eval-mode logits of this member batch and of an equal reference batch."""
  ref_images, ref_labels, augment_key = minmax.reference_batch(state, key, x.shape[0])
  ref_x = augment.normalise(augment.augment(augment_key, ref_images, augment_kind), mean, std, model.dtype)
  variables = {"params": train_state.params, "batch_stats": train_state.batch_stats}
  logits = model.apply(variables, jnp.concatenate([x, ref_x]), train=False)
  return minmax.inference_step(state, logits[:x.shape[0]], labels, logits[x.shape[0]:], ref_labels, train_state.step)
