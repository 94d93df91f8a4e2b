"""Attacks on real pipeline outputs: an overfitted model leaks, two non-member sets do not, protocols agree."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.attacks import inputs as inputs_lib, registry
from mialth_jax.experiments import attack_runs, launch, targets
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import pipeline
from mialth_jax.utils import checkpoint, io

ATTACKS = {"loss": {"type": "threshold_loss"}, "mlp": {"type": "optax_mlp"}}


def overfit_config():
  """150 digits members, 40 epochs, no weight decay: train accuracy 1.0, test loss far above train loss."""
  config = config_lib.base()
  config.model.width_multiplier = 0.125
  config.data.num_train = 150
  config.train.batch_size, config.train.num_epochs, config.train.weight_decay = 48, 40.0, 0.0
  config.train.eval_every_epochs = 40.0
  config.train.log_every_steps = 40
  config.lottery.sparsities = (0.8,)
  config.attacks.sizes = (280,)
  config.attacks.protocols = ("paper", "transfer", "shadow")
  config.attacks.nonmembers = "test+unused_train"
  config.attacks.models = ATTACKS
  config.attacks.num_bootstrap = 300
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("overfit"))
  config = overfit_config()
  results = launch.run(config, workdir)
  return workdir, config, results


def _result(results, protocol, source, target, attack):
  return next(r for r in results if (r["protocol"], r["source"], r["target"], r["attack"]) ==
              (protocol, source, target, attack))


def test_overfitted_model_is_attacked_well_above_chance(run):
  _, _, results = run
  r = _result(results, "paper", "dense", "dense", "loss")
  assert r["accuracy"] > 0.65 and r["accuracy_ci"][0] > 0.5, r
  assert r["roc_auc"] > 0.7


def test_two_non_member_sets_stay_at_chance(run):
  """The same attack, trained and tested on unused-train images labelled 'member' vs test images: no signal."""
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  rng = np.random.default_rng(0)
  fake_members = rng.permutation(ctx.splits.unused_train)[:600]
  nonmembers = rng.permutation(attack_runs.nonmember_pool(ctx)[attack_runs.nonmember_pool(ctx) >= 898])[:600]
  ids = np.concatenate([fake_members, nonmembers])
  label = np.r_[np.ones(600, bool), np.zeros(600, bool)]
  outputs = targets.model_target(ctx, "dense").outputs(ids)
  train = np.r_[np.arange(300), 600 + np.arange(300)]
  test = np.setdiff1d(np.arange(1200), train)
  for attack in ATTACKS.values():
    result, _ = registry.run_attack(attack, outputs.take(train), label[train], outputs.take(test), label[test],
                                    num_bootstrap=300)
    assert result["accuracy_ci"][0] <= 0.5 <= result["accuracy_ci"][1], (attack, result["accuracy_ci"])


def test_transfer_diagonal_equals_the_paper_protocol(run):
  _, _, results = run
  for model in ("dense", "ticket_s80"):
    for attack in ATTACKS:
      paper, transfer = (_result(results, p, model, model, attack) for p in ("paper", "transfer"))
      for key in ("accuracy", "precision", "roc_auc", "advantage", "tpr_at_fpr_0.01"):
        assert paper[key] == transfer[key], (model, attack, key)
  assert len([r for r in results if r["protocol"] == "transfer"]) == 2 * 2 * len(ATTACKS)


def test_shadow_models_are_trained_on_data_disjoint_from_the_evaluation(run):
  workdir, config, results = run
  shadow = io.read_npz(os.path.join(workdir, "attacks", "n280", "shadow_split.npz"))
  split = io.read_npz(os.path.join(workdir, "attacks", "n280", "split.npz"))
  ctx = pipeline.setup(config, workdir)
  assert not set(shadow["members"]) & set(ctx.splits.members)
  assert not set(shadow["members"]) & set(split["test_nonmembers"])
  assert RunLayout(workdir).shadow_run(280).finished_models() == ["dense", "ticket_s80"]
  r = _result(results, "shadow", "dense", "dense", "loss")
  assert r["accuracy"] > 0.6, r


def test_every_result_has_its_per_example_scores(run):
  workdir, _, results = run
  r = _result(results, "paper", "dense", "dense", "loss")
  scores = io.read_npz(os.path.join(workdir, "attacks", "n280", "paper", "dense__dense", "loss.npz"))
  assert len(scores["scores"]) == r["num_members"] + r["num_nonmembers"] == 140
  recomputed = np.mean(scores["predicted"] == scores["is_member"])
  assert recomputed == pytest.approx(r["accuracy"])


def test_rerun_does_not_redo_finished_attacks(run):
  workdir, config, results = run
  path = os.path.join(workdir, "attacks", "n280", "paper", "dense__dense", "loss.json")
  before = os.stat(path).st_mtime_ns
  assert launch.run(config, workdir) == results
  assert os.stat(path).st_mtime_ns == before


def test_attack_set_larger_than_the_pools_is_named(run):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  with pytest.raises(inputs_lib.AttackError, match="attack set of 4000 needs 2000 members"):
    attack_runs.resolve_size(ctx, 4000)


def test_unfinished_model_is_named(run):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  with pytest.raises(checkpoint.CheckpointError, match="no finished model there"):
    targets.model_target(ctx, "ticket_s99")


def test_nan_confidences_are_refused():
  with pytest.raises(inputs_lib.AttackError, match="logits: 1 of 3 rows hold NaN or Inf"):
    inputs_lib.AttackInputs.from_logits(np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), np.array([0, 1, 0]))


def test_confidence_cache_holds_both_attack_parts_once(run):
  workdir = run[0]
  split = io.read_npz(os.path.join(workdir, "attacks", "n280", "split.npz"))
  cached = io.read_npz(RunLayout(workdir).confidences("dense"))
  attacked = np.concatenate(list(split.values()))
  assert np.all(np.isin(attacked, cached["ids"]))  # other tests may add ids; these must all be there
  assert np.all(np.diff(cached["ids"]) > 0)       # sorted, each example once
  assert cached["logits"].shape == (len(cached["ids"]), 10)


def test_a_recorded_split_of_another_run_is_refused(run):
  """A split.npz whose ids are not this run's members / non-members would mislabel examples: refused, file named."""
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  path = ctx.layout.attack_split(8)
  not_members = np.setdiff1d(np.arange(len(ctx.splits.members) * 4), ctx.splits.members)[:2]
  io.write_npz(path, train_members=not_members, train_nonmembers=ctx.splits.test[:2],
               test_members=ctx.splits.members[:2], test_nonmembers=ctx.splits.test[2:4])
  try:
    with pytest.raises(inputs_lib.AttackError, match=f"^{path}: records ids that are not members / non-members of "
                                                     "this run"):
      attack_runs.attack_split(ctx, 8)
  finally:
    os.remove(path)


def _file_hashes(folder):
  return {os.path.join(root, f): hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
          for root, _, files in os.walk(folder) for f in files}


def test_cross_run_transfer_reads_the_other_run_without_writing_into_it(run, tmp_path):
  workdir, config, _ = run
  mine, other = str(tmp_path / "mine"), str(tmp_path / "other")
  for copy in (mine, other):  # trained models only: both runs share members, seed and attack split
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("attacks", "confidences", "shadow_n*", ".lock"))
  before = _file_hashes(other)
  config = config.copy_and_resolve_references()
  config.attacks.protocols, config.attacks.transfer_runs = ("transfer",), (other,)
  config.attacks.models = {"loss": ATTACKS["loss"]}
  results = launch.run(config, mine)
  assert _file_hashes(other) == before
  pairs = {(r["source"], r["target"]) for r in results}
  labels = ("dense", "ticket_s80", "other/dense", "other/ticket_s80")
  assert pairs == {(a, b) for a in labels for b in labels}
  assert os.path.exists(RunLayout(mine).confidences("other/dense"))
  # The other run's models are copies of mine: the same attack on the same outputs gives the same numbers.
  by_pair = {(r["source"], r["target"]): r["accuracy"] for r in results}
  assert by_pair[("other/dense", "other/dense")] == by_pair[("dense", "dense")]
