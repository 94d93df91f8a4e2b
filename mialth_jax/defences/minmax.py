"""Adversarial regularisation, the "Min-Max game" (Nasr, Shokri, Houmansadr, CCS 2018), as its official code
(`SPIN-UMass/ML-Privacy-Regulization`, PPN_ALEXNET_GIT.py) plays it:

    min_f  CE(f) + lambda * mean_{(x, y) in members} (h(f(x), y) - 1)^2
    min_h  mean_{members} h(f(x), y)^2 + mean_{reference} (h(f(x'), y') - 1)^2

h is the inference network below: it reads the classifier's raw logits and the label one-hot encoded as -1 / +1, and
is trained with the squared error (not log-loss) to output 0 on members and 1 on reference non-members; the
classifier's privacy term pushes members towards the reference label. Each train step alternates one h-step (Adam, on
a member batch and an equal reference batch, the classifier in eval mode) and one classifier step (train mode, with
the updated h), inside one jitted step. During the first `warmup_step` steps h is not trained and lambda counts as 0
(the code trains plainly for 4 epochs first).

Deviations, all config values: the code alternates 3 h-steps with 2 classifier steps (its loop bounds) per round; we
alternate 1:1 (the paper's Algorithm 1 with k = 1). h's Adam rate is 1e-5 there over 400 epochs; our runs are 10-100x
shorter, so the default is 1e-3 (defences.minmax.learning_rate). The reference batch is drawn with replacement.

The recipe `minmax` trains a dense model from w0 with the game, one per defences.minmax.lambdas (minmax_l1, ...); h and
its settings are the `minmax` step hook's slot of the train state. The reference set: defences/reference.py.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mialth_jax import errors
from mialth_jax.data import augment
from mialth_jax.data.examples import ExampleSource
from mialth_jax.defences import phase, reference
from mialth_jax.lottery import recipes, step_hooks
from mialth_jax.utils import config_sections

_REFERENCE_KEY = 0x4EF  # folded into the step's key for the reference batch and its augmentation


class InferenceNet(nn.Module):
  """Nasr et al.'s h(logits, labels): 1024-512-64 on the logits, 128-64 on the +-1 labels, 256-128-64-1 on both;
  weights N(0, 0.01^2), biases 0; a sigmoid member probability (1 = reference, in the code's convention)."""

  @nn.compact
  def __call__(self, logits: jax.Array, labels_pm1: jax.Array) -> jax.Array:
    dense = lambda width: nn.Dense(width, kernel_init=nn.initializers.normal(0.01))  # noqa: E731
    a = logits
    for width in (1024, 512, 64):
      a = nn.relu(dense(width)(a))
    b = labels_pm1
    for width in (128, 64):
      b = nn.relu(dense(width)(b))
    c = jnp.concatenate([a, b], axis=-1)
    for width in (256, 128, 64):
      c = nn.relu(dense(width)(c))
    return nn.sigmoid(dense(1)(c))[..., 0]


def plus_minus_one_hot(labels: jax.Array, num_classes: int) -> jax.Array:
  """The code's label encoding: -1 everywhere, +1 at the true class."""
  return 2.0 * jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0


def h_apply(h_params, logits: jax.Array, labels: jax.Array) -> jax.Array:
  logits = logits.astype(jnp.float32)
  return InferenceNet().apply({"params": h_params}, logits, plus_minus_one_hot(labels, logits.shape[-1]))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(seed: int, num_classes: int):
  """h's initial parameters (one compiled call, not a dispatch per layer)."""
  zeros = jnp.zeros((1, num_classes))
  return InferenceNet().init(jax.random.PRNGKey(seed), zeros, zeros)["params"]


def init_state(seed: int, num_classes: int, images: np.ndarray, labels: np.ndarray, *, lam: float,
               learning_rate: float, warmup_step: int) -> dict:
  """The Min-Max state: h's parameters and Adam state, the reference images and labels, lambda, h's rate, warm-up."""
  h_params = _init(seed, num_classes)
  return {"h_params": h_params, "h_opt": optax.scale_by_adam().init(h_params), "images": np.asarray(images, np.uint8),
          "labels": np.asarray(labels, np.int32), "lam": np.float32(lam), "h_lr": np.float32(learning_rate),
          "warmup_step": np.int32(warmup_step)}


def reference_batch(state: dict, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(uint8 images, labels, augmentation key) of a reference batch as large as the member batch."""
  pick, augment_key = jax.random.split(jax.random.fold_in(key, _REFERENCE_KEY))
  idx = jax.random.randint(pick, (batch_size,), 0, state["labels"].shape[0])
  return state["images"][idx], state["labels"][idx], augment_key


def inference_step(state: dict, member_logits, member_labels, reference_logits, reference_labels, step) -> dict:
  """One Adam step of h on members (target 0) and reference non-members (target 1), after the warm-up."""
  def h_loss(h_params):
    members = h_apply(h_params, member_logits, member_labels)
    reference = h_apply(h_params, reference_logits, reference_labels)
    return jnp.mean(jnp.concatenate([jnp.square(members), jnp.square(reference - 1.0)]))

  def update(state):
    grads = jax.grad(h_loss)(state["h_params"])
    updates, h_opt = optax.scale_by_adam().update(grads, state["h_opt"], state["h_params"])
    h_params = optax.apply_updates(state["h_params"], jax.tree.map(lambda u: -state["h_lr"] * u, updates))
    return {**state, "h_params": h_params, "h_opt": h_opt}
  return jax.lax.cond(step >= state["warmup_step"], update, lambda s: s, state)


def privacy_term(state: dict, logits: jax.Array, labels: jax.Array, step) -> jax.Array:
  """lambda * mean((h(f(x), y) - 1)^2) over the member batch; lambda counts as 0 during the warm-up."""
  lam = jnp.where(step >= state["warmup_step"], state["lam"], jnp.zeros((), jnp.float32))
  return lam * jnp.mean(jnp.square(h_apply(state["h_params"], logits, labels) - 1.0))


def _before(state: dict, batch: step_hooks.StepBatch) -> dict:
  """h's step on the classifier's eval-mode logits of this member batch and of an equal reference batch."""
  x, model = batch.inputs, batch.model
  ref_images, ref_labels, augment_key = reference_batch(state, batch.key, x.shape[0])
  ref_x = augment.normalise(augment.augment(augment_key, ref_images, batch.augment_kind), batch.mean, batch.std,
                            model.dtype)
  variables = {"params": batch.state.params, "batch_stats": batch.state.batch_stats}
  logits = model.apply(variables, jnp.concatenate([x, ref_x]), train=False)
  return inference_step(state, logits[:x.shape[0]], batch.labels, logits[x.shape[0]:], ref_labels, batch.state.step)


def _loss_term(state: dict, params, logits, batch: step_hooks.StepBatch) -> jax.Array:
  del params
  return privacy_term(state, logits, batch.labels, batch.state.step)


step_hooks.STEP_HOOKS.register("minmax", step_hooks.StepHook(order=10, before=_before, loss_term=_loss_term))
phase.RECORDED["minmax"] = lambda state: {"lam": state["lam"], "h_lr": state["h_lr"],
                                          "warmup_step": state["warmup_step"],
                                          "reference_size": int(state["labels"].shape[0])}


def game_state(ctx, spec: recipes.ModelSpec, warmup_step: int) -> dict:
  """The `minmax` slot of a model of `spec`: a fresh h, the run's reference set, the spec's lambda."""
  if not ctx.dataset.in_memory:
    raise errors.ConfigError("defences.minmax: the reference set must fit in memory (digits, npz, tfds CIFAR)")
  ids = reference.load(ctx)
  source = ExampleSource(ctx.dataset)
  settings = ctx.config.defences.minmax
  return init_state(ctx.config.seed, ctx.dataset.num_classes, source[ids], source.labels(ids),
                    lam=spec.option("lambda"), learning_rate=settings.learning_rate, warmup_step=warmup_step)


@recipes.RECIPES.register("minmax")
class MinMax(phase.Defence):
  """A dense model trained from w0 with the Min-Max game, one per defences.minmax.lambdas."""
  title = "Min-Max"

  def plan(self, config, planned):
    return [recipes.ModelSpec(f"minmax_l{lam:g}", "minmax", options=(("lambda", float(lam)),))
            for lam in config.defences.minmax.lambdas]

  def state(self, ctx, spec):
    warmup = int(round(ctx.config.defences.minmax.warmup_fraction * ctx.total_steps))
    return {**super().state(ctx, spec), "minmax": game_state(ctx, spec, warmup)}


def _validate(config) -> None:
  m, check, number = config.defences.minmax, phase.check, phase.is_number
  for field in ("lambdas", "combined_lambdas"):
    values = tuple(m[field])
    check(all(number(v) and v >= 0 for v in values), f"minmax.{field}", values, "lambdas >= 0")
    check(len(set(values)) == len(values), f"minmax.{field}", values, "distinct lambdas")
  check(number(m.warmup_fraction) and 0 <= m.warmup_fraction < 1, "minmax.warmup_fraction", m.warmup_fraction,
        "a share of the run in [0, 1)")
  check(isinstance(m.reference_size, int) and (m.reference_size == -1 or m.reference_size >= 1),
        "minmax.reference_size", m.reference_size, "-1 (half the unused training images) or a count >= 1")
  check(number(m.learning_rate) and m.learning_rate > 0, "minmax.learning_rate", m.learning_rate, "a rate > 0")
  if reference.planned(config) and config.data.num_train == -1:
    raise errors.ConfigError("defences.minmax: data.num_train=-1 leaves no unused training images for the reference "
                             "set; set data.num_train below the size of the train split")


config_sections.register("defences.minmax", "the Min-Max game, Nasr et al. (minmax, admm_minmax)", {
    "lambdas": ((1.0,), "the minmax models: one per lambda (the code's alpha = 1)"),
    "combined_lambdas": ((1.0,), "the admm_minmax models: one per sparsity and lambda"),
    "warmup_fraction": (0.1, "minmax: plain training first (the code: 4 epochs), h untrained"),
    "reference_size": (-1, "reference non-members: drawn from the unused training images (-1: half)"),
    "learning_rate": (1e-3, "h's Adam rate (the code: 1e-5 over 400 epochs)"),
}, validate=_validate)
