"""Display names of a report, read from the registered components: a recipe's, attack's or protocol's `title`
(class attribute), else its registered name."""
from mialth_jax.attacks.registry import ATTACKS
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.lottery.recipes import RECIPES


def _title(registry, name: str) -> str:
  return getattr(registry.get(name), "title", "") or name


def model_kind(kind: str) -> str:
  """A model kind (a training recipe), e.g. "lottery ticket" for ticket."""
  return _title(RECIPES, kind)


def attack(attack_type: str) -> str:
  """An attack type, e.g. the paper's MLP for sklearn_mlp (its type name while the class has no title)."""
  return _title(ATTACKS, attack_type)


def protocol(name: str) -> str:
  return _title(PROTOCOLS, name)
