"""Toy attacks of the reference-model and target-query contracts, registered by the tests that use them
(test_attack_contracts.py on toy outputs, test_extension.py under the zoo and adversarial protocols of a real run)."""
import numpy as np

from mialth_jax.attacks import contracts
from mialth_jax.attacks.reference import fitted_pool, true_class_log_prob


class MeanRatio(contracts.ReferenceAttack):
  """log p_y of the target minus its mean over the reference models."""
  decision_threshold = 0.0

  def fit_reference(self, reference, exclude=None):
    self.mean_ = reference.true_class_log_prob[reference.models(exclude)].mean(axis=(0, 2))
    self.reference_ = reference
    return self

  def score_examples(self, target_logits, labels, pool_rows, population=None):
    logits, labels, rows = fitted_pool(self).check_queries(target_logits, labels, pool_rows)
    return true_class_log_prob(logits, labels).mean(axis=1) - self.mean_[rows]


class QueriedLoss(contracts.TargetQueryAttack):
  """Minus the loss the target gives (queried in batches), thresholded at the attack-train members' median."""

  def statistic(self, target, ids, batch_size=128):
    return np.concatenate([-target.outputs(ids[i:i + batch_size]).loss.astype(np.float64)
                           for i in range(0, len(ids), batch_size)])

  def fit(self, values, is_member):
    self.threshold_ = float(np.median(values[np.asarray(is_member, bool)]))
    return self

  def score(self, values):
    return np.asarray(values, np.float64)

  def predict(self, values):
    return self.score(values) >= self.threshold_
