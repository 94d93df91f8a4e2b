"""Who pruning exposes (experiments.exposure): Feldman-Zhang memorisation, pruning-identified exemplars and the TPR at
low FPR of classes and groups of examples, from the zoo's logits and leave-one-out scores.

- memorisation (Feldman & Zhang 2020) of example n under a kind: the share of its IN models that classify it
  correctly minus the share of its OUT models that do (identity query).
- pruning-identified exemplars (Hooker et al. 2019): examples whose modal prediction over the zoo models of a pruned
  kind differs from the modal prediction over the dense zoo models (the mode's ties go to the lower class).
- group TPR at FPR f: over the zoo models, the share of a group's IN (model, example) pairs caught at f (thresholds as
  in experiments.exposure); its Clopper-Pearson interval pools the pairs, and kind - dense is compared over the
  model pairs (paired t over models; the report Holm-adjusts over every comparison). Groups: each class; rare and
  frequent classes (a class is rare when its pool count is below `rare_ratio` times the median class count);
  atypical and typical examples (dense memorisation >= `atypical` or below, each model's grouping measured on the
  other S - 1 dense models, so no model is grouped by its own predictions).
"""
import numpy as np

from mialth_jax.attacks import stats
from mialth_jax.experiments import exposure


def predictions(logits: np.ndarray) -> np.ndarray:
  """int [S, N]: each zoo model's predicted class (logits [S, N, C], one query)."""
  return np.asarray(logits).argmax(-1)


def memorisation(right: np.ndarray, member: np.ndarray) -> np.ndarray:
  """[N]: accuracy over the IN models minus accuracy over the OUT models (right, member: bool [S, N]); NaN where a
  side is empty."""
  with np.errstate(invalid="ignore", divide="ignore"):
    return (right & member).sum(0) / member.sum(0) - (right & ~member).sum(0) / (~member).sum(0)


def memorisation_without_each(right: np.ndarray, member: np.ndarray) -> np.ndarray:
  """[S, N]: row s is the memorisation measured on every zoo model but s."""
  hits_in, hits_out = (right & member).sum(0), (right & ~member).sum(0)
  count_in, count_out = member.sum(0), (~member).sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return ((hits_in - (right & member)) / (count_in - member) -
            (hits_out - (right & ~member)) / (count_out - ~member))


def modal_prediction(predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """int [N]: the class predicted by most zoo models (predicted: int [S, N]), ties to the lower class."""
  counts = np.stack([(predicted == c).sum(0) for c in range(num_classes)], axis=-1)
  return counts.argmax(-1)


def exemplars(dense_predicted: np.ndarray, pruned_predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """bool [N]: pruning-identified exemplars, where the two zoos' modal predictions differ."""
  return modal_prediction(dense_predicted, num_classes) != modal_prediction(pruned_predicted, num_classes)


def groups(labels: np.ndarray, dense_memorisation_without: np.ndarray, rare_ratio: float,
           atypical: float) -> dict[str, np.ndarray]:
  """{group name: bool [N] or [S, N]}: each class, the rare and frequent classes (when some class is rare), and the
  atypical and typical examples per model (dense_memorisation_without: [S, N], memorisation_without_each)."""
  classes, counts = np.unique(labels, return_counts=True)
  found = {f"class {c}": labels == c for c in classes}
  rare = classes[counts < rare_ratio * np.median(counts)]
  if len(rare):
    found["rare classes"], found["frequent classes"] = np.isin(labels, rare), ~np.isin(labels, rare)
  measured = np.isfinite(dense_memorisation_without)
  found["atypical"] = measured & (dense_memorisation_without >= atypical)
  found["typical"] = measured & (dense_memorisation_without < atypical)
  return found


def group_tpr(hit: np.ndarray, member: np.ndarray, group: np.ndarray) -> dict:
  """TPR of one group: `pooled` (hits over IN pairs, with its Clopper-Pearson interval) and `per_model` [S] (NaN for
  a model with no IN example in the group)."""
  inside = member & np.broadcast_to(group, member.shape)
  hits, totals = (hit & inside).sum(1), inside.sum(1)
  k, n = int(hits.sum()), int(totals.sum())
  with np.errstate(invalid="ignore", divide="ignore"):
    per_model = hits / totals
  return {"tpr": k / n if n else float("nan"), "ci": stats.clopper_pearson(k, n) if n else (float("nan"),) * 2,
          "hits": k, "pairs": n, "per_model": per_model}


def compare_groups(dense_hit: np.ndarray, pruned_hit: np.ndarray, member: np.ndarray, found_groups: dict) -> list:
  """[{group, dense, pruned, comparison}] per group: pooled TPRs and the paired comparison over models (None where
  fewer than two models have IN examples of the group), p-values unadjusted."""
  rows = []
  for name, group in found_groups.items():
    dense, pruned = group_tpr(dense_hit, member, group), group_tpr(pruned_hit, member, group)
    both = np.isfinite(dense["per_model"]) & np.isfinite(pruned["per_model"])
    comparison = (stats.paired_over_models(pruned["per_model"][both], dense["per_model"][both])
                  if both.sum() >= 2 else None)
    rows.append({"group": name, "dense": dense, "pruned": pruned, "comparison": comparison})
  return rows


def holm_adjust(rows: list) -> list:
  """The rows of every comparison of a report, each with `p_adjusted` (Holm over all of them; NaN where none)."""
  p = [r["comparison"]["p_value"] if r["comparison"] else float("nan") for r in rows]
  return [{**r, "p_adjusted": float(a)} for r, a in zip(rows, stats.holm(p))]


def relation(change: np.ndarray, memorised: np.ndarray, exemplar: np.ndarray) -> dict:
  """How the change in exposure relates to dense memorisation (Spearman's rho with its interval) and to being a
  pruning-identified exemplar (mean change of exemplars minus the others, Welch interval over examples)."""
  kept = np.isfinite(change)
  difference = exposure.welch(change[kept, None], exemplar[kept, None], ~exemplar[kept, None])
  return {"memorisation": exposure.spearman(change, memorised),
          "exemplars": {k: float(v[0]) for k, v in difference.items() if k in ("difference", "low", "high")} |
          {"exemplars": int(exemplar[kept].sum()), "others": int((~exemplar[kept]).sum())}}
