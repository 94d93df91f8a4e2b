"""Attack metrics with bootstrap confidence intervals, ROC computed in numpy so 1000 resamples take about a second.

The examples are sorted by score once. A bootstrap resample is then a vector of per-example counts (how often each
example was drawn), and every metric of the resample is a weighted cumulative sum over that fixed order: no per-resample
sort. Tied scores form one ROC step (as in sklearn.metrics.roc_curve), so the AUC counts a tie as half a win.

TPR at FPR <= level reads every point of the ROC curve. LiRA's reference code (Carlini et al. 2022) reads
sklearn's default curve, which drops collinear points (drop_intermediate=True); on tied scores that can drop the last
point under the level and report a lower TPR.
"""
import numpy as np

from mialth_jax.attacks.inputs import AttackError

FPR_LEVELS = (0.001, 0.01)
CI_METRICS = ("accuracy", "precision", "roc_auc", "advantage", *(f"tpr_at_fpr_{level}" for level in FPR_LEVELS))
_CHUNK_ELEMENTS = 2_000_000  # examples x resamples per vectorised chunk: bounds memory at ~100 MB


def _sort_by_score(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(order, group_end): descending-score order (stable) and where each run of tied scores ends in that order."""
  order = np.argsort(-scores, kind="stable")
  sorted_scores = scores[order]
  group_end = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
  return order, group_end


def _roc_counts(weights: np.ndarray, member: np.ndarray, group_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Weighted true / false positive counts [B, G + 1] at each distinct threshold, from (0, 0); inputs in score order."""
  tp = np.cumsum(weights * member, axis=1)[:, group_end]
  fp = np.cumsum(weights * ~member, axis=1)[:, group_end]
  zero = np.zeros((len(weights), 1), tp.dtype)
  return np.concatenate([zero, tp], axis=1), np.concatenate([zero, fp], axis=1)


def _rates(member: np.ndarray, group_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(fpr, tpr) at each distinct threshold, from (0, 0); inputs in score order."""
  tp, fp = _roc_counts(np.ones((1, len(member))), member, group_end)
  return fp[0] / fp[0, -1], tp[0] / tp[0, -1]


def roc_curve(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve(drop_intermediate=False)."""
  scores, is_member = np.asarray(scores, np.float64), np.asarray(is_member, bool)
  order, group_end = _sort_by_score(scores)
  return (*_rates(is_member[order], group_end), np.r_[np.inf, scores[order][group_end]])


def _decision_metrics(weights: np.ndarray, member: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
  """Accuracy and precision [B] of the attack's own decisions, for each row of example weights."""
  flagged = (weights * predicted).sum(axis=1)
  hits = (weights * (predicted & member)).sum(axis=1)
  return {"accuracy": (weights * (predicted == member)).sum(axis=1) / weights.sum(axis=1),
          "precision": np.where(flagged > 0, hits / np.maximum(flagged, 1), 0.0)}


def roc_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
  """Area under the ROC curve of `scores` as a member score, ties counted half (sklearn.metrics.roc_auc_score)."""
  fpr, tpr, _ = roc_curve(scores, is_member)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)


def _weighted_metrics(weights: np.ndarray, member: np.ndarray, predicted: np.ndarray | None,
                      group_end: np.ndarray) -> dict[str, np.ndarray]:
  """CI_METRICS [B] of each row of example weights (examples in score order); without `predicted` (a score-only
  attack, which has no decision rule) no accuracy or precision."""
  tp, fp = _roc_counts(weights, member, group_end)
  with np.errstate(invalid="ignore", divide="ignore"):  # a resample without members (or non-members) gives NaN
    tpr = tp / tp[:, -1:]
    fpr = fp / fp[:, -1:]
    undefined = np.where(np.isnan(fpr[:, -1]) | np.isnan(tpr[:, -1]), np.nan, 0.0)
    return {
        **({} if predicted is None else _decision_metrics(weights, member, predicted)),
        "roc_auc": (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1])).sum(axis=1) / 2,
        "advantage": (tpr - fpr).max(axis=1),
        **{f"tpr_at_fpr_{level}": np.where(fpr <= level, tpr, 0.0).max(axis=1) + undefined for level in FPR_LEVELS},
    }


def resample_weights(n: int, num_bootstrap: int, seed: int):
  """Yields bootstrap resamples of n examples as chunks of per-example draw counts [rows, n] (float64), seeded.

  A paired comparison applies each row to two models' scores on the same examples.
  """
  rng = np.random.default_rng(seed)
  chunk = max(1, _CHUNK_ELEMENTS // n)
  for start in range(0, num_bootstrap, chunk):
    rows = min(chunk, num_bootstrap - start)
    draws = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    yield np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def resampled_metrics(scores: np.ndarray, is_member: np.ndarray, predicted: np.ndarray | None,
                      weights: np.ndarray) -> dict[str, np.ndarray]:
  """CI_METRICS [B] of each row of example weights [B, N] (examples in their given order); NaN where a resample
  lacks members or non-members."""
  scores, is_member, predicted = _check(scores, is_member, predicted, None)
  order, group_end = _sort_by_score(scores)
  return _weighted_metrics(weights[:, order], is_member[order], None if predicted is None else predicted[order],
                           group_end)


def _bootstrap(member: np.ndarray, predicted: np.ndarray, group_end: np.ndarray, num_bootstrap: int,
               seed: int) -> dict[str, list[float]]:
  """95 % percentile intervals of CI_METRICS over `num_bootstrap` resamples with replacement."""
  values = {}
  for weights in resample_weights(len(member), num_bootstrap, seed):
    for name, value in _weighted_metrics(weights, member, predicted, group_end).items():
      values.setdefault(name, []).append(value)
  return {f"{name}_ci": np.nanpercentile(np.concatenate(v), [2.5, 97.5]).tolist() for name, v in values.items()}


def _check(scores, is_member, predicted, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Float scores, bool is_member and predicted, all of one length N, with members and non-members present."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1 or not np.isfinite(scores).all():
    raise AttackError(f"scores: expected a finite 1-D array, got shape {scores.shape}")
  arrays = {"is_member": is_member, "predicted": predicted, "classes": classes}
  for name, array in arrays.items():
    if array is not None and np.shape(array) != scores.shape:
      raise AttackError(f"{name}: expected shape {scores.shape} like scores, got {np.shape(array)}")
  is_member = np.asarray(is_member, bool)
  if is_member.all() or not is_member.any():
    raise AttackError(f"metrics need members and non-members; got {int(is_member.sum())} members of {len(scores)}")
  return scores, is_member, None if predicted is None else np.asarray(predicted, bool)


def attack_metrics(scores: np.ndarray, is_member: np.ndarray, predicted: np.ndarray | None,
                   classes: np.ndarray | None = None, num_bootstrap: int = 1000, seed: int = 0) -> dict:
  """Accuracy, precision, recall, F1, AUC, advantage, TPR at low FPR, bootstrap CIs and per-class accuracy.

  Scores rank (higher = more likely a member); `predicted` is the attack's own decision, None for a score-only attack
  (no decision rule: no accuracy, precision, recall, F1 or per-class accuracy). Values are Python floats / ints /
  lists; per_class_accuracy keys are class ids as strings, so the dict equals its JSON round trip.
  """
  scores, is_member, predicted = _check(scores, is_member, predicted, classes)
  order, group_end = _sort_by_score(scores)
  member = is_member[order]
  decided = None if predicted is None else predicted[order]
  point = {k: float(v[0]) for k, v in _weighted_metrics(np.ones((1, len(scores))), member, decided, group_end).items()}
  result = dict(point, num_members=int(is_member.sum()), num_nonmembers=int((~is_member).sum()))
  if predicted is not None:
    recall = float((predicted & is_member).sum() / is_member.sum())
    precision = point["precision"]
    result.update(recall=recall, f1=2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
  if num_bootstrap > 0:
    result.update(_bootstrap(member, decided, group_end, num_bootstrap, seed))
  if classes is not None and predicted is not None:
    classes = np.asarray(classes)
    result["per_class_accuracy"] = {
        str(c): float((predicted == is_member)[classes == c].mean()) for c in np.unique(classes).tolist()}
  return result
