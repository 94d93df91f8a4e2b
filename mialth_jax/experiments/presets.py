"""The image-classification configs of configs/: CIFAR-10/100 and ImageNet with ResNet-18/50, each full-size (tfds),
CPU-sized on the local CIFAR subsets (`subset`) and CI-sized (`smoke`)."""
import os

import ml_collections

from mialth_jax import config_lib, errors


def data_root() -> str:
  """Folder of the local CIFAR subsets: $MIALTH_DATA_DIR, else ../shared/data (relative to the launch folder)."""
  return os.environ.get("MIALTH_DATA_DIR", os.path.join("..", "shared", "data"))


def image_classification(dataset: str, arch: str, variant: str | None) -> ml_collections.ConfigDict:
  """CIFAR-10/100 or ImageNet with ResNet-18/50, in three sizes.

  variant None: the full dataset through tfds (GPU/TPU-sized; data_dir from --config.data.data_dir);
  "subset": the real CIFAR subsets of `data_root()` with a narrow network, CPU-sized;
  "smoke": the subset, a tiny network and a few steps, for CI.
  """
  if variant not in (None, "subset", "smoke"):
    raise errors.ConfigError(f"config variant {variant!r} is unknown; expected none, 'subset' or 'smoke'")
  config = config_lib.base()
  config.model.name = arch
  config.lottery.sparsities = (0.5, 0.8, 0.9, 0.95)
  config.train.learning_rate = 0.1
  config.train.weight_decay = 5e-4
  config.train.warmup_epochs = 1.0
  config.data.augment = "cifar"
  if dataset == "imagenet2012":
    config.data.name = "tfds"
    config.data.tfds_name = dataset
    config.data.augment = "none"
    config.model.stem = "imagenet"
    config.model.dtype = "bfloat16"
    config.train.batch_size = 1024
    config.train.num_epochs = 90.0
    config.train.weight_decay = 1e-4
    config.train.learning_rate = 0.4
    config.train.warmup_epochs = 5.0
    config.attacks.sizes = (20_000, 60_000, 100_000)
  elif variant is None:
    config.data.name = "tfds"
    config.data.tfds_name = dataset
    config.train.num_epochs = 160.0
  else:
    config.data.name = "npz"
    config.data.path = os.path.join(data_root(), f"{dataset}_small.npz")
    config.data.num_train = 5000          # the other 5,000 training images are extra non-members
    config.model.width_multiplier = 0.25  # 16 channels in the first stage: CPU-sized
    config.train.num_epochs = 20.0
    config.train.eval_every_epochs = 5.0
    config.checkpoint_every_steps = 200
    config.attacks.nonmembers = "test+unused_train"
    config.attacks.protocols = ("paper", "transfer", "shadow")
  if variant == "smoke":
    config.model.width_multiplier = 0.0625
    config.data.num_train = 256
    config.train.batch_size = 64
    config.train.num_epochs = -1.0
    config.train.num_steps = 4
    config.train.warmup_epochs = 0.0
    config.lottery.sparsities = (0.8,)
  return config
