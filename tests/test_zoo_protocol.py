"""LiRA and RMIA on a real zoo, end to end on digits: results for dense and its ticket, LiRA's scores recomputed
directly from the saved zoo arrays, scores independent of batch size and device count, no signal between two sets of
non-members."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import special, stats

from mialth_jax import config_lib
from mialth_jax.attacks import metrics, registry
from mialth_jax.experiments import launch, paper, targets, zoo as zoo_protocol, zoo_targets
from mialth_jax.lottery import pipeline, zoo, zoo_pipeline
from mialth_jax.utils import checkpoint, io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def zoo_config():
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = -1  # every train image: the zoo models train on random halves of all 1,797 digits
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 48, -1.0, 40
  config.train.weight_decay, config.train.log_every_steps = 0.0, 20
  config.lottery.sparsities = (0.8,)
  paper.strong_attacks(config, None)
  config.attacks.models = {k: config.attacks.models[k] for k in ("loss", "lira", "lira_offline", "rmia")}
  config.attacks.sizes = (400,)
  config.attacks.num_bootstrap = 200
  config.zoo.num_models = 8
  config.zoo.reference_counts = (2, 4)
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("zoo_run"))
  config = zoo_config()
  return workdir, config, launch.run(config, workdir)


def test_every_model_gets_zoo_results_and_the_zoo_is_on_disk(run):
  workdir, _, results = run
  zoo_results = {(r["target"], r["attack"]) for r in results if r["protocol"] == "zoo"}
  assert zoo_results == {(m, a) for m in ("dense", "ticket_s80") for a in ("lira", "lira_offline", "rmia")}
  assert not [r for r in results if r["protocol"] == "paper" and r["attack"] in ("lira", "rmia")]
  keep = np.load(os.path.join(workdir, "shadows", "keep.npy"))
  logits = np.load(os.path.join(workdir, "shadows", "ticket_s80", "logits.npy"))
  assert keep.shape == (8, 1797) and logits.shape == (8, 1797, 2, 10)
  for r in results:
    assert 0 <= r["roc_auc"] <= 1 and r["num_members"] == r["num_nonmembers"] == 100
  rmia = next(r for r in results if r["protocol"] == "zoo" and r["attack"] == "rmia")
  assert "accuracy" not in rmia and "precision" not in rmia  # score-only: no decision rule, no such rows


def test_every_zoo_model_and_the_run_model_are_targets(run):
  """Leave-one-out results for every zoo kind and reference attack; the run's model, scored with every zoo model as a
  reference, equals a direct fit and score of its own logits on the pool; the curve against the reference count."""
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  reference = zoo_protocol.reference_outputs(ctx, "ticket_s80")
  for kind in ("dense", "ticket_s80"):
    for attack in ("lira", "lira_offline", "rmia"):
      found = zoo_targets.read(ctx.layout, kind, attack)
      assert list(found.names) == [f"zoo_{s}" for s in range(8)] + ["target"]
      assert np.array_equal(found.member[:8], np.load(ctx.layout.zoo("keep.npy")))
  own = targets.model_target(ctx, "ticket_s80").query_logits(reference.ids, ("identity", "flip"))
  member = np.isin(reference.ids, ctx.splits.members)
  direct, _ = zoo_targets.score_target(config.attacks.models["lira"].to_dict(), reference, own, member, exclude=None)
  np.testing.assert_array_equal(zoo_targets.read(ctx.layout, "ticket_s80", "lira").scores[-1], direct)
  curve = io.read_json(ctx.layout.path("attacks", "zoo_targets", "dense", "by_reference_count.json"))
  assert curve["counts"] == [2, 4] and set(curve["attacks"]) == {"lira", "lira_offline", "rmia"}


def _phi(logits, labels):
  """log p_y - log(1 - p_y), written out independently of the package."""
  log_probs = logits - special.logsumexp(logits, axis=-1, keepdims=True)
  index = labels.reshape(labels.shape + (1,) * (logits.ndim - labels.ndim))
  log_p = np.take_along_axis(log_probs, np.broadcast_to(index, logits.shape[:-1] + (1,)), axis=-1)[..., 0]
  others = np.where(np.arange(logits.shape[-1]) == index, -np.inf, log_probs)
  return log_p - special.logsumexp(others, axis=-1)


def test_lira_scores_equal_a_direct_computation_from_the_saved_arrays(run):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  saved = io.read_npz(ctx.layout.result(400, "zoo", "dense", "dense", "lira")[1])
  ids, scores = saved["ids"][::37], saved["scores"][::37]
  keep = np.load(ctx.layout.zoo("keep.npy"))[:, ids]
  zoo_logits = np.load(ctx.layout.zoo("dense", "logits.npy"))[:, ids]             # [S, M, A, C]
  labels = saved["classes"][::37]
  target_phi = _phi(targets.model_target(ctx, "dense").query_logits(ids, ("identity", "flip")), labels)  # [M, A]
  zoo_phi = _phi(zoo_logits, np.broadcast_to(labels, keep.shape))                # [S, M, A]
  for i in range(len(ids)):
    per_query = []
    for q in range(2):
      inside, outside = zoo_phi[keep[:, i], i, q], zoo_phi[~keep[:, i], i, q]
      per_query.append(stats.norm.logpdf(target_phi[i, q], np.median(inside), inside.std() + 1e-30)
                       - stats.norm.logpdf(target_phi[i, q], np.median(outside), outside.std() + 1e-30))
    assert scores[i] == pytest.approx(np.mean(per_query), rel=1e-6, abs=1e-6)


def test_zoo_logits_do_not_depend_on_batch_size_or_device_count(run, tmp_path):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  saved = np.load(ctx.layout.zoo("dense", "logits.npy"))  # computed on 8 devices, batch 512
  variables = checkpoint.restore(ctx.layout.zoo("dense", "final"), zoo_pipeline._abstract_zoo(ctx, 8))
  images = ctx.dataset.x_test[:50]
  small = zoo.zoo_logits(ctx.model, variables, images, ctx.data.mean, ctx.data.std, ctx.mesh, ("identity", "flip"), 7)
  ids = len(ctx.dataset.y_train) + np.arange(50)
  np.testing.assert_allclose(small, saved[:, ids], rtol=1e-5, atol=1e-5)
  script = ("import sys, jax, numpy as np; from mialth_jax.experiments import targets; "
            "from mialth_jax.lottery import zoo, zoo_pipeline; from mialth_jax.utils import checkpoint; "
            "ctx = targets.open_run(sys.argv[1], 'test'); "
            "v = checkpoint.restore(ctx.layout.zoo('dense', 'final'), zoo_pipeline._abstract_zoo(ctx, 8)); "
            "np.save(sys.argv[2], zoo.zoo_logits(ctx.model, v, ctx.dataset.x_test[:50], ctx.data.mean, "
            "ctx.data.std, ctx.mesh, ('identity', 'flip'))); print(jax.device_count())")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  one = subprocess.run([sys.executable, "-c", script, workdir, str(tmp_path / "one.npy")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert one.returncode == 0 and one.stdout.strip() == "1", one.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "one.npy"), saved[:, ids], rtol=1e-5, atol=1e-5)


def test_lira_finds_no_signal_between_two_sets_of_non_members(run):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  n_train = len(ctx.dataset.y_train)
  rng = np.random.default_rng(0)
  ids = n_train + rng.permutation(ctx.splits.test)[:600]  # two random sets of 300 test images: both non-members
  reference = zoo_protocol.reference_outputs(ctx, "dense")
  attack = registry.make_attack({"type": "lira"}).fit_reference(reference)
  target = targets.model_target(ctx, "dense")
  scores = attack.score_examples(target.query_logits(ids, ("identity", "flip")), reference.labels[reference.rows(ids)],
                                 reference.rows(ids))
  fake_member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
  result = metrics.attack_metrics(scores, fake_member, scores > 0, reference.labels[reference.rows(ids)],
                                  num_bootstrap=300, seed=0)
  low, high = result["roc_auc_ci"]
  assert low <= 0.5 <= high, result["roc_auc_ci"]
  assert jax.device_count() == 8
