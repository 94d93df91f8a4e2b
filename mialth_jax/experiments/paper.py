"""The attack sections of the paper's Table 1 and Figures 1-4, applied to any run config (configs/experiments/*.py).

Launched on a run's workdir, an experiment config reuses every trained model and adds only what its table or figure
needs (attack-section changes and added controls never invalidate a run).
"""
import importlib

import ml_collections

from mialth_jax import errors

PAPER_ATTACKS = {
    "sklearn_mlp": {"type": "sklearn_mlp"},           # the paper's attack
    "mlp": {"type": "optax_mlp"},                     # the same attack in Optax
    "loss": {"type": "threshold_loss"},               # what the paper left open: threshold attacks
    "loss_per_class": {"type": "threshold_loss", "per_class": True},
    "confidence": {"type": "threshold_confidence"},
    "mentropy": {"type": "threshold_mentropy"},
}


def table1(config: ml_collections.ConfigDict, variant: str | None) -> None:
  config.attacks.protocols = ("paper", "shadow")


def fig1_accuracy_vs_sparsity(config: ml_collections.ConfigDict, variant: str | None) -> None:
  config.attacks.protocols = ()
  config.lottery.controls = ("random_prune", "random_reinit")


def fig2_attack_vs_sparsity(config: ml_collections.ConfigDict, variant: str | None) -> None:
  config.attacks.protocols = ("paper",)


def fig3_attack_vs_samples(config: ml_collections.ConfigDict, variant: str | None) -> None:
  config.attacks.protocols = ("paper",)
  config.attacks.sizes = ((1000, 2000, 4000, -1) if config.data.name != "tfds" else
                          (20_000, 60_000, 100_000) if config.data.tfds_name == "imagenet2012" else
                          (2000, 5000, 10_000, 20_000))


def fig4_transfer(config: ml_collections.ConfigDict, variant: str | None) -> None:
  config.attacks.protocols = ("transfer",)
  config.attacks.models = {k: PAPER_ATTACKS[k] for k in ("sklearn_mlp", "loss")}


STRONG_ATTACKS = {
    "lira": {"type": "lira"},                                   # online, per-example variance (Carlini et al.)
    "lira_offline": {"type": "lira", "online": False},
    "lira_fixed_var": {"type": "lira", "fixed_variance": True},
    "rmia": {"type": "rmia"},                                   # online (Zarifzadeh et al.)
    "rmia_offline": {"type": "rmia", "online": False},
}


def strong_attacks(config: ml_collections.ConfigDict, variant: str | None) -> None:
  """Beyond the paper: LiRA and RMIA on a zoo of reference models, next to the paper's attack and the loss threshold
  (configs/experiments/lira.py)."""
  config.attacks.protocols = ("paper", "zoo")
  config.attacks.models = {**{k: PAPER_ATTACKS[k] for k in ("sklearn_mlp", "mlp", "loss")}, **STRONG_ATTACKS}
  if config.data.name == "tfds":
    config.zoo.num_models = 64 if config.data.tfds_name != "imagenet2012" else 16
  if variant == "subset":
    # Sized for a CPU (docs/strong_attacks.md: the CPU zoo is still too slow at 32x32): half the subset run's width,
    # no augmentation and 8 epochs (the models overfit, as in the LiRA paper's regime), 8 zoo models per kind, each
    # on 5,000 of the 10,860 (CIFAR-10) or 12,000 (CIFAR-100) images, so every example is IN for ~4 of them.
    config.model.width_multiplier, config.data.augment, config.train.num_epochs = 0.125, "none", 8.0
    config.lottery.sparsities, config.zoo.num_models = (0.5, 0.8, 0.9), 8


EXPERIMENTS = {f.__name__: f for f in (table1, fig1_accuracy_vs_sparsity, fig2_attack_vs_sparsity,
                                       fig3_attack_vs_samples, fig4_transfer, strong_attacks)}


def experiment(name: str, arg: str | None) -> ml_collections.ConfigDict:
  """A run config (arg = '<config>[:variant]', e.g. 'cifar10_resnet18:subset' or 'default') with the attack
  section one table or figure of the paper needs."""
  if not arg:
    raise errors.ConfigError(f"configs/experiments/{name}.py needs a run config, e.g. "
                             f"{name}.py:cifar10_resnet18:subset")
  if name not in EXPERIMENTS:
    raise errors.ConfigError(f"experiment {name!r} is unknown; expected one of {', '.join(EXPERIMENTS)}")
  run_name, _, variant = arg.partition(":")
  config = importlib.import_module(f"configs.{run_name}").get_config(variant or None)
  config.attacks.models = PAPER_ATTACKS
  EXPERIMENTS[name](config, variant or None)
  return config
