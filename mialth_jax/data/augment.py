"""On-device preprocessing inside the jitted step: uint8 -> normalised float, and CIFAR augmentation.

Augmentation is a pure function of (key, images), and the key is derived from the run seed and the step, so a resumed
run augments exactly as an uninterrupted one.
"""
import jax
import jax.numpy as jnp

from mialth_jax import errors

AUGMENTATIONS = ("none", "cifar")
# Test-time queries of reference-model attacks (LiRA queries each image as is and mirrored), on NHWC batches.
QUERIES = {"identity": lambda x: x, "flip": lambda x: x[:, :, ::-1]}


def normalise(images: jax.Array, mean: jax.Array, std: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8 [B, H, W, C] -> (x / 255 - mean) / std in `dtype`."""
  x = images.astype(jnp.float32) / 255.0
  return ((x - mean) / std).astype(dtype)


def _pad_crop_flip(key: jax.Array, image: jax.Array, pad: int) -> jax.Array:
  crop_key, flip_key = jax.random.split(key)
  height, width = image.shape[:2]
  padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  dy, dx = jax.random.randint(crop_key, (2,), 0, 2 * pad + 1)
  cropped = jax.lax.dynamic_slice(padded, (dy, dx, 0), (height, width, image.shape[2]))
  return jnp.where(jax.random.bernoulli(flip_key), cropped[:, ::-1], cropped)


def augment(key: jax.Array, images: jax.Array, kind: str) -> jax.Array:
  """Applies `kind` to a batch; `cifar` = zero-pad 4 pixels, random crop back, random horizontal flip."""
  if kind == "none":
    return images
  if kind == "cifar":
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: _pad_crop_flip(k, x, pad=4))(keys, images)
  raise errors.ConfigError(f"data.augment={kind!r} is unknown; expected one of {', '.join(AUGMENTATIONS)}")
