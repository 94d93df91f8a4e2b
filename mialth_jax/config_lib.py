"""The configuration: the core's sections (data, model, train, lottery, attacks) and those registered by features
(`utils.config_sections`), merged by `base()`; `configs/*.py` start from it and change what their experiment needs.
`validate` checks the core's fields here and every registered section's with its own check.

Only JSON-able values live in a config so that `config.to_json()` is written into every run folder.
"""
import collections

import ml_collections

from mialth_jax import data, errors, plugins
from mialth_jax.attacks import attack_sets
from mialth_jax.data import augment
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.lottery import masks, recipes, stop_at, train_state
from mialth_jax.models import resnet
from mialth_jax.utils import config_sections


def base() -> ml_collections.ConfigDict:
  """Defaults for a complete lottery + membership-inference run: the core's sections below and every section a
  registered feature adds (`plugins.load()` registers the package's own)."""
  plugins.load()
  return config_sections.build()


config_sections.register("", "the run", {
    "seed": (0, "seeds the member split, w0, data order and augmentation, attack splits and attacks"),
    "checkpoint_every_steps": (0, "periodic train-state checkpoints for resuming (0: only at the end of each phase)"),
})
config_sections.register("data", "the dataset and the member split (mialth_jax/data)", {
    "name": ("digits", "digits | npz | tfds"),
    "path": ("", "npz: file with x_train, y_train, x_test, y_test"),
    "tfds_name": ("", "tfds: cifar10 | cifar100 | imagenet2012"),
    "data_dir": ("", "tfds: folder holding the prepared dataset"),
    "image_size": (224, "tfds imagenet2012: crop size"),
    "num_train": (-1, "members: a seeded subset of the train split (-1: all of it)"),
    "augment": ("none", "none | cifar (4-pixel pad + random crop, horizontal flip)"),
    "digits_test_fraction": (0.5, "digits: the share of the 1,797 images held out as the test split"),
})
config_sections.register("model", "the network (mialth_jax/models/resnet.py)", {
    "name": ("resnet18", "resnet18 | resnet34 | resnet50"),
    "stem": ("cifar", "cifar (3x3, stride 1) | imagenet (7x7 stride 2 + max-pool)"),
    "width_multiplier": (1.0, "channels = round(64 * 2**k * width_multiplier) in stage k"),
    "dtype": ("float32", "compute dtype: float32 | bfloat16 (parameters stay float32)"),
    "padding": ("same", "same (XLA's SAME) | torch (k // 2 both sides: converted PyTorch weights)"),
    "norm": ("batch", "batch (BatchNorm) | group (GroupNorm: no batch statistics, as DP-SGD needs)"),
    "norm_groups": (16, "group: groups per GroupNorm layer (gcd(norm_groups, channels) where a layer has fewer)"),
})
config_sections.register("train", "training of every model of the run (lottery/train_state.py)", {
    "batch_size": (128, "global batch, a multiple of the device count"),
    "num_epochs": (10.0, "exactly one of num_epochs / num_steps is set (the other -1)"),
    "num_steps": (-1, "train steps (-1: from num_epochs)"),
    "learning_rate": (0.1, "peak SGD learning rate"),
    "momentum": (0.9, "SGD momentum (0: none)"),
    "nesterov": (True, "Nesterov momentum"),
    "weight_decay": (5e-4, "added to the gradient, PyTorch-style"),
    "schedule": ("cosine", "cosine | step | constant"),
    "warmup_epochs": (0.0, "linear warm-up from 0 before the schedule"),
    "step_boundaries": ((0.5, 0.75), "step schedule: fractions of training where lr *= step_factor"),
    "step_factor": (0.1, "step schedule: the factor at each boundary"),
    "eval_every_epochs": (1.0, "test and train accuracy / loss every this many epochs (and at the end)"),
    "log_every_steps": (50, "train loss and accuracy written to metrics.jsonl every this many steps"),
    "keep_every_epochs": (0, "keep every model's weights every this many epochs, in models/<name>/kept/<step> "
                              "(leakage along training, experiments/fit_curves.py; 0: only the final ones)"),
    "stop_at": ("", "stop each model at the first evaluation reaching this fit, e.g. 'train_accuracy>=0.9' "
                    "(lottery/stop_at.py; '' trains every step)"),
})
config_sections.register("lottery", "the models of the run: dense, its tickets and the control recipes", {
    "sparsities": ((0.5, 0.8, 0.9), "one-shot tickets: the share of prunable weights removed"),
    "method": ("oneshot", recipes.METHOD_RECIPES.listing),
    "imp_rounds": (0, "imp: number of rounds"),
    "imp_fraction": (0.2, "imp: fraction of surviving weights pruned per round"),
    "rule": ("global_magnitude", lambda: "which trained weights oneshot and imp prune: " + masks.RULES.listing()),
    "prunable": (r"kernel$", "regex on the parameter path (\"stage1_block0/conv1/kernel\")"),
    "keep_first_conv": (False, "never prune the first convolution"),
    "keep_classifier": (False, "never prune the classifier"),
    "rewind_step": (0, "0: rewind to w0 (the paper); k > 0: late rewinding to step k"),
    "controls": ((), "more recipes, trained in this order: random_prune, random_reinit or any registered recipe"),
})
config_sections.register("attacks", "membership inference on every model (experiments/, attacks/)", {
    "protocols": (("paper",), "paper, transfer or any registered protocol, run in this order"),
    "sizes": ((-1,), "members + non-members per attack set (-1: the largest balanced set)"),
    "test_fraction": (0.5, "the share of each attack set held out as attack-test (where attacks are judged)"),
    "nonmembers": ("test", "test (the paper) | test+unused_train (also the training images not used)"),
    "models": ({"mlp": {"type": "optax_mlp"}, "sklearn_mlp": {"type": "sklearn_mlp"},
                "loss": {"type": "threshold_loss"}}, "name -> {type: a registered attack, its options}"),
    "transfer_runs": ((), "transfer: other run folders (same members) whose models join the matrix"),
    "num_bootstrap": (1000, "bootstrap resamples of every interval"),
    "batch_size": (512, "confidence extraction batch"),
})


CHOICES = {
    "data.name": data.SOURCES,
    "data.augment": augment.AUGMENTATIONS,
    "model.name": tuple(resnet.ARCHITECTURES),
    "model.stem": resnet.STEMS,
    "model.dtype": tuple(resnet.DTYPES),
    "model.padding": resnet.PADDINGS,
    "model.norm": resnet.NORMS,
    "train.schedule": train_state.SCHEDULES,
    "lottery.method": recipes.METHOD_RECIPES,  # registries: what features registered, whenever they were imported
    "attacks.nonmembers": ("test", "test+unused_train"),
}


def _check_fixed_sparsity(config: ml_collections.ConfigDict) -> None:
  """A rule that prunes to one sparsity only is refused for the planned models it would prune to another."""
  rule = config.lottery.rule
  fixed = masks.resolve_rule(rule).sparsity
  other = sorted({s.sparsity for s in recipes.plan(config) if s.rule == rule and s.sparsity != fixed})
  if fixed is not None and other:
    raise errors.ConfigError(f"lottery.sparsities: lottery.rule={rule!r} prunes exactly {fixed!r} of the weights, "
                             f"not {', '.join(f'{s:g}' for s in other)}; set --config.lottery.sparsities=({fixed!r},) "
                             "(and lottery.method=oneshot: each IMP round prunes to another sparsity)")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every choice and range before anything is written; the error names the field and what was expected."""
  plugins.load()
  for field, allowed in CHOICES.items():
    section, key = field.split(".")
    value = config[section][key]
    if value not in allowed:
      raise errors.ConfigError(f"{field}={value!r} is unknown; expected one of {', '.join(allowed)}")
  masks.resolve_rule(config.lottery.rule, "lottery.rule")
  for s in config.lottery.sparsities:
    masks.check_sparsity(s, "lottery.sparsities")
  repeated = sorted(s for s, n in collections.Counter(config.lottery.sparsities).items() if n > 1)
  if repeated:  # two --config.lottery.sparsities flags are not one override: the second adds its values to the first
    raise errors.ConfigError(f"lottery.sparsities: {', '.join(map(str, repeated))} given more than once in "
                             f"{tuple(config.lottery.sparsities)}; give --config.lottery.sparsities once")
  for control in config.lottery.controls:
    recipes.RECIPES.lookup(control, "lottery.controls")
  for protocol in config.attacks.protocols:
    PROTOCOLS.lookup(protocol, "attacks.protocols")
  config_sections.validate(config)
  for size in config.attacks.sizes:
    if size != -1:
      attack_sets.check_size(size, "attacks.sizes")
  if not 0 < config.attacks.test_fraction < 1:
    raise errors.ConfigError(f"attacks.test_fraction must lie in (0, 1), got {config.attacks.test_fraction}")
  if config.lottery.method == "imp" and (config.lottery.imp_rounds < 1 or not 0 < config.lottery.imp_fraction < 1):
    raise errors.ConfigError("lottery.method=imp needs lottery.imp_rounds >= 1 and 0 < lottery.imp_fraction < 1, "
                             f"got {config.lottery.imp_rounds} and {config.lottery.imp_fraction}")
  stop_at.parse(config.train.stop_at)
  keep = config.train.keep_every_epochs
  if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
    raise errors.ConfigError(f"train.keep_every_epochs: expected a whole number of epochs >= 0, got {keep!r}")
  if config.lottery.rewind_step < 0:
    raise errors.ConfigError(f"lottery.rewind_step must be >= 0, got {config.lottery.rewind_step}")
  _check_fixed_sparsity(config)
  groups = config.model.norm_groups
  if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
    raise errors.ConfigError(f"model.norm_groups must be a whole number >= 1, got {groups!r}")
  if not config.model.width_multiplier > 0:
    raise errors.ConfigError(f"model.width_multiplier must be > 0, got {config.model.width_multiplier}")
  if config.train.learning_rate < 0 or config.train.batch_size <= 0:
    raise errors.ConfigError("train.learning_rate must be >= 0 and train.batch_size > 0")
