"""Adversarial examples in pixel space, and the membership signals built on them (white-box: input gradients).

Kadoche et al. 2022 ("Membership inference attacks via adversarial examples") measure how much a model's output moves
inside a small ball around an example: their abstract calls it a proxy of the model's total variation near its
training samples. Only the abstract could be read; the reconstruction followed here is
../shared/papers/mia-via-adversarial-examples.spec.md (its choices are listed in docs/adversarial.md):

  tv           0.5 * || p(x_adv) - p(x) ||_1, x_adv = PGD on the cross-entropy of the true label within B_eps(x)
  loss         l(x_adv, y) - l(x, y), the same adversarial example
  grad_norm    || grad_x l(x, y) ||_q (q = 1 for an l_inf ball, 2 for l_2): the small-eps limit of loss / eps
  min_eps      the smallest eps whose PGD example is misclassified, by bisection (Del Grosso et al., CVPR 2022)

Every function works on ONE example x [H, W, C] float32 in [0, 1] (pixels before normalisation) and its label; the
batched versions `jax.vmap` them (attacks/adversarial_signals.py), so an example's perturbation never depends on the
others in its batch. `logits_fn(x [B, H, W, C]) -> float32 [B, C]` is the network in eval mode (BatchNorm running
statistics), the normalisation inside it. Perturbations stay in B_eps(x) and in the valid range [0, 1].

Loops with a fixed number of steps (PGD, the bisection) are unrolled: XLA:CPU runs a network inside a while loop
4-8x slower than the same network unrolled (CIFAR ResNet-18 x1/8, PGD-10: 4.6 vs 35 examples/s), for a compile a
third longer.
"""
import jax
import jax.numpy as jnp

NORMS = ("linf", "l2")
_TINY = 1e-12  # guards divisions by a zero gradient or a zero perturbation


def pixel_logits_fn(model, variables, mean, std):
  """x float32 [B, H, W, C] in [0, 1] -> float32 logits, eval mode: what every attack here differentiates."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

  def logits_fn(x):
    return model.apply(variables, ((x - mean) / std).astype(model.dtype), train=False).astype(jnp.float32)
  return logits_fn


def example_loss(logits_fn, x: jax.Array, label: jax.Array) -> jax.Array:
  """Cross-entropy of one example (float32)."""
  return -jax.nn.log_softmax(logits_fn(x[None])[0])[label]


def norm_of(v: jax.Array, norm: str) -> jax.Array:
  """||v||_inf or ||v||_2 of one example's perturbation."""
  return jnp.max(jnp.abs(v)) if norm == "linf" else jnp.sqrt(jnp.sum(v * v))


def dual_norm(g: jax.Array, norm: str) -> jax.Array:
  """The dual norm: ||g||_1 for an l_inf ball, ||g||_2 for an l_2 ball (sup of g . d over the unit ball)."""
  return jnp.sum(jnp.abs(g)) if norm == "linf" else jnp.sqrt(jnp.sum(g * g))


def project(delta: jax.Array, eps, norm: str) -> jax.Array:
  """delta projected onto the eps ball of `norm`."""
  if norm == "linf":
    return jnp.clip(delta, -eps, eps)
  return delta * jnp.minimum(1.0, eps / jnp.maximum(norm_of(delta, "l2"), _TINY))


def steepest_ascent(g: jax.Array, norm: str) -> jax.Array:
  """The unit-ball direction that increases the loss fastest: sign(g) (l_inf), g / ||g||_2 (l_2)."""
  return jnp.sign(g) if norm == "linf" else g / jnp.maximum(norm_of(g, "l2"), _TINY)


def _inside(x: jax.Array, delta: jax.Array) -> jax.Array:
  """delta clipped so that x + delta lies in [0, 1] (clipping each pixel only shrinks the perturbation, so the
  result stays in the ball delta was in)."""
  return jnp.clip(delta, -x, 1.0 - x)


def _point(x: jax.Array, delta: jax.Array) -> jax.Array:
  return jnp.clip(x + delta, 0.0, 1.0)


def fgsm(logits_fn, x: jax.Array, label: jax.Array, eps, norm: str = "linf") -> jax.Array:
  """Fast gradient (sign) method: one step of size eps along the steepest ascent of the loss (Goodfellow et al.)."""
  g = jax.grad(lambda z: example_loss(logits_fn, z, label))(x)
  return _point(x, _inside(x, eps * steepest_ascent(g, norm)))


def random_start(key: jax.Array, x: jax.Array, eps, norm: str) -> jax.Array:
  """A uniform draw from the eps ball (l_inf: per pixel; l_2: uniform direction, radius eps * u^(1/d))."""
  if norm == "linf":
    return jax.random.uniform(key, x.shape, jnp.float32, -1.0, 1.0) * eps
  direction_key, radius_key = jax.random.split(key)
  direction = jax.random.normal(direction_key, x.shape, jnp.float32)
  radius = eps * jax.random.uniform(radius_key, (), jnp.float32) ** (1.0 / x.size)
  return direction / jnp.maximum(norm_of(direction, "l2"), _TINY) * radius


def pgd(logits_fn, x: jax.Array, label: jax.Array, eps, *, norm: str = "linf", steps: int = 10, step_size=None,
        key: jax.Array | None = None) -> jax.Array:
  """Projected gradient ascent on the true label's cross-entropy (Madry et al.): `steps` steps of `step_size`
  (default eps / 4) along the steepest ascent, each followed by the projection onto B_eps(x) and [0, 1]. With `key`,
  it starts from a random point of the ball; without, from x (deterministic)."""
  step_size = eps / 4 if step_size is None else step_size
  grad_fn = jax.grad(lambda z: example_loss(logits_fn, z, label))
  delta = jnp.zeros_like(x) if key is None else _inside(x, random_start(key, x, eps, norm))

  def step(_, delta):
    ascent = steepest_ascent(grad_fn(x + delta), norm)
    return _inside(x, project(delta + step_size * ascent, eps, norm))
  return _point(x, jax.lax.fori_loop(0, steps, step, delta, unroll=True))


def output_change(logits_fn, x: jax.Array, x_adv: jax.Array, label: jax.Array, output: str) -> jax.Array:
  """How much the model's answer moved from x to x_adv: total variation of the softmax (tv) or loss increase (loss).

  Both inputs go through one forward pass, so x_adv = x gives exactly 0.
  """
  log_p = jax.nn.log_softmax(logits_fn(jnp.stack([x, x_adv])), axis=-1)
  if output == "tv":
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p[1]) - jnp.exp(log_p[0])))
  return log_p[0, label] - log_p[1, label]


def tv_signal(logits_fn, x, label, key, *, eps: float, norm: str, steps: int, step_fraction: float,
              random_start: bool, output: str, per_eps: bool) -> jax.Array:
  """The total-variation proxy at budget eps (tv) or the loss variation (loss), optionally divided by eps."""
  x_adv = pgd(logits_fn, x, label, eps, norm=norm, steps=steps, step_size=step_fraction * eps,
              key=key if random_start else None)
  change = output_change(logits_fn, x, x_adv, label, output)
  return jnp.where(eps > 0, change / jnp.maximum(eps, _TINY), change) if per_eps else change


def movable_gradient(x: jax.Array, g: jax.Array) -> jax.Array:
  """The input gradient without the pixels that cannot move uphill (at 0 with g < 0, at 1 with g > 0): inside [0, 1]
  the loss can only rise along the rest, so this is what the small-eps limit of the clipped attack sees."""
  blocked = ((x <= 0.0) & (g < 0)) | ((x >= 1.0) & (g > 0))
  return jnp.where(blocked, 0.0, g)


def grad_norm_signal(logits_fn, x, label, key, *, norm: str) -> jax.Array:
  """|| grad_x l(x, y) ||_q over the pixels free to move (see movable_gradient), q the dual of `norm`:
  lim_{eps -> 0} (l(x_adv) - l(x)) / eps for the one-step attack within [0, 1]."""
  g = jax.grad(lambda z: example_loss(logits_fn, z, label))(x)
  return dual_norm(movable_gradient(x, g), norm)


def misclassified(logits_fn, x: jax.Array, label: jax.Array) -> jax.Array:
  return jnp.argmax(logits_fn(x[None])[0]) != label


def min_eps_signal(logits_fn, x, label, key, *, norm: str, max_eps: float, search_steps: int, steps: int,
                   step_fraction: float) -> jax.Array:
  """The smallest budget whose PGD example is misclassified, by `search_steps` bisections of [0, max_eps] (an upper
  bound: the upper end of the final interval). 0 for an example misclassified as it is; max_eps when even max_eps
  does not flip it (censored)."""
  flips = lambda eps: misclassified(logits_fn, pgd(logits_fn, x, label, eps, norm=norm, steps=steps,  # noqa: E731
                                                   step_size=step_fraction * eps), label)

  def bisect(_, bounds):
    low, high = bounds
    middle = (low + high) / 2
    flipped = flips(middle)
    return jnp.where(flipped, low, middle), jnp.where(flipped, middle, high)
  max_eps = jnp.asarray(max_eps, jnp.float32)
  _, high = jax.lax.fori_loop(0, search_steps, bisect, (jnp.float32(0.0), max_eps), unroll=True)
  return jnp.where(misclassified(logits_fn, x, label), 0.0, jnp.where(flips(max_eps), high, max_eps))
