"""Attack inputs, features and every registered attack on synthetic outputs with and without membership signal."""
import jax
import numpy as np
import pytest
from scipy import special

from mialth_jax.attacks import contracts, features, registry, threshold
from mialth_jax.attacks.inputs import AttackError, AttackInputs

NUM_CLASSES = 10


def synthetic(num: int, member_shift: float, seed: int) -> tuple[AttackInputs, np.ndarray]:
  """N(0, 1) logits with the true class raised by 2, and by `member_shift` more for members (half, shuffled)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, num)
  is_member = rng.permutation(np.arange(num) < num // 2)
  logits = rng.normal(size=(num, NUM_CLASSES))
  logits[np.arange(num), labels] += 2.0 + member_shift * is_member
  return AttackInputs.from_logits(logits, labels), is_member


@pytest.fixture(scope="module")
def leaky():
  """Members clearly more confident on their true label."""
  return synthetic(1000, 3.0, seed=1), synthetic(1000, 3.0, seed=2)


@pytest.fixture(scope="module")
def null():
  """Both halves from one distribution (two non-member sets): nothing to find."""
  return synthetic(2000, 0.0, seed=3), synthetic(4000, 0.0, seed=4)


CONFIGS = {name: {"type": name} for name, cls in registry.ATTACKS.items()
           if issubclass(cls, contracts.LabelledOutputsAttack)}  # lira, rmia: test_lira_rmia.py
# A linear model cannot threshold the largest probability from the raw vector; sorted, it is the first coordinate.
CONFIGS["sklearn_logreg"]["features"] = "sorted_topk"
CONFIGS["threshold_loss_per_class"] = {"type": "threshold_loss", "per_class": True}
CONFIGS["optax_mlp_ensemble"] = {"type": "optax_mlp", "num_models": 3, "features": "sorted_topk", "with_label": True}


def _run(config, data, num_bootstrap=1000):
  (train, train_member), (test, test_member) = data
  return registry.run_attack(config, train, train_member, test, test_member, num_bootstrap=num_bootstrap)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attack_finds_membership(name, leaky):
  result, record = _run(CONFIGS[name], leaky, num_bootstrap=0)
  assert result["accuracy"] > 0.8 and result["roc_auc"] > 0.85
  assert result["accuracy"] == np.mean(record["predicted"] == record["is_member"])
  assert record["scores"].shape == (1000,) and record["predicted"].dtype == bool


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attack_is_at_chance_without_signal(name, null):
  result, _ = _run(CONFIGS[name], null)
  low, high = result["accuracy_ci"]
  assert low <= 0.5 <= high and high - low < 0.04


def test_optax_mlp_agrees_with_sklearn_mlp():
  data = synthetic(2000, 1.0, seed=5), synthetic(4000, 1.0, seed=6)
  optax_acc = _run({"type": "optax_mlp"}, data, num_bootstrap=0)[0]["accuracy"]
  sklearn_acc = _run({"type": "sklearn_mlp"}, data, num_bootstrap=0)[0]["accuracy"]
  assert 0.6 < sklearn_acc < 0.85  # a problem with room to disagree
  assert abs(optax_acc - sklearn_acc) <= 0.02


def test_optax_mlp_repeats_bit_for_bit(leaky):
  (train, member), (test, _) = leaky
  fit = lambda seed: registry.make_attack({"type": "optax_mlp", "seed": seed}).fit(train, member).score(test)
  first = fit(0)
  assert np.array_equal(first, fit(0))
  assert not np.array_equal(first, fit(1))


def test_optax_mlp_ensemble_stacks_models(leaky):
  (train, member), _ = leaky
  attack = registry.make_attack({"type": "optax_mlp", "num_models": 3, "hidden": [16, 8]}).fit(train, member)
  assert {leaf.shape[0] for leaf in jax.tree.leaves(attack.params_)} == {3}
  assert attack.params_["Dense_1"]["kernel"].shape == (3, 16, 8)


def test_from_logits_is_stable_and_exact():
  logits = np.array([[1000.0, 0.0, -5.0], [0.1, 0.2, 0.3]])
  inputs = AttackInputs.from_logits(logits, [1, 2])
  log_probs = special.log_softmax(logits, axis=1)
  np.testing.assert_allclose(inputs.loss, [1000.0, -log_probs[1, 2]], rtol=1e-6)
  np.testing.assert_allclose(inputs.probs, np.exp(log_probs), rtol=1e-6)
  assert inputs.probs.dtype == np.float32 and inputs.labels.dtype == np.int32
  assert np.array_equal(inputs.take(np.array([1, 0])).loss, inputs.loss[::-1])


def test_non_finite_values_are_refused_by_name():
  logits = np.zeros((5, 3))
  logits[1, 0], logits[3, 2] = np.nan, np.inf
  with pytest.raises(AttackError, match=r"^logits: 2 of 5 rows hold NaN or Inf$"):
    AttackInputs.from_logits(logits, np.zeros(5, int))
  good = AttackInputs.from_logits(np.zeros((4, 3)), np.zeros(4, int))
  with pytest.raises(AttackError, match=r"^probs: 1 of 4 rows"):
    AttackInputs(probs=np.where(np.arange(4)[:, None] == 2, np.nan, good.probs), logits=good.logits,
                 labels=good.labels, loss=good.loss)
  with pytest.raises(AttackError, match=r"labels: values must lie in \[0, 3\)"):
    AttackInputs.from_logits(np.zeros((2, 3)), [0, 3])


def test_feature_kinds(leaky):
  (inputs, _), _ = leaky
  assert np.array_equal(features.make_features(inputs, "confidence"), inputs.probs)
  top = features.make_features(inputs, "sorted_topk", top_k=3)
  assert top.shape == (1000, 3) and np.all(np.diff(top, axis=1) <= 0)
  assert np.array_equal(top[:, 0], inputs.probs.max(axis=1))
  with_label = features.make_features(inputs, "loss", with_label=True)
  assert with_label.shape == (1000, 1 + NUM_CLASSES) and with_label.dtype == np.float32
  assert np.array_equal(with_label[:, 0], inputs.loss)
  assert np.array_equal(with_label[:, 1:].argmax(axis=1), inputs.labels) and np.all(with_label[:, 1:].sum(1) == 1)
  with pytest.raises(AttackError, match="unknown feature kind 'logit'; known: confidence, sorted_topk, loss"):
    features.make_features(inputs, "logit")


def test_best_threshold_by_hand():
  scores = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.4, 0.2, 0.1])
  is_member = np.arange(8) < 4
  # Correct calls per cut below: .9 -> 5, .8 -> 6, .7 -> 5, .6 -> 6, .4 -> 6, ...: the first 6 wins, halfway to .7.
  assert threshold.best_threshold(scores, is_member) == pytest.approx(0.75)
  # Mirrored (non-members score higher): -.1 -> 5, -.2 -> 6, the {-.4, -.4} tie -> 6, ...: halfway from -.2 to -.4.
  assert threshold.best_threshold(-scores, ~is_member) == pytest.approx(-0.3)


def test_per_class_thresholds_fall_back_to_the_global_one():
  inputs = AttackInputs.from_logits(np.log([[0.9, 0.1, 0.0 + 1e-9]] * 4 + [[0.1, 0.9, 1e-9]] * 4), [0] * 4 + [1] * 4)
  is_member = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)  # class 1: one member, three non-members
  attack = threshold.LossThreshold(per_class=True).fit(inputs, is_member)
  assert set(attack.class_thresholds_) == {0, 1}
  unseen = AttackInputs.from_logits(np.log([[0.2, 0.2, 0.6]]), [2])
  assert attack.score(unseen)[0] == pytest.approx(-unseen.loss[0] - attack.threshold_)


def test_modified_entropy_by_hand():
  inputs = AttackInputs.from_logits(np.log([[0.5, 0.25, 0.25]]), [0])
  expected = -(1 - 0.5) * np.log(0.5) - 2 * 0.25 * np.log(1 - 0.25)
  assert threshold.modified_entropy(inputs)[0] == pytest.approx(expected)


def test_registry_refuses_unknown_types_and_options():
  with pytest.raises(AttackError, match=r"^unknown attack type 'foo'; known: optax_mlp, sklearn_mlp, sklearn_svc, "
                                        r"sklearn_rf, sklearn_logreg, threshold_loss, .*threshold_mentropy, lira, rmia, "
                                        r"adversarial_tv, .*hopskipjump, .*adversarial_features$"):
    registry.make_attack({"type": "foo"})
  with pytest.raises(AttackError, match=r"attack 'optax_mlp': unknown option\(s\) hiden, lr; known: .*hidden"):
    registry.make_attack({"type": "optax_mlp", "hiden": [8], "lr": 0.1})
  with pytest.raises(AttackError, match="unknown option"):
    registry.make_attack({"type": "threshold_loss", "features": "loss"})
