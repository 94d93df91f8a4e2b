"""The shared extraction problem of test_extract.py and multihost_worker.py: a tiny ResNet, 101 shuffled ids."""
import jax
import jax.numpy as jnp
import numpy as np

from mialth_jax.models import resnet

BATCH_SIZE = 13  # not a multiple of 8: the last batch and every batch need padding


def make():
  model = resnet.create_model("resnet18", 10, "cifar", 0.125)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))))
  # Non-trivial BatchNorm statistics, so eval mode differs from train mode.
  variables["batch_stats"] = jax.tree.map(lambda x: x + 0.3, variables["batch_stats"])
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (150, 8, 8, 3), dtype=np.uint8)
  ids = rng.permutation(150)[:101]
  return model, variables, images, ids
