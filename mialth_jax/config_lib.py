"""Shared configuration defaults; `configs/*.py` start from `base()` and change what their experiment needs.

Only JSON-able values live here so that `config.to_json()` is written into every run folder.
"""
import collections
import os

import ml_collections

from mialth_jax import data, errors
from mialth_jax.attacks import attack_sets, contracts, registry
from mialth_jax.data import augment
from mialth_jax.defences import settings as defence_settings
from mialth_jax.experiments import adversarial
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.lottery import masks, recipes, train_state
from mialth_jax.models import resnet


def base() -> ml_collections.ConfigDict:
  """Defaults for a complete lottery + membership-inference run."""
  from mialth_jax import plugins  # the built-in features register themselves before a config names them
  plugins.load()
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "digits"          # digits | npz | tfds
  config.data.path = ""                # npz: file with x_train, y_train, x_test, y_test
  config.data.tfds_name = ""           # tfds: cifar10 | cifar100 | imagenet2012
  config.data.data_dir = ""            # tfds: folder holding the prepared dataset
  config.data.image_size = 224         # tfds imagenet2012: crop size
  config.data.num_train = -1           # members: a seeded subset of the train split (-1: all of it)
  config.data.augment = "none"         # none | cifar (4-pixel pad + random crop, horizontal flip)
  config.data.digits_test_fraction = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet18"       # resnet18 | resnet34 | resnet50
  config.model.stem = "cifar"          # cifar (3x3, stride 1) | imagenet (7x7 stride 2 + max-pool)
  config.model.width_multiplier = 1.0  # channels = round(64 * width_multiplier) in the first stage
  config.model.dtype = "float32"       # compute dtype: float32 | bfloat16 (parameters stay float32)
  config.model.padding = "same"        # same (XLA's SAME) | torch (k // 2 both sides: converted PyTorch weights)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128        # global batch, a multiple of the device count
  config.train.num_epochs = 10.0       # exactly one of num_epochs / num_steps is set (the other -1)
  config.train.num_steps = -1
  config.train.learning_rate = 0.1
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.weight_decay = 5e-4
  config.train.schedule = "cosine"     # cosine | step | constant
  config.train.warmup_epochs = 0.0
  config.train.step_boundaries = (0.5, 0.75)  # step schedule: fractions of training where lr *= step_factor
  config.train.step_factor = 0.1
  config.train.eval_every_epochs = 1.0
  config.train.log_every_steps = 50

  config.lottery = ml_collections.ConfigDict()
  config.lottery.sparsities = (0.5, 0.8, 0.9)
  config.lottery.method = "oneshot"    # oneshot (the paper's Algorithm 1) | imp (iterative)
  config.lottery.imp_rounds = 0        # imp: number of rounds
  config.lottery.imp_fraction = 0.2    # imp: fraction of surviving weights pruned per round
  config.lottery.rule = "global_magnitude"   # global_magnitude | layerwise_magnitude | random
  config.lottery.prunable = r"kernel$"  # regex on the parameter path ("stage1_block0/conv1/kernel")
  config.lottery.keep_first_conv = False
  config.lottery.keep_classifier = False
  config.lottery.rewind_step = 0       # 0: rewind to w0 (the paper); k > 0: late rewinding to step k
  config.lottery.controls = ()         # any of: random_prune, random_reinit (or another registered recipe)
  config.lottery.input_gradient_penalty = 0.01  # the input_gradient_penalty control: weight of mean ||grad_x loss||^2

  config.attacks = ml_collections.ConfigDict()
  config.attacks.protocols = ("paper",)  # any of: paper, transfer, shadow (or another registered protocol)
  config.attacks.sizes = (-1,)         # members + non-members per attack set (-1: the largest balanced set)
  config.attacks.test_fraction = 0.5
  config.attacks.nonmembers = "test"  # test (the paper) | test+unused_train (also the training images not used)
  config.attacks.models = ml_collections.ConfigDict()
  config.attacks.models.mlp = {"type": "optax_mlp"}
  config.attacks.models.sklearn_mlp = {"type": "sklearn_mlp"}
  config.attacks.models.loss = {"type": "threshold_loss"}
  config.attacks.transfer_runs = ()    # transfer: other run folders (same members) whose models join the matrix
  config.attacks.num_bootstrap = 1000
  config.attacks.batch_size = 512      # confidence extraction batch

  config.zoo = ml_collections.ConfigDict()  # reference models of the zoo protocol (LiRA, RMIA attacks)
  config.zoo.num_models = 16           # S models, each on as many seeded random examples (of all) as the members
  config.zoo.queries = ("identity", "flip")  # test-time queries of each image (augment.QUERIES)
  config.zoo.sparsities = ()           # ticket zoos to train: a subset of lottery.sparsities (empty: all of them)

  config.adversarial = ml_collections.ConfigDict()  # the adversarial protocol (experiments/adversarial.py)
  config.adversarial.num_examples = -1  # examples per attack-split part (half members) it attacks (-1: all)
  config.adversarial.models = ()  # the models it attacks (empty: every finished model)
  config.adversarial.batch_size = 128  # examples per sharded batch of the white-box and label-only signals
  config.adversarial.smoothing_sigma = 0.0  # defence D1: pixel-noise std of output smoothing (0: no smoothed targets)
  config.adversarial.smoothing_samples = 16  # noisy copies averaged per query
  config.adversarial.smoothed_models = ("dense",)  # the models attacked with smoothing too
  config.adversarial.smoothed_attacks = ()  # attacks.models run on the smoothed ones (empty: all; each query costs
                                           # smoothing_samples forward passes there)

  config.defences = ml_collections.ConfigDict()  # the defence recipes of lottery.controls (defences/settings.py)
  config.defences.sparsities = ()     # of finetune / admm / admm_minmax: a subset of lottery.sparsities (empty: all)
  config.defences.rule = "layerwise_magnitude"  # layerwise_magnitude (k_i per layer, the spec) | global_magnitude
  config.defences.finetune = ml_collections.ConfigDict()
  config.defences.finetune.fraction = 0.5      # masked fine-tuning: the last half of the run's steps and lr schedule
  config.defences.admm = ml_collections.ConfigDict()
  config.defences.admm.rounds = 3              # ADMM rounds (Z- and U-steps), splitting the W-phase evenly
  config.defences.admm.fraction = 0.5  # the W-phase: the last half of the run's steps, from the trained dense model
  config.defences.admm.rho = 1.0      # initial penalty rho (docs/defences.md: 0.01 barely moves W in a short run)
  config.defences.admm.rho_growth = 2.0        # rho *= rho_growth after every round
  config.defences.minmax = ml_collections.ConfigDict()
  config.defences.minmax.lambdas = (1.0,)      # the minmax models: one per lambda (the code's alpha = 1)
  config.defences.minmax.combined_lambdas = (1.0,)  # the admm_minmax models: one per sparsity and lambda
  config.defences.minmax.warmup_fraction = 0.1  # minmax: plain training first (the code: 4 epochs), h untrained
  config.defences.minmax.reference_size = -1  # reference non-members: drawn from the unused training images (-1: half)
  config.defences.minmax.learning_rate = 1e-3  # h's Adam rate (the code: 1e-5 over 400 epochs)

  config.checkpoint_every_steps = 0     # 0: only at the end of each phase
  return config


CHOICES = {
    "data.name": data.SOURCES,
    "data.augment": augment.AUGMENTATIONS,
    "model.name": tuple(resnet.ARCHITECTURES),
    "model.stem": resnet.STEMS,
    "model.dtype": tuple(resnet.DTYPES),
    "model.padding": resnet.PADDINGS,
    "train.schedule": train_state.SCHEDULES,
    "lottery.method": tuple(recipes.METHOD_RECIPES),
    "lottery.rule": masks.RULES,
    "attacks.nonmembers": ("test", "test+unused_train"),
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every choice and range before anything is written; the error names the field and what was expected."""
  from mialth_jax import plugins
  plugins.load()
  for field, allowed in CHOICES.items():
    section, key = field.split(".")
    value = config[section][key]
    if value not in allowed:
      raise errors.ConfigError(f"{field}={value!r} is unknown; expected one of {', '.join(allowed)}")
  for s in config.lottery.sparsities:
    masks.check_sparsity(s, "lottery.sparsities")
  repeated = sorted(s for s, n in collections.Counter(config.lottery.sparsities).items() if n > 1)
  if repeated:  # two --config.lottery.sparsities flags are not one override: the second adds its values to the first
    raise errors.ConfigError(f"lottery.sparsities: {', '.join(map(str, repeated))} given more than once in "
                             f"{tuple(config.lottery.sparsities)}; give --config.lottery.sparsities once")
  for s in config.zoo.sparsities:
    if s not in config.lottery.sparsities:
      raise errors.ConfigError(f"zoo.sparsities: {s} is not one of lottery.sparsities {tuple(config.lottery.sparsities)}")
  if config.zoo.num_models < 2 or any(q not in augment.QUERIES for q in config.zoo.queries):
    raise errors.ConfigError(f"zoo.num_models must be >= 2 and zoo.queries a subset of {', '.join(augment.QUERIES)}; "
                             f"got {config.zoo.num_models} and {tuple(config.zoo.queries)}")
  for control in config.lottery.controls:
    recipes.RECIPES.lookup(control, "lottery.controls")
  for protocol in config.attacks.protocols:
    PROTOCOLS.lookup(protocol, "attacks.protocols")
  defence_settings.validate(config)
  adversarial.validate(config)
  calibrated = registry.of_contract(config.attacks.models.to_dict(), contracts.ReferenceAttack)
  if calibrated and "zoo" not in config.attacks.protocols:
    raise errors.ConfigError(f"attacks.models: {', '.join(calibrated)} learn from reference models and run only "
                             "under the zoo protocol; add 'zoo' to attacks.protocols")
  for size in config.attacks.sizes:
    if size != -1:
      attack_sets.check_size(size, "attacks.sizes")
  if not 0 < config.attacks.test_fraction < 1:
    raise errors.ConfigError(f"attacks.test_fraction must lie in (0, 1), got {config.attacks.test_fraction}")
  if config.lottery.method == "imp" and (config.lottery.imp_rounds < 1 or not 0 < config.lottery.imp_fraction < 1):
    raise errors.ConfigError("lottery.method=imp needs lottery.imp_rounds >= 1 and 0 < lottery.imp_fraction < 1, "
                             f"got {config.lottery.imp_rounds} and {config.lottery.imp_fraction}")
  if config.lottery.rewind_step < 0:
    raise errors.ConfigError(f"lottery.rewind_step must be >= 0, got {config.lottery.rewind_step}")
  if not config.model.width_multiplier > 0:
    raise errors.ConfigError(f"model.width_multiplier must be > 0, got {config.model.width_multiplier}")
  if config.train.learning_rate < 0 or config.train.batch_size <= 0:
    raise errors.ConfigError("train.learning_rate must be >= 0 and train.batch_size > 0")


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
  config = base()
  config.model.name = arch
  config.lottery.sparsities = (0.5, 0.8, 0.9, 0.95)
  config.train.learning_rate, config.train.weight_decay = 0.1, 5e-4
  config.train.warmup_epochs = 1.0
  config.data.augment = "cifar"
  if dataset == "imagenet2012":
    config.data.name, config.data.tfds_name, config.data.augment = "tfds", dataset, "none"
    config.model.stem, config.model.dtype = "imagenet", "bfloat16"
    config.train.batch_size, config.train.num_epochs, config.train.weight_decay = 1024, 90.0, 1e-4
    config.train.learning_rate, config.train.warmup_epochs = 0.4, 5.0
    config.attacks.sizes = (20_000, 60_000, 100_000)
  elif variant is None:
    config.data.name, config.data.tfds_name = "tfds", dataset
    config.train.num_epochs = 160.0
  else:
    config.data.name, config.data.path = "npz", os.path.join(data_root(), f"{dataset}_small.npz")
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
    config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 4
    config.train.warmup_epochs = 0.0
    config.lottery.sparsities = (0.8,)
  return config
