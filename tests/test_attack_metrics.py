"""Attack metrics: a hand-computed example, agreement with sklearn.metrics, bootstrap intervals."""
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from mialth_jax.attacks import metrics
from mialth_jax.attacks.inputs import AttackError


def _hand_example():
  """4 members, 4 non-members; one member / non-member tie at 0.4; the attack calls scores >= 0.65 members."""
  scores = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.4, 0.2, 0.1])
  is_member = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
  classes = np.array([0, 0, 1, 1, 0, 1, 1, 1])
  return scores, is_member, scores >= 0.65, classes


def test_hand_computed_example():
  result = metrics.attack_metrics(*_hand_example(), num_bootstrap=0)
  # Predicted members: 0.9, 0.8 (right) and 0.7 (wrong). TP 2, FP 1, TN 3, FN 2.
  assert result["accuracy"] == 5 / 8
  assert result["precision"] == pytest.approx(2 / 3)
  assert result["recall"] == 0.5
  assert result["f1"] == pytest.approx(4 / 7)
  # Member-over-non-member pairs won: 0.9 -> 4, 0.8 -> 4, 0.6 -> 3, 0.4 -> 2 and a tie (half) = 13.5 of 16.
  assert result["roc_auc"] == 13.5 / 16
  # ROC points: (0, .25) (0, .5) (.25, .5) (.25, .75) (.5, 1) (.75, 1) (1, 1): best TPR - FPR is 0.5.
  assert result["advantage"] == 0.5
  assert result["tpr_at_fpr_0.001"] == 0.5 and result["tpr_at_fpr_0.01"] == 0.5
  assert result["num_members"] == 4 and result["num_nonmembers"] == 4
  # Class 0: members right, right; non-member wrong -> 2/3. Class 1: members wrong x2, non-members right x3 -> 3/5.
  assert result["per_class_accuracy"] == {"0": pytest.approx(2 / 3), "1": 0.6}
  assert "accuracy_ci" not in result


def _random_case(seed: int, n: int = 3000):
  rng = np.random.default_rng(seed)
  is_member = rng.random(n) < 0.45
  scores = np.round(rng.normal(size=n) + 0.7 * is_member, 1)  # rounding makes many ties
  predicted = scores >= np.median(scores)
  return scores, is_member, predicted


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_with_ties(seed):
  scores, is_member, predicted = _random_case(seed)
  result = metrics.attack_metrics(scores, is_member, predicted, num_bootstrap=0)
  # Every threshold counts for TPR at low FPR: sklearn's default drop_intermediate=True removes collinear ROC
  # points, and with ties the last point under an FPR level can be one of them.
  fpr, tpr, _ = skm.roc_curve(is_member, scores, drop_intermediate=False)
  assert result["accuracy"] == pytest.approx(skm.accuracy_score(is_member, predicted), abs=1e-12)
  assert result["precision"] == pytest.approx(skm.precision_score(is_member, predicted), abs=1e-12)
  assert result["recall"] == pytest.approx(skm.recall_score(is_member, predicted), abs=1e-12)
  assert result["f1"] == pytest.approx(skm.f1_score(is_member, predicted), abs=1e-12)
  assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(is_member, scores), abs=1e-12)
  assert result["advantage"] == pytest.approx(np.max(tpr - fpr), abs=1e-12)
  for level in (0.001, 0.01):
    assert result[f"tpr_at_fpr_{level}"] == pytest.approx(tpr[fpr <= level].max(), abs=1e-12)


def test_roc_curve_matches_sklearn():
  scores, is_member, _ = _random_case(2, n=500)
  fpr, tpr, thresholds = metrics.roc_curve(scores, is_member)
  sk_fpr, sk_tpr, sk_thresholds = skm.roc_curve(is_member, scores, drop_intermediate=False)
  np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
  np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
  np.testing.assert_array_equal(thresholds, sk_thresholds)


def test_precision_is_zero_without_predicted_members():
  scores, is_member, _ = _random_case(3, n=200)
  result = metrics.attack_metrics(scores, is_member, np.zeros(200, bool), num_bootstrap=50)
  assert result["precision"] == 0.0 == skm.precision_score(is_member, np.zeros(200, bool), zero_division=0)
  assert result["f1"] == 0.0 and result["recall"] == 0.0
  assert result["precision_ci"] == [0.0, 0.0]


def test_bootstrap_intervals_contain_the_estimate_and_repeat_for_a_seed():
  scores, is_member, predicted = _random_case(4)
  first = metrics.attack_metrics(scores, is_member, predicted, num_bootstrap=300, seed=7)
  again = metrics.attack_metrics(scores, is_member, predicted, num_bootstrap=300, seed=7)
  other = metrics.attack_metrics(scores, is_member, predicted, num_bootstrap=300, seed=8)
  assert first == again and first != other
  for name in metrics.CI_METRICS:
    low, high = first[f"{name}_ci"]
    assert low <= first[name] <= high
    assert high - low < 0.1  # 3000 examples: intervals a few points wide
  assert json.loads(json.dumps(first)) == first


def test_resampled_tpr_at_low_fpr_matches_sklearn_on_the_repeated_examples():
  """A bootstrap row of draw counts is the data set with each example repeated that often: TPR at FPR <= level of
  every row equals sklearn's full ROC curve on the repeated examples."""
  scores, is_member, predicted = _random_case(6)
  weights = np.concatenate(list(metrics.resample_weights(len(scores), 20, seed=3)))
  resampled = metrics.resampled_metrics(scores, is_member, predicted, weights)
  for row, counts in enumerate(weights.astype(int)):
    fpr, tpr, _ = skm.roc_curve(np.repeat(is_member, counts), np.repeat(scores, counts), drop_intermediate=False)
    for level in metrics.FPR_LEVELS:
      assert resampled[f"tpr_at_fpr_{level}"][row] == pytest.approx(tpr[fpr <= level].max(), abs=1e-12)


def test_errors_name_the_problem():
  scores, is_member, predicted = _random_case(6, n=50)
  with pytest.raises(AttackError, match="is_member: expected shape"):
    metrics.attack_metrics(scores, is_member[:-1], predicted)
  with pytest.raises(AttackError, match="members and non-members"):
    metrics.attack_metrics(scores, np.ones(50, bool), predicted)
  with pytest.raises(AttackError, match="scores: expected a finite"):
    metrics.attack_metrics(np.r_[scores[:-1], np.nan], is_member, predicted)
