"""Leakage along training (experiments.fit_curves): a digits zoo of dense, an 80 % ticket and its random-prune control
kept every epoch; each curve point equals a direct attack on that checkpoint loaded alone, the fit numbers equal a
direct computation, and matched-fit differences recover a known offset on synthetic curves."""
import os

import jax
import numpy as np
import pytest
from scipy import special, stats as scipy_stats
from sklearn import metrics as sk_metrics

from mialth_jax import config_lib, errors, inference, layout as layout_lib
from mialth_jax.attacks import reference as reference_lib
from mialth_jax.data.examples import ExampleSource
from mialth_jax.data import augment
from mialth_jax.experiments import fit_curves, launch, paper, zoo as zoo_protocol, zoo_targets
from mialth_jax.lottery import masks, pipeline, zoo, zoo_pipeline
from mialth_jax.report import collect, fit_curve_figures, fit_curves as report_fit, sections
from mialth_jax.utils import checkpoint, io

slow = pytest.mark.slow  # the digits zoo run: about 2 minutes on 2 cores


def curve_config():
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = -1
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 48, -1.0, 40
  config.train.weight_decay, config.train.log_every_steps = 0.0, 20
  paper.sparsity_vs_fit(config, None)
  config.lottery.sparsities = (0.8,)
  config.zoo.num_models = 6
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fit_run"))
  config = curve_config()
  launch.run(config, workdir)
  return workdir, config


@slow
def test_every_zoo_kind_has_a_curve_at_every_epoch_and_the_end(run):
  workdir, _ = run
  curves = fit_curves.read_all(layout_lib.RunLayout(workdir))
  assert set(curves) == {"dense", "ticket_s80", "random_prune_s80"}
  for curve in curves.values():
    assert curve["steps"] == [18, 36, 40] and curve["names"] == [f"zoo_{s}" for s in range(6)] + ["target"]
    for name in fit_curves.FIT + fit_curves.LEAKAGE:
      assert np.shape(curve["metrics"][name]) == (3, 7)


def _alone(ctx, kind: str, step: int, s: int) -> np.ndarray:
  """Zoo model s of `kind` at `step`, loaded alone from the curve's checkpoint: its logits [N, A, C] on the pool,
  through the single-model inference path (not the zoo's)."""
  stacked = checkpoint.restore(zoo_pipeline.curve_point(ctx.layout, kind, step)[0],
                               zoo_pipeline._abstract_zoo(ctx, ctx.config.zoo.num_models))
  variables = zoo.unstack(stacked, s)
  source = ExampleSource(ctx.dataset)
  images = source[np.arange(len(source))]
  logits_fn = inference.make_logits_fn(ctx.model, ctx.data.mean, ctx.data.std, ctx.mesh)
  return np.stack([inference.predict_logits(logits_fn, variables, augment.QUERIES[q](images), np.arange(len(images)),
                                            97, ctx.mesh) for q in ctx.config.zoo.curve_queries], axis=1)


@slow
def test_a_curve_point_equals_a_direct_attack_on_that_checkpoint_loaded_alone(run):
  workdir, config = run
  ctx = pipeline.setup(config, workdir)
  base = zoo_protocol.reference_outputs(ctx, "ticket_s80")
  curve = io.read_json(fit_curves.path(ctx.layout, "ticket_s80"))
  step, s, point = 18, 4, 0
  at_step = io.read_npy(zoo_pipeline.curve_point(ctx.layout, "ticket_s80", step)[1])
  own = _alone(ctx, "ticket_s80", step, s)
  np.testing.assert_allclose(own, at_step[s], rtol=1e-5, atol=1e-5)
  others = reference_lib.ReferenceOutputs(base.ids, base.labels, at_step, base.keep)
  scores, _ = zoo_targets.score_target(config.attacks.models["lira_fixed_var"].to_dict(), others, own, base.keep[s],
                                       exclude=s)
  kept = ~np.isnan(scores)
  member = base.keep[s][kept]
  assert curve["metrics"]["roc_auc"][point][s] == pytest.approx(sk_metrics.roc_auc_score(member, scores[kept]),
                                                                abs=1e-6)
  identity = np.asarray(own[:, 0], np.float64)
  per_example = special.logsumexp(identity, axis=1) - identity[np.arange(len(base.labels)), base.labels]
  assert curve["metrics"]["loss_roc_auc"][point][s] == pytest.approx(
      sk_metrics.roc_auc_score(member, -per_example[kept]), abs=1e-6)
  train, held = base.keep[s], ~base.keep[s]
  predicted = identity.argmax(1)
  assert curve["metrics"]["train_accuracy"][point][s] == pytest.approx(
      sk_metrics.accuracy_score(base.labels[train], predicted[train]), abs=1e-6)
  assert curve["metrics"]["heldout_accuracy"][point][s] == pytest.approx(
      sk_metrics.accuracy_score(base.labels[held], predicted[held]), abs=1e-6)
  assert curve["metrics"]["train_loss"][point][s] == pytest.approx(per_example[train].mean(), rel=1e-5)
  # the last point: the final logits under the curve's queries only (identity), like every other point
  final = reference_lib.ReferenceOutputs(base.ids, base.labels, base.logits[:, :, :1], base.keep)
  scores, _ = zoo_targets.score_target(config.attacks.models["lira_fixed_var"].to_dict(), final, final.logits[s],
                                       base.keep[s], exclude=s)
  kept = ~np.isnan(scores)
  assert curve["metrics"]["roc_auc"][-1][s] == pytest.approx(
      sk_metrics.roc_auc_score(base.keep[s][kept], scores[kept]), abs=1e-6)


@slow
def test_the_runs_model_is_kept_every_epoch_and_joins_the_curve_as_one_more_target(run):
  workdir, config = run
  ctx = pipeline.setup(config, workdir)
  assert sorted(os.listdir(ctx.layout.kept("ticket_s80"))) == ["18", "36"]  # the last step is final/
  curve = io.read_json(fit_curves.path(ctx.layout, "ticket_s80"))
  base = zoo_protocol.reference_outputs(ctx, "ticket_s80")
  variables = ctx.restore_variables(ctx.layout.kept("ticket_s80", 36))
  source = ExampleSource(ctx.dataset)
  images = source[np.arange(len(source))]
  logits_fn = inference.make_logits_fn(ctx.model, ctx.data.mean, ctx.data.std, ctx.mesh)
  own = np.stack([inference.predict_logits(logits_fn, variables, augment.QUERIES[q](images), np.arange(len(images)),
                                           97, ctx.mesh) for q in config.zoo.curve_queries], axis=1)
  member = np.isin(np.arange(len(source)), ctx.splits.members)
  at_step = io.read_npy(zoo_pipeline.curve_point(ctx.layout, "ticket_s80", 36)[1])
  zoo_at_step = reference_lib.ReferenceOutputs(base.ids, base.labels, at_step, base.keep)
  scores, _ = zoo_targets.score_target(config.attacks.models["lira_fixed_var"].to_dict(), zoo_at_step, own, member,
                                       exclude=None)
  kept = ~np.isnan(scores)
  assert curve["metrics"]["roc_auc"][1][-1] == pytest.approx(sk_metrics.roc_auc_score(member[kept], scores[kept]),
                                                             abs=1e-6)
  predicted = own[:, 0].argmax(1)
  assert curve["metrics"]["heldout_accuracy"][1][-1] == pytest.approx(
      sk_metrics.accuracy_score(base.labels[~member], predicted[~member]), abs=1e-6)


@slow
def test_the_random_prune_zoo_draws_its_own_positions_per_model_at_the_ticket_sparsity(run):
  workdir, config = run
  ctx = pipeline.setup(config, workdir)
  abstract = jax_tree_abstract(ctx)
  stacked = {kind: checkpoint.restore(ctx.layout.zoo(kind, "mask"), abstract) for kind in ("ticket_s80",
                                                                                         "random_prune_s80")}
  for kind, tree in stacked.items():
    for s in range(config.zoo.num_models):
      assert masks.sparsity_report(zoo.unstack(tree, s))["sparsity"] == pytest.approx(0.8, abs=1e-3), kind
  first, second = (np.concatenate([np.ravel(x) for x in _leaves(zoo.unstack(stacked["random_prune_s80"], s))])
                   for s in (0, 1))
  assert (first != second).mean() > 0.1  # independent random masks at 80 %: about 32 % of positions differ


def jax_tree_abstract(ctx):
  mask = ctx.dense_mask()
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct((ctx.config.zoo.num_models, *np.shape(x)), np.asarray(x).dtype,
                                                     sharding=ctx.replicated), mask)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_curve_attack_that_is_not_configured_is_refused():
  config = curve_config()
  config.zoo.curve_attack = "lira_offline"
  with pytest.raises(errors.ConfigError, match="zoo.curve_attack='lira_offline'"):
    config_lib.validate(config)


def _synthetic_pairs(offset: float, pairs: int, seed: int):
  """Dense and ticket curves of `pairs` pairs: leakage = g(train loss) + a pair effect, the ticket's shifted by
  `offset` plus noise, each curve on its own range of train losses (12 checkpoints)."""
  rng = np.random.default_rng(seed)

  def g(x):
    return 0.5 + 0.3 * np.exp(-2 * x)

  curves = {"dense": [], "ticket": []}
  for _ in range(pairs):
    pair_effect = rng.normal(0, 0.01)
    for kind, shift in (("dense", 0.0), ("ticket", offset + rng.normal(0, 0.01))):
      x = np.sort(rng.uniform(0.0, 0.4, 2)).tolist()
      losses = np.linspace(2.0 - x[0], 0.1 + x[1], 12)
      curves[kind].append((losses, g(losses) + pair_effect + shift))
  def as_curve(kind):
    return {"kind": kind, "names": [f"zoo_{s}" for s in range(pairs)],
            "metrics": {"train_loss": np.array([c[0] for c in curves[kind]]).T.tolist(),
                        "roc_auc": np.array([c[1] for c in curves[kind]]).T.tolist()}}
  return as_curve("dense"), as_curve("ticket")


def test_matched_fit_recovers_a_known_vertical_offset_with_an_interval_that_covers_it():
  covered = 0
  for seed in range(40):
    dense, ticket = _synthetic_pairs(0.03, 10, seed)
    found = fit_curves.compare(dense, ticket, "train_loss", "roc_auc")
    assert found["pairs"] == 10 and abs(found["mean_difference"] - 0.03) < 0.02
    covered += found["ci"][0] <= 0.03 <= found["ci"][1]
  # a 95 % interval: the count of covering seeds is Binomial(40, 0.95); below 33 has probability < 0.2 %
  assert covered >= 33
  assert scipy_stats.binom.cdf(32, 40, 0.95) < 0.002


def test_no_offset_gives_an_interval_around_zero():
  dense, ticket = _synthetic_pairs(0.0, 10, 7)
  found = fit_curves.compare(dense, ticket, "train_loss", "roc_auc")
  assert found["ci"][0] < 0 < found["ci"][1]


def test_matched_difference_is_the_mean_gap_at_the_kept_points_in_the_common_range_and_nan_without_one():
  x_a, x_b = np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5, 3.0])
  assert fit_curves.matched_difference(x_a, 2 * x_a, x_b, 2 * x_b + 0.25) == pytest.approx(0.25)
  # y_b - y_a = x at the points 0.5, 1, 1.5, 2 of either curve inside [0.5, 2]: mean 1.25
  assert fit_curves.matched_difference(x_a, np.zeros(3), x_b, x_b) == pytest.approx(1.25)
  # a point of b at 1.6 joins: (0.5 + 1 + 1.5 + 1.6 + 2) / 5
  x_c = np.array([0.5, 1.5, 1.6, 3.0])
  assert fit_curves.matched_difference(x_a, np.zeros(3), x_c, x_c) == pytest.approx(6.6 / 5)
  assert np.isnan(fit_curves.matched_difference(x_a, x_a, x_a + 5, x_a))


def test_kinds_sort_by_family_then_sparsity_each_family_with_its_own_marker():
  """Every pruning method's tickets (in lottery.method's registration order), then the random-prune and narrow
  controls and other runs' kinds; a family is read from the curve (the zoo's recipe), not from the name."""
  family_of = {"ticket_s80": "ticket", "ticket_s50": "ticket", "imp_r1": "imp", "snip_s50": "snip",
               "grasp_s80": "grasp", "synflow_s50": "synflow", "channel_s50": "channel", "nm2of4_s50": "nm",
               "random_prune_s50": "random_prune", "narrow_s80": "narrow", "dense@wd": "other"}
  sparsity = {"ticket_s80": 0.8, "imp_r1": 0.2, "grasp_s80": 0.8, "narrow_s80": 0.8, "dense@wd": 0.0}
  curves = {k: {"family": f, "sparsity": sparsity.get(k, 0.5)} for k, f in reversed(family_of.items())}
  assert [k for k, _ in sorted(curves.items(), key=report_fit.order)] == [
      "ticket_s50", "ticket_s80", "imp_r1", "snip_s50", "grasp_s80", "synflow_s50", "channel_s50", "nm2of4_s50",
      "random_prune_s50", "narrow_s80", "dense@wd"]
  markers = {c["family"]: fit_curve_figures._style(0, k, c)[1] for k, c in curves.items()}
  assert len(set(markers.values())) == len(markers) == 10
  assert {f: markers[f] for f in ("ticket", "random_prune", "narrow", "other")} == fit_curve_figures.MARKERS


def test_the_pareto_frontier_equals_a_direct_check_of_every_point():
  rng = np.random.default_rng(3)
  accuracy, leakage = rng.uniform(0.5, 0.9, 60), rng.uniform(0.5, 0.8, 60)
  dominated = [any((accuracy[j] >= accuracy[i]) and (leakage[j] <= leakage[i]) and
                   (accuracy[j] > accuracy[i] or leakage[j] < leakage[i]) for j in range(60)) for i in range(60)]
  assert sorted(fit_curve_figures.pareto(accuracy, leakage)) == [i for i in range(60) if not dominated[i]]


@slow
def test_the_report_section_gives_each_kind_minus_dense_at_matched_fit(run, tmp_path):
  workdir, _ = run
  runs = [collect.load_run(workdir)]
  text = report_fit.section(runs, sections.Output.for_report(str(tmp_path), "r.md"))
  curves = fit_curves.read_all(layout_lib.RunLayout(workdir))
  expected = fit_curves.compare(curves["dense"], curves["ticket_s80"], "train_loss", "roc_auc")
  row = next(line for line in text.splitlines() if line.startswith("| ticket_s80 |") and "[" in line)  # matched fit
  assert f"{expected['mean_difference']:+.3f} [{expected['ci'][0]:+.3f}, {expected['ci'][1]:+.3f}]" in row
  last = next(line for line in text.splitlines() if line.startswith("| ticket_s80 |") and "[" not in line)
  assert last.split(" | ")[1] == f"{np.mean(curves['ticket_s80']['metrics']['train_loss'][-1]):.3f}"
  assert "TPR @ 1 % FPR" not in text  # digits: about 450 scored non-members per target, 1,000 needed at 1 %
  assert "TPR at 1% FPR is not compared" in text
  assert os.path.exists(tmp_path / "r_plots" / f"frontier_{runs[0].label}.png")
