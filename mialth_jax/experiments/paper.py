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
  config.attacks.sizes = ((200, 400, 800, -1) if config.data.name == "digits" else  # 898 members, 899 non-members
                          (1000, 2000, 4000, -1) if config.data.name != "tfds" else
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
  if config.data.name == "digits":
    config.zoo.reference_counts = (1, 2, 4, 8)
  if variant == "subset":
    # Sized for a CPU (docs/strong_attacks.md): half the subset run's width, no augmentation and 8 epochs (the models
    # overfit, as in the LiRA paper's regime); a dense and an 80 % ticket zoo of 16 models on CIFAR-10, 8 on
    # CIFAR-100, each on 5,000 of the 10,860 (CIFAR-10) or 12,000 (CIFAR-100) images: every example is IN for 7 or 8
    # (3 or 4) of them. Every zoo model is also a target (leave-one-out), and each attack is measured against the
    # number of reference models.
    overfit_on_cpu(config)
    config.lottery.sparsities = (0.5, 0.8, 0.9)
    config.zoo.num_models = 8 if "cifar100" in config.data.get("path", "") else 16
    config.zoo.sparsities = (0.8,)
    config.zoo.reference_counts = tuple(k for k in (1, 2, 4, 8) if k < config.zoo.num_models)


def overfit_on_cpu(config: ml_collections.ConfigDict) -> None:
  """The CPU-sized CIFAR-subset models of the experiments beyond the paper: width x1/8, no augmentation, 8 epochs."""
  config.model.width_multiplier = 0.125
  config.data.augment = "none"
  config.train.num_epochs = 8.0


def adversarial_attacks(data_name: str) -> dict:
  """The attacks of configs/experiments/adversarial.py: output-based, white-box (the total-variation proxy over an
  eps sweep, FGSM, the loss variation, the gradient norm, the minimal perturbation, several as features of an MLP) and
  label-only (HopSkipJump, augmentations), with CPU-sized budgets (docs/adversarial.md)."""
  tv = lambda eps, **o: {"type": "adversarial_tv", "eps": eps, **o}  # noqa: E731  PGD-10, alpha = eps / 4
  sweep = {f"tv_linf_{k}": tv(k / 255) for k in (1, 2, 4, 8)} | {"tv_l2_0p25": tv(0.25, norm="l2")}
  white_box = {
      "fgsm_tv_linf_4": tv(4 / 255, steps=1, step_fraction=1.0),
      "loss_var_linf_4": tv(4 / 255, output="loss"),
      "grad_norm_linf": {"type": "input_gradient_norm", "norm": "linf"},
      "min_eps_linf": {"type": "minimal_perturbation", "norm": "linf", "max_eps": 16 / 255, "search_steps": 6,
                       "steps": 5},
  }
  label_only = {
      "hopskipjump": {"type": "hopskipjump", "iterations": 5, "init_eval": 20, "max_eval": 200, "init_size": 50},
      "augmentation": {"type": "augmentation_robustness", "max_shift": 1 if data_name == "digits" else 2},
  }
  features = {"adversarial_mlp": {"type": "adversarial_features", "learner": {"type": "optax_mlp"}, "signals": {
      "tv_linf_1": sweep["tv_linf_1"], "tv_linf_4": sweep["tv_linf_4"], "grad_norm": white_box["grad_norm_linf"],
      "min_eps": white_box["min_eps_linf"]}}}
  outputs = {k: PAPER_ATTACKS[k] for k in ("mlp", "loss", "confidence", "mentropy")}
  return {**outputs, **sweep, **white_box, **label_only, **features}


SMOOTHED_ATTACKS = ("mlp", "loss", "confidence", "mentropy", "tv_linf_4", "fgsm_tv_linf_4", "grad_norm_linf",
                    "augmentation")  # on the smoothed model each query costs defences.smoothing.samples passes


def adversarial(config: ml_collections.ConfigDict, variant: str | None) -> None:
  """Membership inference via adversarial examples (Kadoche et al. 2022) and label-only attacks, on the dense model,
  its tickets and two defences of ours (configs/experiments/adversarial.py, docs/adversarial.md). The same models as
  the strong-attacks experiment (its CPU-sized `subset` training included), so one run folder serves both."""
  strong_attacks(config, variant)
  config.attacks.protocols = ("paper", "adversarial")
  config.attacks.models = adversarial_attacks(config.data.name)
  config.lottery.controls = (*config.lottery.controls, "input_gradient_penalty")
  smoothing = config.defences.smoothing
  smoothing.sigma = 0.1
  smoothing.samples = 8
  smoothing.attacks = SMOOTHED_ATTACKS
  settings = config.adversarial
  # CPU-sized: every attack on the same few hundred examples per attack-split part (LeakPro's HopSkipJump also
  # audits a fraction of the set); on digits the Table 1 ticket only, next to dense and the penalty model.
  settings.num_examples = 400 if config.data.name == "digits" else 500
  if config.data.name == "digits":
    settings.models = ("dense", "ticket_s80", "input_gradient_penalty")


GAP_SWEEP_EPOCHS = (10, 20, 40, 80, 160)  # configs/experiments/gap_sweep.py: one run folder per length and augmentation


def gap_sweep(config: ml_collections.ConfigDict, variant: str | None) -> None:
  """One point of the leakage-vs-generalisation-gap sweep (issue 16): dense and tickets at 50/80/90 %, the paper's
  attacks (its MLP, the loss and the other thresholds) on the paper protocol. The length and augmentation come as
  overrides (`--config.train.num_epochs=40 --config.data.augment=none`), one run folder per point, and the report of
  all of them draws leakage against the gap (report/gap.py)."""
  config.attacks.protocols = ("paper",)
  config.lottery.sparsities = (0.5, 0.8, 0.9)
  if variant == "subset":  # CPU-sized: half the subset run's width, so 40+ epochs without augmentation memorise
    config.model.width_multiplier = 0.125


DEFENCES = ("finetune", "admm", "minmax", "admm_minmax")  # the recipes (lottery.controls) of docs/defences.md


def defences(config: ml_collections.ConfigDict, variant: str | None) -> None:
  """Pruning as a defence (Wang et al., IJCAI 2021) against adversarial regularisation (Nasr et al., CCS 2018):
  tickets, prune-and-fine-tune, ADMM pruning, Min-Max (a lambda sweep) and ADMM + Min-Max, attacked by adaptive
  attackers only: every attack learns from the defended model's own outputs (paper protocol) or from shadows trained
  with the same defence (shadow protocol). configs/experiments/defences.py, docs/defences.md."""
  config.lottery.controls = DEFENCES
  config.lottery.rule = config.defences.rule  # tickets take the same per-layer counts: rewind vs fine-tune vs ADMM
  config.attacks.protocols = ("paper", "shadow")
  config.attacks.models = {**{k: PAPER_ATTACKS[k] for k in ("sklearn_mlp", "mlp", "loss", "loss_per_class",
                                                            "confidence", "mentropy")},
                           "mlp_label": {"type": "optax_mlp", "with_label": True}}  # Nasr et al.'s attack reads y
  if config.data.name == "digits":  # 600 of 898 members: half of the other 298 train images are the reference set
    config.data.num_train = 600
    config.lottery.sparsities = (0.5, 0.9)
    config.defences.minmax.lambdas = (1.0, 3.0)
  elif config.data.name == "tfds":  # GPU-sized: Nasr et al.'s split (half the train set) and lambda sweep
    config.data.num_train = 25_000
    config.attacks.nonmembers = "test+unused_train"
    config.defences.minmax.lambdas = (0.5, 1.0, 2.0, 3.0, 6.0)
    config.defences.minmax.combined_lambdas = (1.0, 3.0)
  if variant == "subset":
    # CPU-sized (about an hour per dataset on 2 cores, shadows included): the strong-attacks subset's models (width
    # x1/8, no augmentation, 8 epochs: they overfit), two sparsities, two lambdas and one combined lambda.
    overfit_on_cpu(config)
    config.lottery.sparsities = (0.5, 0.9)
    config.defences.minmax.lambdas = (1.0, 3.0)


def sparsity_vs_fit(config: ml_collections.ConfigDict, variant: str | None) -> None:
  """Sparsity or fit? (issue 27): zoos of dense, tickets at 50/80/90 % and the random-prune control at each, every
  zoo model kept every epoch and attacked leave-one-out along its training (experiments.fit_curves), so that tickets
  and controls are compared with dense at matched train loss and at matched held-out accuracy, over model pairs."""
  strong_attacks(config, variant)
  config.attacks.protocols = ("zoo",)
  config.attacks.models = {k: STRONG_ATTACKS[k] for k in ("lira_fixed_var", "rmia")}
  config.lottery.sparsities = (0.5, 0.8, 0.9)
  config.lottery.controls = ("random_prune",)
  config.zoo.sparsities = ()
  config.zoo.reference_counts = ()
  config.zoo.curve_every_epochs = 1
  config.train.keep_every_epochs = 1  # the run's models join the zoo's as targets along training
  config.zoo.curve_attack = "lira_fixed_var"


EXPERIMENTS = {f.__name__: f for f in (table1, fig1_accuracy_vs_sparsity, fig2_attack_vs_sparsity,
                                       fig3_attack_vs_samples, fig4_transfer, strong_attacks, adversarial, defences,
                                       gap_sweep, sparsity_vs_fit)}


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
