"""Attacks by `type` name, built from plain config dicts, and `run_attack`: fit, score, metrics in one call.

  make_attack({"type": "optax_mlp", "hidden": [64], "num_models": 4, "features": "sorted_topk", "top_k": 3})

Every learned attack takes `features`, `top_k`, `with_label` and `seed`; threshold attacks take `per_class` only
(they read their statistic from the outputs directly, so feature options would have no effect and are refused).

ATTACKS starts empty and this module imports no attack: each attack module registers its classes as it is defined
(`@ATTACKS.register("my_attack")`), and `mialth_jax.plugins.load()` imports the built-in ones. An attack class follows
one of the contracts of attacks/contracts.py (checked when it is registered); its keyword-only __init__ arguments are
its config options.
"""
import inspect

import numpy as np

from mialth_jax import plugins
from mialth_jax.attacks import contracts
from mialth_jax.attacks import metrics as metrics_lib
from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.utils.registry import Registry


class AttackRegistry(Registry):
  """A Registry whose entries are attack classes, each following one attack contract (checked as it is added,
  by `register` or by item assignment)."""

  def __setitem__(self, name: str, cls: type) -> None:
    try:
      contracts.contract_of(cls)
    except AttackError as e:
      raise AttackError(f"attack type {name!r} not registered: {e}") from None
    super().__setitem__(name, cls)


ATTACKS = AttackRegistry("attack type", AttackError)


def known_options(cls: type) -> list[str]:
  """Keyword options of an attack class: those of its __init__ and of its bases' (which receive **common)."""
  names = set()
  for klass in cls.__mro__:
    if "__init__" in vars(klass):
      names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                if p.kind == inspect.Parameter.KEYWORD_ONLY}
  return sorted(names)


def make_attack(config: dict):
  """An unfitted attack from {"type": name, **options}; unknown types and options are refused by name."""
  plugins.load()
  options = dict(config)
  name = options.pop("type", None)
  cls = ATTACKS.lookup(name)
  known = known_options(cls)
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise AttackError(f"attack {name!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
  return cls(**options)


def of_contract(attack_configs: dict, contract: type) -> dict:
  """The attack configs ({name: {"type": ..., **options}}) whose attack class follows `contract`, one of
  contracts.CONTRACTS; an unknown type raises."""
  if contract not in contracts.CONTRACTS:
    raise TypeError(f"of_contract: expected one of {', '.join(c.__name__ for c in contracts.CONTRACTS)}, "
                    f"got {contract!r}")
  plugins.load()
  return {name: c for name, c in attack_configs.items() if issubclass(ATTACKS.lookup(c.get("type")), contract)}


def evaluate(attack, test_inputs: AttackInputs, test_is_member: np.ndarray, test_classes: np.ndarray | None = None,
             *, num_bootstrap: int = 1000, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
  """Scores a fitted attack on attack-test: (metrics dict, per-example arrays for an npz); `attack.predict` returns
  None for a score-only attack (no decision rule), whose results then hold no accuracy and no `predicted` array.

  test_classes defaults to the true labels of test_inputs.
  """
  classes = test_inputs.labels if test_classes is None else np.asarray(test_classes)
  scores = attack.score(test_inputs)
  predicted = attack.predict(test_inputs)
  is_member = np.asarray(test_is_member, bool)
  result = metrics_lib.attack_metrics(scores, is_member, predicted, classes, num_bootstrap=num_bootstrap, seed=seed)
  decided = {} if predicted is None else {"predicted": predicted}  # a score-only attack decides nothing
  return result, {"scores": scores, "is_member": is_member, **decided, "classes": classes}


def run_attack(config: dict, train_inputs: AttackInputs, train_is_member: np.ndarray, test_inputs: AttackInputs,
               test_is_member: np.ndarray, test_classes: np.ndarray | None = None, *, num_bootstrap: int = 1000,
               seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
  """Fits on attack-train, then `evaluate`s on attack-test (attacks learnt from labelled outputs; a reference attack's
  fit refuses with its own message)."""
  attack = make_attack(config)
  if isinstance(attack, contracts.TargetQueryAttack):
    raise AttackError(f"attack {config.get('type')!r} queries the target model (contracts.TargetQueryAttack): it runs "
                      "under a protocol that queries targets, not on given outputs")
  attack = attack.fit(train_inputs, train_is_member)
  return evaluate(attack, test_inputs, test_is_member, test_classes, num_bootstrap=num_bootstrap, seed=seed)
