"""Leakage along training: every zoo model attacked at each step where the zoo kept it (zoo.curve_every_epochs), next
to how well it fits there, so that leakage is a curve against fit, not one point after a fixed number of epochs.

At each kept step of each zoo kind, every zoo model s is a target: the curve's attack (zoo.curve_attack, a reference
attack such as LiRA) calibrated on the other S - 1 models of its kind at the same step scores it on the pool (less
RMIA's population, as in `zoo_targets`), and the loss threshold scores it by -loss. Its fit at that step is read from
the same pool logits (the identity query): train loss and accuracy on its members (keep[s]), held-out loss and
accuracy on the pool examples it did not train on (its own test set: the pool holds the dataset's test images too).

  attacks/fit_curves/<kind>.json   {"kind", "attack", "steps" [P], "names" [T], "metrics": {name: [P][T]},
                                    "scored_nonmembers": the fewest non-members a zoo target is scored on}

The run's own model of the kind joins as one more target (named zoo_targets.TARGET, calibrated on all S zoo models)
where it was kept at the same steps (train.keep_every_epochs equal to zoo.curve_every_epochs).

The effect of sparsity at equal fit (`matched_difference`, `compare`): for pair s (zoo ticket s and the dense model
it was pruned from, trained on the same examples) the vertical distance between the two curves of a leakage metric
against a fit metric, at every kept point of either curve inside the range of fit both cover (so the comparison
weighs the fit levels where the models were observed, most of them late in training; train loss, which spans orders
of magnitude, is matched on its logarithm); its mean over the pairs with a Student-t interval over pairs
(`stats.paired_over_models`).
"""
import os

import numpy as np
from absl import logging

from mialth_jax import errors, layout as layout_lib
from mialth_jax.attacks import metrics, reference as reference_lib, stats
from mialth_jax.experiments import zoo_targets
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import zoo, zoo_pipeline
from mialth_jax.utils import checkpoint, hosts, io, numerics

FOLDER = ("attacks", "fit_curves")
FIT = ("train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy", "gap")
LEAKAGE = ("roc_auc", "tpr_at_fpr_0.01", "loss_roc_auc")
LEVEL = 0.01


def path(layout: layout_lib.RunLayout, kind: str) -> str:
  return layout.path(*FOLDER, f"{kind}.json")


def fit(logits: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
  """{FIT name: [S]} of logits [S, N, C] (one query) on pool examples with labels [N] and membership keep [S, N]:
  loss and accuracy on each model's members and on its held-out examples, and the gap train - held-out accuracy."""
  log_probs = numerics.log_softmax(np.asarray(logits, np.float64))
  loss = -np.take_along_axis(log_probs, np.asarray(labels)[None, :, None], axis=-1)[..., 0]
  correct = logits.argmax(-1) == labels
  found = {"train_loss": _mean(loss, keep), "train_accuracy": _mean(correct, keep),
           "heldout_loss": _mean(loss, ~keep), "heldout_accuracy": _mean(correct, ~keep)}
  return {**found, "gap": found["train_accuracy"] - found["heldout_accuracy"]}


def _mean(values: np.ndarray, where: np.ndarray) -> np.ndarray:
  return (values * where).sum(axis=1) / where.sum(axis=1)


def leakage(reference: reference_lib.ReferenceOutputs, logits: np.ndarray, member: np.ndarray, exclude: int | None,
            attack_config: dict, identity: int) -> dict[str, float]:
  """{LEAKAGE name: value} of one target (logits [N, A, C] on the pool, member [N]) attacked with the reference models
  but `exclude`, on its scored pool examples: the attack's AUC and TPR at 1 % FPR, and the loss threshold's AUC on
  the same examples."""
  scores, _ = zoo_targets.score_target(attack_config, reference, logits, member, exclude=exclude)
  kept = ~np.isnan(scores)
  log_p = reference_lib.true_class_log_prob(logits[kept, identity], reference.labels[kept])
  return {"roc_auc": metrics.roc_auc(scores[kept], member[kept]),
          "tpr_at_fpr_0.01": stats.tpr_at_fpr(scores[kept], member[kept], LEVEL)["tpr"],
          "loss_roc_auc": metrics.roc_auc(log_p, member[kept])}  # -loss = log p_y


def point(reference: reference_lib.ReferenceOutputs, attack_config: dict, identity: int,
          target: tuple[np.ndarray, np.ndarray] | None) -> dict[str, list[float]]:
  """{FIT and LEAKAGE name: one value per target} at one step: every zoo model attacked leave-one-out, then `target`
  (logits [N, A, C], member [N]: the run's model of the kind) with every zoo model as a reference."""
  targets = [(reference.logits[s], reference.keep[s], s) for s in range(reference.num_models)]
  targets += [(target[0], np.asarray(target[1], bool), None)] if target is not None else []
  found = {name: [] for name in FIT + LEAKAGE}
  for logits, member, exclude in targets:
    fitted = fit(logits[None, :, identity], reference.labels, member[None])
    for name, value in {**{k: float(v[0]) for k, v in fitted.items()},
                        **leakage(reference, logits, member, exclude, attack_config, identity)}.items():
      found[name].append(float(value))
  return found


def steps_of(summary: dict) -> list[int]:
  """The steps where a zoo kind was kept: its curve steps (none for a zoo trained before they existed), then its
  last."""
  return [*summary.get("curve_steps", []), summary["steps"]]


def kind_curve(layout: layout_lib.RunLayout, kind: str, base: reference_lib.ReferenceOutputs, attack_config: dict,
               queries: list[str], base_queries: list[str], target_at=None) -> dict:
  """The curve of one zoo kind (`base`: its pool, membership and final logits under `base_queries`): fit and leakage
  of every zoo model at every kept step and at the end, all under the curve's `queries` (the final logits sliced to
  them); `target_at(step)` gives the run's model of the kind there as (logits [N, A, C] under `queries`, member [N])
  (None: the zoo models only)."""
  summary = io.read_json(layout.zoo(kind, "summary.json"))
  if summary.get("curve_steps") and summary.get("curve_queries") != queries:
    raise errors.ConfigError(f"zoo.curve_queries={tuple(queries)}: the {kind} zoo kept its curve logits under "
                             f"{summary.get('curve_queries')}; move shadows/ away to train the zoo again")
  steps = steps_of(summary)
  identity = queries.index("identity")
  final = base.logits[:, :, [base_queries.index(q) for q in queries]]
  curve = {name: [] for name in FIT + LEAKAGE}
  for step in steps:
    logits = final if step == summary["steps"] else io.read_npy(zoo_pipeline.curve_point(layout, kind, step)[1])
    reference = reference_lib.ReferenceOutputs(base.ids, base.labels, logits, base.keep)
    for name, values in point(reference, attack_config, identity, target_at and target_at(step)).items():
      curve[name].append(values)
    logging.info("fit curves: %s at step %d done", kind, step)
  scored_nonmembers = (~base.keep & ~zoo_targets.population_half(base.ids)).sum(axis=1)
  names = [zoo_targets.zoo_name(s) for s in range(base.num_models)] + ([zoo_targets.TARGET] if target_at else [])
  return {"kind": kind, "sparsity": summary["sparsity"], "attack_config": dict(attack_config), "steps": steps,
          "names": names, "scored_nonmembers": int(scored_nonmembers.min()), "metrics": curve}


def _own_model(ctx, summary: dict, steps: list[int]):
  """target_at for the run's model of a zoo kind when it was kept at every curve step (train.keep_every_epochs),
  else None: its logits on the pool under zoo.curve_queries at a step, from its kept (or final) weights."""
  own = layout_lib.select(ctx.layout.summaries(), kind=summary["kind"], sparsity=summary["sparsity"])
  if not own:
    return None
  name = own[0]
  paths = {step: ctx.layout.kept(name, step) for step in steps[:-1]} | {steps[-1]: ctx.layout.final(name)}
  missing = [p for p in paths.values() if not checkpoint.exists(p)]
  if missing:
    logging.info("fit curves: %s was not kept at every curve step (%s missing; train.keep_every_epochs); the curve "
                 "holds the zoo models only", name, missing[0])
    return None
  source = ExampleSource(ctx.dataset)
  images = source[np.arange(len(source))]
  member = np.isin(np.arange(len(source)), ctx.splits.members)

  def target_at(step: int):
    variables = zoo.stack([ctx.restore_variables(paths[step])])
    logits = zoo.zoo_logits(ctx.model, variables, images, ctx.data.mean, ctx.data.std, ctx.mesh,
                            tuple(ctx.config.zoo.curve_queries), ctx.config.attacks.batch_size)[0]
    return logits, member
  return target_at


def record_all(ctx, zoo_summaries: dict, reference_of, attack_configs: dict) -> None:
  """attacks/fit_curves/<kind>.json of every zoo kind ({name: summary}; `reference_of(name)` its ReferenceOutputs)
  when zoo.curve_every_epochs asks for curves (finished ones are kept), with the run's model of the kind as one more
  target where it was kept at the same steps."""
  if not ctx.config.zoo.curve_every_epochs:
    return
  name = ctx.config.zoo.curve_attack
  for kind, summary in zoo_summaries.items():
    if os.path.exists(path(ctx.layout, kind)):
      continue
    if not summary.get("curve_steps") and ctx.total_steps > ctx.config.zoo.curve_every_epochs * ctx.steps_per_epoch:
      logging.warning("fit curves: the %s zoo was trained without zoo.curve_every_epochs; its curve has one point",
                      kind)
    target_at = _own_model(ctx, summary, steps_of(summary))
    queries = list(ctx.config.zoo.curve_queries)
    found = kind_curve(ctx.layout, kind, reference_of(kind), attack_configs[name], queries,
                       list(ctx.config.zoo.queries), target_at)
    curve = {"attack": name, "queries": queries, **found}
    hosts.on_process_zero(lambda c=curve, k=kind: io.write_json(path(ctx.layout, k), c))


def read_all(layout: layout_lib.RunLayout) -> dict[str, dict]:
  """{kind: curve} of a run's recorded fit curves."""
  root = layout.path(*FOLDER)
  names = sorted(os.listdir(root)) if os.path.isdir(root) else []
  return {n[:-len(".json")]: io.read_json(os.path.join(root, n)) for n in names if n.endswith(".json")}


def interpolate(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """y at `grid` along the curve (x, y), linearly between its points ordered by x (ties in x averaged)."""
  xs, inverse = np.unique(np.asarray(x, np.float64), return_inverse=True)
  ys = np.bincount(inverse, weights=np.asarray(y, np.float64)) / np.bincount(inverse)
  return np.interp(grid, xs, ys)


LOG_MATCHED = ("train_loss", "heldout_loss")  # fit metrics matched on their logarithm


def matched_difference(x_a, y_a, x_b, y_b) -> float:
  """Mean of y_b(x) - y_a(x) over the points of both curves whose x lies in the range both cover, each curve
  interpolated linearly between its points (NaN where the ranges do not overlap)."""
  low, high = max(np.min(x_a), np.min(x_b)), min(np.max(x_a), np.max(x_b))
  if not low < high:
    return float("nan")
  grid = np.unique(np.concatenate([x_a, x_b]))
  grid = grid[(grid >= low) & (grid <= high)]
  return float(np.mean(interpolate(x_b, y_b, grid) - interpolate(x_a, y_a, grid)))


def compare(base: dict, other: dict, x: str, y: str) -> dict:
  """`other` - `base` in leakage `y` at matched fit `x` over the model pairs (the targets of one name in both curves:
  zoo model s of each kind, and the run's models, trained on the same members), with the pairs whose curves overlap
  in x: stats.paired_over_models' keys, plus `pairs` (used) and `models` (pairs in all)."""
  names = [n for n in base["names"] if n in other["names"]]

  def columns(curve, metric):
    values = np.array(curve["metrics"][metric], np.float64)
    return values[:, [curve["names"].index(n) for n in names]].T
  xa, ya, xb, yb = columns(base, x), columns(base, y), columns(other, x), columns(other, y)
  if x in LOG_MATCHED:
    xa, xb = np.log(np.maximum(xa, 1e-12)), np.log(np.maximum(xb, 1e-12))
  differences = np.array([matched_difference(*pair) for pair in zip(xa, ya, xb, yb)])
  used = differences[np.isfinite(differences)]
  if len(used) < 2:
    return {"pairs": int(len(used)), "models": int(len(differences)), "mean_difference": float("nan")}
  return {**stats.paired_over_models(used, np.zeros_like(used)), "pairs": int(len(used)),
          "models": int(len(differences))}
