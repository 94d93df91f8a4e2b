"""The one place the package's own features are registered from.

A feature (a training recipe or defence, a step hook, an attack family, a protocol, a report section, a config
section, reserved example ids) is one module that registers what it adds in the registries of the core; the core
(pipeline, the train step, protocols, config_lib, the report) iterates over what is registered and names no feature.
`load()` imports the built-in feature modules, in this order; a user's feature module registers itself when it is
imported (from a config file, a notebook or a test), before the launch reads the registries.
"""
import importlib

BUILTIN = (
    # attacks
    "mialth_jax.attacks.optax_mlp",
    "mialth_jax.attacks.sklearn_attacks",
    "mialth_jax.attacks.threshold",
    "mialth_jax.attacks.lira",
    "mialth_jax.attacks.rmia",
    "mialth_jax.attacks.adversarial_attacks",
    # auditing
    "mialth_jax.audit.epsilon",
    # defences
    "mialth_jax.defences.phase",
    "mialth_jax.defences.finetune",
    "mialth_jax.defences.minmax",
    "mialth_jax.defences.admm",
    "mialth_jax.defences.admm_minmax",
    "mialth_jax.defences.input_gradient_penalty",
    "mialth_jax.defences.smoothing",
    "mialth_jax.defences.dp_sgd",
    # ways of pruning beyond the core's magnitude rules
    "mialth_jax.lottery.at_init",
    "mialth_jax.lottery.structured",
    # controls that are runs of their own
    "mialth_jax.lottery.narrow",
    # protocols beyond the core's paper and transfer
    "mialth_jax.experiments.shadow",
    "mialth_jax.experiments.zoo",
    "mialth_jax.experiments.zoo_targets",
    "mialth_jax.experiments.zoo_verdict",
    "mialth_jax.experiments.per_example",
    "mialth_jax.experiments.onion",
    "mialth_jax.experiments.adversarial",
    "mialth_jax.experiments.canaries",
    # report sections
    "mialth_jax.report.leakage_verdict",
    "mialth_jax.report.defences",
    "mialth_jax.report.runs_table",
    "mialth_jax.report.table1",
    "mialth_jax.report.seeds",
    "mialth_jax.report.paper_figures",
    "mialth_jax.report.transfer",
    "mialth_jax.report.gap",
    "mialth_jax.report.beyond",
    "mialth_jax.report.zoo_targets",
    "mialth_jax.report.fit_curves",
    "mialth_jax.report.per_example",
    "mialth_jax.report.onion",
    "mialth_jax.report.adversarial",
    "mialth_jax.report.leakage_plots",
    "mialth_jax.report.audit",
    "mialth_jax.report.dp",
)

_loaded = False


def load() -> None:
  """Imports every built-in feature module once (each registers its components as it is imported)."""
  global _loaded
  if _loaded:
    return
  _loaded = True
  for module in BUILTIN:
    importlib.import_module(module)
