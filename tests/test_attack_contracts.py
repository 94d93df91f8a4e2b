"""The attack contracts and the self-registering attack registry: a toy attack of each contract is registered from
this file and run the way its protocol runs it; classes that break their contract are refused when registered; the
registry module imports no attack."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from mialth_jax import plugins
from mialth_jax.attacks import adversarial_attacks, contracts, registry
from mialth_jax.attacks.features import check_membership
from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.attacks.reference import ReferenceOutputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import toy_attacks  # noqa: E402


@pytest.fixture
def toy_names():
  """Names registered by a test, removed from ATTACKS afterwards."""
  names = []
  yield names
  for name in names:
    registry.ATTACKS.pop(name, None)


def leaky_outputs(num: int = 400, seed: int = 0) -> tuple[AttackInputs, np.ndarray]:
  """Outputs whose true-class logit is 3 higher for members (half of the examples)."""
  rng = np.random.default_rng(seed)
  labels, is_member = rng.integers(0, 5, num), np.arange(num) % 2 == 0
  logits = rng.normal(size=(num, 5))
  logits[np.arange(num), labels] += 3.0 * is_member
  return AttackInputs.from_logits(logits, labels), is_member


def test_a_toy_attack_learnt_from_labelled_outputs(toy_names):
  @registry.ATTACKS.register("toy_true_logit")
  class TrueLogit(contracts.LabelledOutputsAttack):
    def __init__(self, *, shift: float = 0.0):
      self.shift = shift

    def fit(self, inputs, is_member):
      is_member = check_membership(inputs, is_member)
      self.threshold_ = float(np.median(self.score(inputs)[is_member])) - self.shift
      return self

    def score(self, inputs):
      return inputs.logits[np.arange(len(inputs)), inputs.labels].astype(np.float64)

    def predict(self, inputs):
      return self.score(inputs) >= self.threshold_

  toy_names.append("toy_true_logit")
  configs = {"mine": {"type": "toy_true_logit", "shift": 1.0}, "lira": {"type": "lira"}}
  assert registry.of_contract(configs, contracts.LabelledOutputsAttack) == {"mine": configs["mine"]}
  assert registry.of_contract(configs, contracts.TargetQueryAttack) == {}
  (train, train_member), (test, test_member) = leaky_outputs(seed=1), leaky_outputs(seed=2)
  result, record = registry.run_attack(configs["mine"], train, train_member, test, test_member, num_bootstrap=0)
  assert result["roc_auc"] > 0.9 and record["predicted"].dtype == bool


def test_a_toy_attack_learnt_from_reference_models(toy_names):
  registry.ATTACKS.register("toy_mean_ratio", toy_attacks.MeanRatio)
  toy_names.append("toy_mean_ratio")
  rng = np.random.default_rng(0)
  keep = rng.random((4, 30)) < 0.5
  labels = rng.integers(0, 3, 30)
  logits = rng.normal(size=(4, 30, 1, 3)).astype(np.float32)
  reference = ReferenceOutputs(ids=np.arange(30), labels=labels, logits=logits, keep=keep)
  configs = {"mine": {"type": "toy_mean_ratio"}, "loss": {"type": "threshold_loss"}}
  assert registry.of_contract(configs, contracts.ReferenceAttack) == {"mine": configs["mine"]}
  attack = registry.make_attack(configs["mine"]).fit_reference(reference, exclude=0)
  rows = reference.rows(np.array([3, 7, 11]))
  scores = attack.score_examples(logits[0, rows], labels[rows], rows)
  direct = reference.true_class_log_prob[0, rows, 0] - reference.true_class_log_prob[1:, rows].mean(axis=(0, 2))
  np.testing.assert_allclose(scores, direct, rtol=1e-12)
  np.testing.assert_array_equal(attack.predict_examples(logits[0, rows], labels[rows], rows), direct > 0)
  with pytest.raises(AttackError, match=r"learns from reference models .* not fit\(inputs, is_member\)$"):
    attack.fit(*leaky_outputs())


class OutputsTarget:
  """A stand-in for attacks.target.Target: outputs(ids) of a fixed table of outputs."""

  def __init__(self, inputs: AttackInputs):
    self.inputs = inputs

  def outputs(self, ids):
    return self.inputs.take(np.asarray(ids))


def test_a_toy_attack_that_queries_the_target(toy_names):
  registry.ATTACKS.register("toy_queried_loss", toy_attacks.QueriedLoss)
  toy_names.append("toy_queried_loss")
  inputs, is_member = leaky_outputs(seed=3)
  target, ids = OutputsTarget(inputs), np.arange(len(inputs))
  configs = {"mine": {"type": "toy_queried_loss"}, "tv": {"type": "adversarial_tv"}, "loss": {"type": "threshold_loss"}}
  assert list(registry.of_contract(configs, contracts.TargetQueryAttack)) == ["mine", "tv"]
  attack = registry.make_attack(configs["mine"])
  values = attack.statistic(target, ids, batch_size=64)
  np.testing.assert_array_equal(values, -inputs.loss.astype(np.float64))
  predicted = attack.fit(values[::2], is_member[::2]).predict(values[1::2])
  assert predicted.dtype == bool and (predicted == is_member[1::2]).mean() > 0.7
  with pytest.raises(AttackError, match=r"queries the target model .* a protocol that queries targets"):
    registry.run_attack(configs["mine"], inputs, is_member, inputs, is_member)


class NoPredict(contracts.LabelledOutputsAttack):
  def fit(self, inputs, is_member):
    return self

  def score(self, inputs):
    return np.zeros(len(inputs))


class NoScoreExamples(contracts.ReferenceAttack):
  def fit_reference(self, reference, exclude=None):
    return self


class NoStatistic(contracts.TargetQueryAttack):
  def fit(self, values, is_member):
    return self

  def score(self, values):
    return values

  def predict(self, values):
    return values > 0


class NoContract:
  def fit(self, inputs, is_member):
    return self

  def score(self, inputs):
    return np.zeros(len(inputs))

  def predict(self, inputs):
    return np.zeros(len(inputs), bool)


class TwoContracts(NoStatistic, contracts.LabelledOutputsAttack):
  def statistic(self, target, ids, batch_size=128):
    return np.zeros(len(ids))


@pytest.mark.parametrize("cls, message", [
    (NoPredict, r"^attack type 'broken' not registered: attack class NoPredict follows "
                r"contracts.LabelledOutputsAttack but lacks predict$"),
    (NoScoreExamples, r"follows contracts.ReferenceAttack but lacks score_examples$"),
    (NoStatistic, r"follows contracts.TargetQueryAttack but lacks statistic$"),
    (NoContract, r"attack class NoContract must subclass exactly one attack contract; it follows none of "
                 r"contracts.LabelledOutputsAttack, contracts.ReferenceAttack, contracts.TargetQueryAttack$"),
    (TwoContracts, r"it follows contracts.LabelledOutputsAttack, contracts.TargetQueryAttack$"),
])
def test_a_class_that_breaks_its_contract_is_refused_at_registration(cls, message, monkeypatch):
  with pytest.raises(AttackError, match=message) as error:
    registry.ATTACKS.register("broken", cls)
  assert "\n" not in str(error.value) and "broken" not in registry.ATTACKS
  with pytest.raises(AttackError, match=message):  # a test's monkeypatch.setitem is checked the same way
    monkeypatch.setitem(registry.ATTACKS, "broken", cls)
  assert "broken" not in registry.ATTACKS


def test_of_contract_takes_a_contract_and_known_types():
  with pytest.raises(TypeError, match="of_contract: expected one of LabelledOutputsAttack"):
    registry.of_contract({}, "references")
  with pytest.raises(AttackError, match=r"unknown attack type 'nope'"):
    registry.of_contract({"x": {"type": "nope"}}, contracts.ReferenceAttack)


def test_every_builtin_attack_follows_one_contract():
  by_contract = {c.__name__: [n for n, cls in registry.ATTACKS.items() if issubclass(cls, c)]
                 for c in contracts.CONTRACTS}
  assert by_contract["ReferenceAttack"] == ["lira", "rmia"]
  assert by_contract["TargetQueryAttack"] == [*adversarial_attacks.SIGNAL_ATTACKS, "adversarial_features"]
  assert sum(map(len, by_contract.values())) == len(registry.ATTACKS)
  for name, cls in adversarial_attacks.SIGNAL_ATTACKS.items():
    assert registry.ATTACKS[name] is cls  # a signal attack's `name` (its errors' prefix) is its registered name


def _module_imports(path: str) -> set[str]:
  """Modules a file imports at its top level (module names; `from a import b` gives a.b when that is a module)."""
  names = set()
  for node in ast.parse(open(path).read()).body:
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
  return {n for n in names if n.startswith("mialth_jax.") and os.path.exists(_path(n))}


def _path(module: str) -> str:
  base = os.path.join(REPO, *module.split("."))
  return base + ".py" if os.path.exists(base + ".py") else os.path.join(base, "__init__.py")


def _registers_attacks(path: str) -> bool:
  """Whether the code of a file (not its text) uses ATTACKS.register."""
  return any(isinstance(node, ast.Attribute) and node.attr == "register" and
             (getattr(node.value, "id", None) == "ATTACKS" or getattr(node.value, "attr", None) == "ATTACKS")
             for node in ast.walk(ast.parse(open(path).read())))


def test_the_registry_module_imports_no_attack():
  """Neither attacks/registry.py nor anything it imports (transitively) registers an attack or is a plugin."""
  seen, todo = set(), ["mialth_jax.attacks.registry"]
  while todo:
    module = todo.pop()
    if module not in seen:
      seen.add(module)
      todo += sorted(_module_imports(_path(module)))
  registering = sorted(m for m in seen if _registers_attacks(_path(m)))
  assert registering == [] and not seen & set(plugins.BUILTIN), sorted(seen)
  assert {"mialth_jax.attacks.contracts", "mialth_jax.plugins"} <= seen
  assert all(_registers_attacks(_path(m)) for m in plugins.BUILTIN if m.startswith("mialth_jax.attacks."))


def test_importing_the_registry_registers_nothing_until_plugins_load():
  code = ("import sys; from mialth_jax.attacks import registry; assert not registry.ATTACKS, list(registry.ATTACKS); "
          "from mialth_jax import plugins; assert not set(plugins.BUILTIN) & set(sys.modules); "
          "registry.make_attack({'type': 'lira'}); print(len(registry.ATTACKS))")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": REPO})
  assert done.returncode == 0 and done.stdout.strip() == str(len(registry.ATTACKS)), done.stderr[-2000:]
