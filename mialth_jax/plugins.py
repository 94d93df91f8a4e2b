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
