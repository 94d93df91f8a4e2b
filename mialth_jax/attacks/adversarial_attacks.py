"""Attacks that query the target model itself: white-box (input gradients, adversarial examples) and label-only.

  adversarial_tv           the total-variation proxy at budget eps (or, with output="loss", the loss variation):
                           Kadoche et al. 2022 as reconstructed in attacks/adversarial.py; FGSM is steps=1,
                           step_fraction=1
  input_gradient_norm      || grad_x loss ||, the small-eps limit of the loss variation
  minimal_perturbation     the smallest eps whose PGD example is misclassified (Del Grosso et al. 2022)
  hopskipjump              label-only: l_2 distance to the boundary by HopSkipJump (attacks/label_only.py)
  augmentation_robustness  label-only: share of flips / shifts still given the true label
  adversarial_features     several of these signals (and the loss and top probability) as the features of a
                           learned attack (`learner`: any feature attack, e.g. optax_mlp)

They follow contracts.TargetQueryAttack: a protocol (experiments/adversarial.py) hands them the target and example ids,
`statistic(target, ids, batch_size)` gives one value (or feature row) per example, cached per target and signal
(attacks/adversarial_signals.py), and fit / score / predict work on those values. For the reconstructed attack's
signals (adversarial_tv, input_gradient_norm) the side members are on is not assumed: with direction="auto" (their
default) it is read from attack-train (the side where the ROC AUC is >= 0.5; "lower" means members vary less, the
spec's hypothesis). The published attacks keep their published rule, members on the "higher" side (larger minimal
perturbation, farther from the boundary, more augmentations still right); any attack takes direction="auto",
"lower" or "higher". The threshold maximises accuracy on attack-train, as for the threshold attacks.
"""
import numpy as np

from mialth_jax.attacks import adversarial, adversarial_signals, contracts, features, metrics, registry, threshold
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.attacks.registry import ATTACKS

DIRECTIONS = ("auto", "lower", "higher")


def check(attack: str, name: str, ok: bool, expected: str, value) -> None:
  """Refuses a bad option in one line naming the attack and the option."""
  if not ok:
    raise AttackError(f"attack {attack}: option {name} must be {expected}, got {value!r}")


def _membership(values: np.ndarray, is_member) -> np.ndarray:
  is_member = np.asarray(is_member, bool)
  if is_member.shape != (len(values),) or is_member.all() or not is_member.any():
    raise AttackError(f"is_member: expected {len(values)} flags with members and non-members, got "
                      f"{int(is_member.sum())} members of {is_member.size}")
  return is_member


class SignalAttack(contracts.TargetQueryAttack):
  """One per-example signal (`kind`, a key of adversarial_signals.STATISTICS), thresholded."""
  kind = ""
  name = ""

  def __init__(self, *, direction: str = "auto", seed: int = 0, batch_size: int = 0):
    check(self.name, "direction", direction in DIRECTIONS, f"one of {', '.join(DIRECTIONS)}", direction)
    check(self.name, "batch_size", isinstance(batch_size, int) and batch_size >= 0, "an int >= 0", batch_size)
    self.direction = direction
    self.seed = int(seed)
    self.batch_size = batch_size

  def signal_options(self) -> dict:
    raise NotImplementedError

  def signal(self) -> adversarial_signals.Signal:
    return adversarial_signals.Signal.make(self.kind, self.seed, **self.signal_options())

  def statistic(self, target, ids: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """float64 [N]: the raw signal of each example (cached); `batch_size` unless the attack sets its own."""
    return adversarial_signals.compute(self.signal(), target, ids, self.batch_size or batch_size)

  def fit(self, values: np.ndarray, is_member: np.ndarray) -> "SignalAttack":
    is_member = _membership(values, is_member)
    higher = metrics.roc_auc(values, is_member) >= 0.5 if self.direction == "auto" else self.direction == "higher"
    self.sign_ = 1.0 if higher else -1.0
    self.threshold_ = threshold.best_threshold(self.sign_ * values, is_member)
    return self

  @property
  def members_(self) -> str:
    """Where attack-train's members lie on the signal: "higher" or "lower" (fitted)."""
    return "higher" if self.sign_ > 0 else "lower"

  def score(self, values: np.ndarray) -> np.ndarray:
    return self.sign_ * np.asarray(values, np.float64)

  def predict(self, values: np.ndarray) -> np.ndarray:
    return self.score(values) >= self.threshold_


def _norm(attack: str, norm: str) -> str:
  check(attack, "norm", norm in adversarial.NORMS, f"one of {', '.join(adversarial.NORMS)}", norm)
  return norm


def _count(attack: str, name: str, value, minimum: int = 1) -> int:
  check(attack, name, isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum,
        f"an int >= {minimum}", value)
  return int(value)


def _size(attack: str, name: str, value, positive: bool = False) -> float:
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > 0 if positive else value >= 0)
  check(attack, name, ok, "a number > 0" if positive else "a number >= 0", value)
  return float(value)


def _flag(attack: str, name: str, value) -> bool:
  check(attack, name, isinstance(value, (bool, np.bool_)), "true or false", value)
  return bool(value)


class AdversarialTV(SignalAttack):
  kind = "tv"
  name = "adversarial_tv"

  def __init__(self, *, eps: float = 4 / 255, norm: str = "linf", steps: int = 10, step_fraction: float = 0.25,
               random_start: bool = False, output: str = "tv", per_eps: bool = False, **common):
    super().__init__(**common)
    self.eps = _size(self.name, "eps", eps)
    self.norm = _norm(self.name, norm)
    self.steps, self.step_fraction = _count(self.name, "steps", steps), _size(self.name, "step_fraction",
                                                                             step_fraction, positive=True)
    self.random_start, self.per_eps = _flag(self.name, "random_start", random_start), _flag(self.name, "per_eps",
                                                                                           per_eps)
    check(self.name, "output", output in ("tv", "loss"), "tv or loss", output)
    self.output = output

  def signal_options(self):
    return dict(eps=self.eps, norm=self.norm, steps=self.steps, step_fraction=self.step_fraction,
                random_start=self.random_start, output=self.output, per_eps=self.per_eps)


class InputGradientNorm(SignalAttack):
  kind = "grad_norm"
  name = "input_gradient_norm"

  def __init__(self, *, norm: str = "linf", **common):
    super().__init__(**common)
    self.norm = _norm(self.name, norm)

  def signal_options(self):
    return dict(norm=self.norm)


class MinimalPerturbation(SignalAttack):
  kind = "min_eps"
  name = "minimal_perturbation"

  def __init__(self, *, norm: str = "linf", max_eps: float = 16 / 255, search_steps: int = 8, steps: int = 10,
               step_fraction: float = 0.25, direction: str = "higher", **common):
    super().__init__(direction=direction, **common)
    self.norm = _norm(self.name, norm)
    self.max_eps = _size(self.name, "max_eps", max_eps, positive=True)
    self.search_steps = _count(self.name, "search_steps", search_steps)
    self.steps = _count(self.name, "steps", steps)
    self.step_fraction = _size(self.name, "step_fraction", step_fraction, positive=True)

  def signal_options(self):
    return dict(norm=self.norm, max_eps=self.max_eps, search_steps=self.search_steps, steps=self.steps,
                step_fraction=self.step_fraction)


class HopSkipJump(SignalAttack):
  kind = "hsj_distance"
  name = "hopskipjump"

  def __init__(self, *, iterations: int = 10, init_eval: int = 100, max_eval: int = 1000, init_size: int = 100,
               direction: str = "higher", **common):
    super().__init__(direction=direction, **common)
    self.iterations = _count(self.name, "iterations", iterations, minimum=0)
    self.init_eval = _count(self.name, "init_eval", init_eval)
    self.max_eval = _count(self.name, "max_eval", max_eval)
    self.init_size = _count(self.name, "init_size", init_size)
    check(self.name, "max_eval", self.max_eval >= self.init_eval, f">= init_eval ({self.init_eval})", max_eval)

  def signal_options(self):
    return dict(iterations=self.iterations, init_eval=self.init_eval, max_eval=self.max_eval,
                init_size=self.init_size)


class AugmentationRobustness(SignalAttack):
  kind = "augmentation"
  name = "augmentation_robustness"

  def __init__(self, *, max_shift: int = 1, flip: bool = True, direction: str = "higher", **common):
    super().__init__(direction=direction, **common)
    self.max_shift = _count(self.name, "max_shift", max_shift, minimum=0)
    self.flip = _flag(self.name, "flip", flip)

  def signal_options(self):
    return dict(max_shift=self.max_shift, flip=self.flip)


SIGNAL_ATTACKS = {cls.name: cls for cls in (AdversarialTV, InputGradientNorm, MinimalPerturbation, HopSkipJump,
                                            AugmentationRobustness)}
for _name, _cls in SIGNAL_ATTACKS.items():  # registered under their `name`, in this order
  ATTACKS.register(_name, _cls)


@ATTACKS.register("adversarial_features")
class AdversarialFeatures(contracts.TargetQueryAttack):
  """Signals of several SignalAttacks (and, with with_outputs, the loss and the top probability) as the feature
  vector of a learned attack (`learner`: a feature attack config, e.g. {"type": "optax_mlp"})."""

  def __init__(self, *, signals: dict | None = None, learner: dict | None = None, with_outputs: bool = True):
    signals = signals if signals is not None else {"tv": {"type": "adversarial_tv"}}
    check("adversarial_features", "signals", isinstance(signals, dict) and len(signals) > 0 and all(
        isinstance(c, dict) and c.get("type") in SIGNAL_ATTACKS for c in signals.values()),
        f"a non-empty dict of signal attack configs (types {', '.join(SIGNAL_ATTACKS)})", signals)
    self.signals = {name: registry.make_attack(dict(c)) for name, c in sorted(signals.items())}
    self.learner = dict(learner or {"type": "optax_mlp"})
    self.with_outputs = _flag("adversarial_features", "with_outputs", with_outputs)
    check("adversarial_features", "learner", isinstance(registry.make_attack(dict(self.learner)),
                                                        features.FeatureAttack),
          "a feature attack config (e.g. optax_mlp, sklearn_logreg)", learner)

  def statistic(self, target, ids: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """float64 [N, F]: every signal of each example, then its loss and top probability (with_outputs)."""
    columns = [attack.statistic(target, ids, batch_size) for attack in self.signals.values()]
    if self.with_outputs:
      outputs = target.outputs(ids)
      columns += [outputs.loss.astype(np.float64), outputs.probs.max(axis=1).astype(np.float64)]
    return np.stack(columns, axis=1)

  def fit(self, values: np.ndarray, is_member: np.ndarray) -> "AdversarialFeatures":
    self.model_ = registry.make_attack(dict(self.learner))
    self.model_.fit_features(np.asarray(values, np.float32), _membership(values, is_member))
    return self

  def score(self, values: np.ndarray) -> np.ndarray:
    return np.asarray(self.model_.score_features(np.asarray(values, np.float32)), np.float64)

  def predict(self, values: np.ndarray) -> np.ndarray:
    return self.score(values) >= self.model_.threshold
