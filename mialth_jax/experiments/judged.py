"""An attack chosen on the selection half of attack-test (experiments.verdict) as a report shows it: chosen by a metric
on the selection half, measured on the judged half only, so no number a section prints rests on the examples that
chose its attack."""
import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.experiments import verdict
from mialth_jax.utils import io


def selection_accuracy(arrays: dict) -> float:
  """The share of a result's examples whose `predicted` membership is right, on the selection half of its per-example
  arrays: what chooses the most accurate attack (verdict.selection_auc chooses by AUC), never what judges it."""
  if "predicted" not in arrays:
    return float("nan")  # a score-only attack decides nothing: never the most accurate
  chooses = ~verdict.judged_half(arrays["ids"])
  return float(np.mean(arrays["predicted"][chooses] == arrays["is_member"][chooses]))


JUDGED_KEEP = ("protocol", "attack", "source", "target", "size", "scores_path")


def on_judged_half(result: dict) -> dict:
  """An attack result (with its scores_path) as a section shows an attack chosen on the selection half: accuracy
  (Clopper-Pearson interval), ROC AUC (DeLong interval), TPR at 1 % and 0.1 % FPR and the member / non-member counts
  behind them, all measured on the judged half; the result's other metrics (measured on every example) are left out."""
  arrays = io.read_npz(result["scores_path"])
  judged = verdict.judged_half(arrays["ids"])
  scores, member = arrays["scores"][judged], arrays["is_member"][judged]
  auc, auc_ci = stats.delong_interval(scores, member)
  decided = {}
  if "predicted" in arrays:  # a score-only attack decides nothing, so it has no accuracy
    correct, n = int(np.sum(arrays["predicted"][judged] == member)), int(judged.sum())
    decided = {"accuracy": correct / n, "accuracy_ci": stats.clopper_pearson(correct, n)}
  return ({k: result[k] for k in JUDGED_KEEP if k in result} | decided |
          {"half": "judged", "roc_auc": auc, "roc_auc_ci": tuple(auc_ci), "num_members": int(member.sum()),
           "num_nonmembers": int((~member).sum())} |
          {f"tpr_at_fpr_{level}": stats.tpr_at_fpr(scores, member, level)["tpr"] for level in (0.01, 0.001)})
