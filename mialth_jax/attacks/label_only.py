"""Label-only membership signals: the attacker sees the predicted label and nothing else (Choquette-Choo et al.,
ICML 2021; Li & Zhang, CCS 2021).

hsj_distance        distance to the decision boundary found by HopSkipJump (Chen, Jordan & Wainwright, S&P 2020),
                    untargeted, l_2, from queries of the predicted label only. It follows ART's `HopSkipJump`
                    (art/attacks/evasion/hop_skip_jump.py) step by step: the uniform-noise start and its binary search
                    (threshold 0.001), then per iteration t: delta (0.1 at t = 0, else sqrt(d) theta dist), a binary
                    search to the boundary (theta = 0.01 / sqrt(d)), a Monte-Carlo gradient sign estimate from
                    init_eval sqrt(t + 1) (at most max_eval) queries at radius delta, and a geometric step search from
                    2 dist / sqrt(t + 1). The distance is that of the last iterate, as ART's `LabelOnlyDecisionBoundary`
                    measures it; an example misclassified as it is gets 0 (ART's convention).
augmentation_score  the share of flips and shifts of the image still given the true label (Choquette-Choo et al.).

Two differences with ART, both forced by running every example of a batch in one jitted program: ART draws a new
number of gradient queries each iteration (static shapes here: every iteration draws the largest number and uses its
first init_eval sqrt(t + 1)), and ART gives up an example whose uniform-noise start never changes the label (distance
0); here that example gets the largest distance in the pixel box, sqrt(d) (no label change was found anywhere).
Every random draw comes from the example's own key, so its distance depends on no other example.
"""
import math

import jax
import jax.numpy as jnp

_MAX_HALVINGS = 30  # geometric step search: ART halves until the step is adversarial; 2^-30 of the distance is x_t


def _distance(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum((a - b) ** 2))


def _binary_search(is_adv, x, current, threshold: float) -> jax.Array:
  """The point of [x, current] nearest x that is still adversarial, to within `threshold` of the segment (l_2)."""
  steps = max(0, math.ceil(math.log2(1.0 / threshold)))

  def body(_, bounds):
    low, high = bounds
    middle = (low + high) / 2
    adversarial = is_adv(((1 - middle) * x + middle * current)[None])[0]
    return jnp.where(adversarial, low, middle), jnp.where(adversarial, middle, high)
  _, high = jax.lax.fori_loop(0, steps, body, (jnp.float32(0.0), jnp.float32(1.0)))
  return (1 - high) * x + high * current


def _initial_point(is_adv, x, key, init_size: int):
  """(found, the first of up to init_size uniform-noise images that is adversarial, at the boundary)."""
  def cond(state):
    trial, found, _ = state
    return (~found) & (trial < init_size)

  def body(state):
    trial, _, image = state
    candidate = jax.random.uniform(jax.random.fold_in(key, trial), x.shape, jnp.float32)
    adversarial = is_adv(candidate[None])[0]
    return trial + 1, adversarial, jnp.where(adversarial, candidate, image)
  _, found, image = jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.bool_(False), x))
  return found, _binary_search(is_adv, x, image, 0.001)


def _gradient_direction(is_adv, current, delta, key, num_eval, max_queries: int) -> jax.Array:
  """HopSkipJump's Monte-Carlo estimate of the boundary's normal at `current` (unit l_2 norm), from the first
  num_eval of max_queries random unit directions at radius delta."""
  noise = jax.random.normal(key, (max_queries, *current.shape), jnp.float32)
  noise = noise / jnp.sqrt(jnp.sum(noise ** 2, axis=tuple(range(1, noise.ndim)), keepdims=True))
  samples = jnp.clip(current + delta * noise, 0.0, 1.0)
  directions = (samples - current) / delta
  used = (jnp.arange(max_queries) < num_eval).astype(jnp.float32)
  f = 2.0 * is_adv(samples).astype(jnp.float32) - 1.0
  mean_f = jnp.sum(f * used) / num_eval
  weights = jnp.where(mean_f == 1.0, 1.0, jnp.where(mean_f == -1.0, -1.0, f - mean_f)) * used
  grad = jnp.tensordot(weights, directions, axes=1) / num_eval
  return grad / jnp.maximum(_distance(grad, 0.0), 1e-12)


def hsj_distance(predict, x: jax.Array, label: jax.Array, key: jax.Array, *, iterations: int, init_eval: int,
                 max_eval: int, init_size: int) -> jax.Array:
  """l_2 distance from x to the HopSkipJump adversarial example of its predicted label (label-only queries).

  predict(xs [K, H, W, C] in [0, 1]) -> int32 labels [K] is the only access to the model.
  """
  d = x.size
  theta = 0.01 / math.sqrt(d)
  predicted = predict(x[None])[0]
  is_adv = lambda xs: predict(jnp.clip(xs, 0.0, 1.0)) != predicted  # noqa: E731
  init_key, loop_key = jax.random.split(key)
  found, start = _initial_point(is_adv, x, init_key, init_size)
  max_queries = min(int(init_eval * math.sqrt(max(iterations, 1))), max_eval)

  def iteration(t, current):
    step_key = jax.random.fold_in(loop_key, t)
    delta = jnp.where(t == 0, 0.1, math.sqrt(d) * theta * _distance(x, current))
    current = _binary_search(is_adv, x, current, theta)
    num_eval = jnp.minimum(jnp.floor(init_eval * jnp.sqrt(t + 1.0)), max_eval)
    update = _gradient_direction(is_adv, current, delta, step_key, num_eval, max_queries)
    epsilon = 2.0 * _distance(x, current) / jnp.sqrt(t + 1.0)

    def halve(state):
      k, eps, _ = state
      eps = eps / 2
      return k + 1, eps, is_adv((current + eps * update)[None])[0]
    _, epsilon, success = jax.lax.while_loop(lambda s: (~s[2]) & (s[0] < _MAX_HALVINGS), halve,
                                             (jnp.int32(0), epsilon, jnp.bool_(False)))
    return jnp.where(success, jnp.clip(current + epsilon * update, 0.0, 1.0), current)
  final = jax.lax.fori_loop(0, iterations, iteration, start)
  distance = jnp.where(found, _distance(x, final), jnp.sqrt(jnp.float32(d)))
  return jnp.where(predicted != label, 0.0, distance)


def query_budget(image_size: int, *, iterations: int, init_eval: int, max_eval: int, init_size: int) -> int:
  """Label queries of one example at most (the geometric step search counted at its cap)."""
  theta = 0.01 / math.sqrt(image_size)
  search = math.ceil(math.log2(1.0 / theta))
  evals = sum(min(int(init_eval * math.sqrt(t + 1)), max_eval) for t in range(iterations))
  return 1 + init_size + math.ceil(math.log2(1000)) + iterations * (search + _MAX_HALVINGS) + evals


def shifted(x: jax.Array, dy: int, dx: int) -> jax.Array:
  """x [H, W, C] moved by (dy, dx) pixels, the uncovered border filled with 0 (black)."""
  pad = max(abs(dy), abs(dx))
  if pad == 0:
    return x
  padded = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  height, width = x.shape[:2]
  return jax.lax.dynamic_slice(padded, (pad - dy, pad - dx, 0), (height, width, x.shape[2]))


def augmentations(x: jax.Array, max_shift: int, flip: bool) -> jax.Array:
  """[Q, H, W, C]: every shift in [-max_shift, max_shift]^2, of x and (with flip) of its mirror image."""
  views = [x, x[:, ::-1]] if flip else [x]
  shifts = range(-max_shift, max_shift + 1)
  return jnp.stack([shifted(v, dy, dx) for v in views for dy in shifts for dx in shifts])


def augmentation_score(predict, x: jax.Array, label: jax.Array, key: jax.Array, *, max_shift: int,
                       flip: bool) -> jax.Array:
  """Share of the augmentations of x whose predicted label is the true one (higher: more robust, member-like)."""
  return jnp.mean((predict(augmentations(x, max_shift, flip)) == label).astype(jnp.float32))
