"""Paired comparisons of two models (defences.Row) of the defences section, and a defence's test-accuracy cost."""
import numpy as np

from mialth_jax.attacks import compare
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.experiments import verdict
from mialth_jax.utils import io


class Comparisons:
  """Paired comparisons of two models' strongest attacks for one run, each computed once: the table, the verdicts and
  the claims ask for the same pairs."""

  def __init__(self, num_bootstrap: int, seed: int):
    self.num_bootstrap = num_bootstrap
    self.seed = seed
    self._done = {}

  def versus(self, base, other, metric: str = "roc_auc") -> compare.Difference | None:
    """`metric` of `other` minus `base`, paired over their common attack-test examples: ROC AUC of the verdict's
    attack for `other` on both, on the judged half with DeLong's interval and p-value (verdict.judged_difference;
    None where `base` has no result of it); attack accuracy of each one's most accurate adaptive attack (as the
    paper's "attack accuracy" means; chosen on the selection half, Row.most_accurate), paired bootstrap over the judged
    half."""
    if metric == "roc_auc":
      mine = base.result(other.attack["protocol"], other.attack["attack"])
      if mine is None:
        return None
      paths = (mine["scores_path"], other.attack["scores_path"])
    else:
      paths = (base.most_accurate["scores_path"], other.most_accurate["scores_path"])
    if (paths, metric) not in self._done:
      a, b = (io.read_npz(path) for path in paths)
      if not (np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["is_member"], b["is_member"])):
        raise AttackError(f"{paths[1]}: other attack-test examples than {paths[0]}")
      if metric == "roc_auc":
        self._done[(paths, metric)] = verdict.judged_difference(a, b)
      else:
        judged = verdict.judged_half(a["ids"])
        self._done[(paths, metric)] = compare.paired_difference(
            a["is_member"][judged], a["scores"][judged], a["predicted"][judged], b["scores"][judged],
            b["predicted"][judged], num_bootstrap=self.num_bootstrap, seed=self.seed)[metric]
    return self._done[(paths, metric)]


def accuracy_cost(base, other) -> tuple[float, tuple[float, float]]:
  """other - base test accuracy, with an unpaired 95 % normal interval."""
  p = base.test_accuracy
  q = other.test_accuracy
  half = 1.96 * np.sqrt(p * (1 - p) / base.num_test + q * (1 - q) / other.num_test)
  return q - p, (q - p - half, q - p + half)
