"""Attacks by `type` name, built from plain config dicts, and `run_attack`: fit, score, metrics in one call.

  make_attack({"type": "optax_mlp", "hidden": [64], "num_models": 4, "features": "sorted_topk", "top_k": 3})

Every learned attack takes `features`, `top_k`, `with_label` and `seed`; threshold attacks take `per_class` only
(they read their statistic from the outputs directly, so feature options would have no effect and are refused).
"""
import inspect

import numpy as np

from mialth_jax.attacks import metrics as metrics_lib
from mialth_jax.attacks import adversarial_attacks, lira, optax_mlp, rmia, sklearn_attacks, threshold
from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.utils.registry import Registry

# An attack is a class with fit(AttackInputs, is_member) -> self, score(AttackInputs) -> higher = more likely a
# member, and predict(AttackInputs) -> bool; its keyword-only __init__ arguments are its config options.
# `ATTACKS.register("my_attack", MyAttack)` adds one (from any module) for configs, validation and protocols.
# Attacks with learns_from = "references" (lira, rmia) are fitted on reference models instead: fit_reference and
# score_examples (attacks/reference.py); their fit(inputs, is_member) raises.
ATTACKS = Registry("attack type", AttackError, {
    "optax_mlp": optax_mlp.OptaxMLPAttack,
    "sklearn_mlp": sklearn_attacks.SklearnMLPAttack,
    "sklearn_svc": sklearn_attacks.SklearnSVCAttack,
    "sklearn_rf": sklearn_attacks.SklearnRFAttack,
    "sklearn_logreg": sklearn_attacks.SklearnLogRegAttack,
    "threshold_loss": threshold.LossThreshold,
    "threshold_confidence": threshold.ConfidenceThreshold,
    "threshold_entropy": threshold.EntropyThreshold,
    "threshold_mentropy": threshold.MentropyThreshold,
    "lira": lira.LiRA,
    "rmia": rmia.RMIA,
    **adversarial_attacks.SIGNAL_ATTACKS,  # learns_from = "target": white-box, label-only (experiments/adversarial)
    "adversarial_features": adversarial_attacks.AdversarialFeatures,
})


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
  options = dict(config)
  name = options.pop("type", None)
  cls = ATTACKS.lookup(name)
  known = known_options(cls)
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise AttackError(f"attack {name!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
  return cls(**options)


def learning_from(attack_configs: dict, kind: str) -> dict:
  """The attack configs whose attack class learns from `kind`: "labelled_outputs" (fit(inputs, is_member)),
  "references" (fit_reference: LiRA, RMIA; see attacks.reference) or "target" (statistic(target, ids), then fit on
  it: white-box and label-only attacks, attacks.adversarial_attacks)."""
  return {name: c for name, c in attack_configs.items()
          if getattr(ATTACKS.lookup(c.get("type")), "learns_from", "labelled_outputs") == kind}


def evaluate(attack, test_inputs: AttackInputs, test_is_member: np.ndarray, test_classes: np.ndarray | None = None,
             *, num_bootstrap: int = 1000, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
  """Scores a fitted attack on attack-test: (metrics dict, per-example arrays for an npz).

  test_classes defaults to the true labels of test_inputs.
  """
  classes = test_inputs.labels if test_classes is None else np.asarray(test_classes)
  scores, predicted = attack.score(test_inputs), attack.predict(test_inputs)
  is_member = np.asarray(test_is_member, bool)
  result = metrics_lib.attack_metrics(scores, is_member, predicted, classes, num_bootstrap=num_bootstrap, seed=seed)
  return result, {"scores": scores, "is_member": is_member, "predicted": predicted, "classes": classes}


def run_attack(config: dict, train_inputs: AttackInputs, train_is_member: np.ndarray, test_inputs: AttackInputs,
               test_is_member: np.ndarray, test_classes: np.ndarray | None = None, *, num_bootstrap: int = 1000,
               seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
  """Fits on attack-train, then `evaluate`s on attack-test."""
  attack = make_attack(config).fit(train_inputs, train_is_member)
  return evaluate(attack, test_inputs, test_is_member, test_classes, num_bootstrap=num_bootstrap, seed=seed)
