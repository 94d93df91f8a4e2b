"""Defence D1 (ours: the paper's own defence is unknown, see docs/adversarial.md): inference-time output smoothing.

The defended model answers every query with p_smooth(x) = mean_k softmax(f(x + sigma * eta_k)), eta_k ~ N(0, I) in
pixel units ([0, 1] scale, before normalisation; no clipping, as in randomised smoothing), k = 1..num_samples. The
draws eta_k are fixed by `seed` and shared by every query (common random numbers), so the defended model is a
deterministic function: asking twice gives the same answer, and no example's answer depends on another's. It flattens
the local variation that the adversarial and label-only attacks measure, for members and non-members alike.

`SmoothedModel` has the interface attacks use of a Flax model (`apply(variables, normalised x, train=False)`, `dtype`,
`num_classes`) over the undefended model's variables, and returns log p_smooth as logits; `smoothed_target` makes a
`Target` of it, so every attack (output-based, white-box through the average, label-only) sees the defended model.
The adversarial protocol (experiments/adversarial.py) attacks the smoothed version of each model of
`defences.smoothing.models` when `defences.smoothing.sigma` > 0, labelled `<model>~smooth`.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax import errors
from mialth_jax.attacks import target as target_lib
from mialth_jax.lottery import recipes
from mialth_jax.utils import config_sections


@dataclasses.dataclass(frozen=True)
class SmoothedModel:
  base: object        # the Flax module
  sigma: float        # noise std in pixel units
  num_samples: int
  std: tuple          # the normalisation's per-channel std: pixel noise sigma is sigma / std after normalising
  seed: int = 0

  @property
  def dtype(self):
    return self.base.dtype

  @property
  def num_classes(self) -> int:
    return self.base.num_classes

  def apply(self, variables, x: jax.Array, train: bool = False) -> jax.Array:
    """log of the mean softmax over the noisy copies of each normalised image in x [B, H, W, C]."""
    del train  # always eval mode
    key = jax.random.key(self.seed, impl="threefry2x32")
    noise = jax.random.normal(key, (self.num_samples, *x.shape[1:]), jnp.float32) * (
        self.sigma / jnp.asarray(self.std, jnp.float32))
    noisy = (x.astype(jnp.float32)[None] + noise[:, None]).reshape(-1, *x.shape[1:]).astype(x.dtype)
    logits = self.base.apply(variables, noisy, train=False).astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits.reshape(self.num_samples, x.shape[0], -1), axis=-1)
    return jax.scipy.special.logsumexp(log_p, axis=0) - jnp.log(float(self.num_samples))


def smoothed_target(target: target_lib.Target, label: str, cache_path: str, *, sigma: float, num_samples: int,
                    seed: int = 0) -> target_lib.Target:
  """`target` answered through SmoothedModel (same variables, loaded once); its outputs are cached at cache_path."""
  model = SmoothedModel(target.model, float(sigma), int(num_samples), tuple(np.ravel(target.std).tolist()), int(seed))
  batch_size = max(target.mesh.size, target.batch_size // int(num_samples))  # each image costs num_samples passes
  return dataclasses.replace(target, label=label, cache_path=cache_path, model=model, batch_size=batch_size)


def _validate(config) -> None:
  settings = config.defences.smoothing
  if settings.samples < 1 or settings.sigma < 0:
    raise errors.ConfigError("defences.smoothing.samples must be >= 1 and defences.smoothing.sigma >= 0; got "
                             f"{settings.samples}, {settings.sigma}")
  unknown = [a for a in settings.attacks if a not in config.attacks.models]
  if unknown:
    raise errors.ConfigError(f"defences.smoothing.attacks: {', '.join(unknown)} not in attacks.models")
  recipes.check_planned(config, settings.models, "defences.smoothing.models")


config_sections.register("defences.smoothing", "defence D1: output smoothing, attacked by the adversarial protocol", {
    "sigma": (0.0, "pixel-noise std of output smoothing (0: no smoothed targets)"),
    "samples": (16, "noisy copies averaged per query"),
    "models": (("dense",), "the models attacked with smoothing too"),
    "attacks": ((), "attacks.models run on the smoothed ones (empty: all; each query of a smoothed model costs "
                    "`samples` forward passes)"),
}, validate=_validate)
