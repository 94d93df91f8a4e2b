"""The lottery pipeline end to end on digits with a tiny ResNet: artefacts, exact sparsity, bit-exact rewind."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mialth_jax import config_lib, run_dir
from mialth_jax.experiments import launch
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import masks, pipeline, recipes
from mialth_jax.utils import checkpoint, io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**lottery):
  config = config_lib.base()
  config.model.width_multiplier = 0.125
  config.data.num_train = 512
  config.train.batch_size = 64
  config.train.num_epochs, config.train.num_steps = -1.0, 6
  config.train.log_every_steps = 3
  config.train.eval_every_epochs = 0.5
  config.lottery.sparsities = (0.5, 0.8)
  for key, value in lottery.items():
    config.lottery[key] = value
  return config


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("oneshot"))
  config = tiny_config(controls=("random_prune", "random_reinit"))
  return workdir, config, launch.train(config, workdir)


def _read_tree(path):
  """Reads an Orbax checkpoint with no target tree: an independent path from the pipeline's own restore."""
  with ocp.StandardCheckpointer() as c:
    return jax.device_get(c.restore(os.path.abspath(path)))


def test_run_folder_holds_every_documented_artefact(oneshot_run):
  workdir, _, summaries = oneshot_run
  assert set(summaries) == {"dense", "ticket_s50", "ticket_s80", "random_prune_s50", "random_prune_s80",
                            "random_reinit_s50", "random_reinit_s80"}
  for name in ("config.json", "splits.npz", "w0", "lottery_summary.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in summaries:
    folder = RunLayout(workdir).model_dir(name)
    for item in ("mask", "final", "metrics.jsonl", "sparsity_report.json", "summary.json"):
      assert os.path.exists(os.path.join(folder, item)), (name, item)
  splits = io.read_npz(os.path.join(workdir, "splits.npz"))
  assert len(splits["members"]) == 512 and len(splits["members"]) + len(splits["unused_train"]) == 898
  assert len(splits["test"]) == 899


def test_metrics_have_each_step_once(oneshot_run):
  workdir, _, _ = oneshot_run
  lines = [json.loads(l) for l in open(RunLayout(workdir).metrics("dense"))]
  assert [l["step"] for l in lines if l["phase"] == "train"] == [1, 2, 3, 4, 5, 6]
  assert [l["step"] for l in lines if l["phase"] == "eval"] == [4, 6]


@pytest.mark.parametrize("name,sparsity", [("ticket_s50", 0.5), ("ticket_s80", 0.8), ("random_prune_s80", 0.8)])
def test_final_weights_have_exactly_the_requested_zeros(oneshot_run, name, sparsity):
  workdir = oneshot_run[0]
  folder = RunLayout(workdir).model_dir(name)
  mask, params = _read_tree(os.path.join(folder, "mask")), _read_tree(os.path.join(folder, "final"))["params"]
  n = pruned = 0
  for (path, w), m in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(mask)):
    if np.ndim(m):
      assert np.all(w[~m] == 0.0), masks.path_name(path)
      n, pruned = n + m.size, pruned + int((~m).sum())
  assert pruned == round(sparsity * n)
  assert io.read_json(os.path.join(folder, "sparsity_report.json"))["pruned"] == pruned


def test_ticket_mask_is_the_magnitude_mask_of_the_trained_dense_model(oneshot_run):
  workdir = oneshot_run[0]
  dense_params = _read_tree(RunLayout(workdir).final("dense"))["params"]
  mask = _read_tree(RunLayout(workdir).mask("ticket_s80"))
  kept = np.concatenate([np.abs(w[m]) for w, m in zip(jax.tree.leaves(dense_params), jax.tree.leaves(mask))
                         if np.ndim(m)])
  pruned = np.concatenate([np.abs(w[~m]) for w, m in zip(jax.tree.leaves(dense_params), jax.tree.leaves(mask))
                           if np.ndim(m)])
  assert pruned.max() <= kept.min()


def test_ticket_starts_from_w0_times_mask_bit_for_bit(oneshot_run):
  workdir, config, _ = oneshot_run
  ctx = pipeline.setup(config, workdir)
  spec = next(s for s in recipes.plan(config) if s.name == "ticket_s80")
  mask = _read_tree(RunLayout(workdir).mask("ticket_s80"))
  start = jax.device_get(pipeline.start_state(ctx, spec, mask))
  w0 = _read_tree(os.path.join(workdir, "w0"))
  for a, w, m in zip(jax.tree.leaves(start.params), jax.tree.leaves(w0["params"]), jax.tree.leaves(mask)):
    assert np.array_equal(a, np.where(m, w, np.zeros((), w.dtype)))
    assert a.dtype == w.dtype
  for a, b in zip(jax.tree.leaves(start.batch_stats), jax.tree.leaves(w0["batch_stats"])):
    assert np.array_equal(a, b)


def test_random_reinit_control_keeps_the_mask_but_not_w0(oneshot_run):
  workdir, config, _ = oneshot_run
  ticket = _read_tree(RunLayout(workdir).mask("ticket_s50"))
  control = _read_tree(RunLayout(workdir).mask("random_reinit_s50"))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ticket), jax.tree.leaves(control)))
  ctx = pipeline.setup(config, workdir)
  spec = next(s for s in recipes.plan(config) if s.name == "random_reinit_s50")
  start = jax.device_get(pipeline.start_state(ctx, spec, control))
  w0 = _read_tree(os.path.join(workdir, "w0"))
  for a, w, m in zip(jax.tree.leaves(start.params), jax.tree.leaves(w0["params"]), jax.tree.leaves(control)):
    if np.ndim(m):
      assert np.all(a[~m] == 0.0) and not np.array_equal(a[m], w[m])


def test_rerun_is_idempotent_and_a_different_config_is_refused(oneshot_run):
  workdir, config, summaries = oneshot_run
  assert launch.train(config, workdir) == summaries
  changed = tiny_config(controls=("random_prune", "random_reinit"))
  changed.train.learning_rate = 0.2
  changed.model.width_multiplier = 0.25
  with pytest.raises(run_dir.RunDirError, match=r"different config \(model.width_multiplier, "
                                                r"train.learning_rate\)"):
    launch.train(changed, workdir)


def test_zero_learning_rate_ticket_ends_exactly_at_w0_times_mask(tmp_path):
  """End to end: with lr 0 nothing moves, so the ticket's final weights are its starting weights."""
  config = tiny_config(sparsities=(0.9,))
  config.train.learning_rate, config.train.num_steps = 0.0, 2
  launch.train(config, str(tmp_path))
  w0 = _read_tree(str(tmp_path / "w0"))["params"]
  folder = RunLayout(str(tmp_path)).model_dir("ticket_s90")
  final, mask = _read_tree(os.path.join(folder, "final"))["params"], _read_tree(os.path.join(folder, "mask"))
  for a, w, m in zip(jax.tree.leaves(final), jax.tree.leaves(w0), jax.tree.leaves(mask)):
    assert np.array_equal(a, np.where(m, w, 0.0).astype(w.dtype))


def test_imp_with_late_rewinding(tmp_path):
  config = tiny_config(method="imp", imp_rounds=2, imp_fraction=0.5, rewind_step=2)
  summaries = launch.train(config, str(tmp_path))
  assert [summaries[f"imp_r{r}"]["sparsity"] for r in (1, 2)] == [0.5, 0.75]
  assert checkpoint.exists(str(tmp_path / "rewind"))
  r1 = _read_tree(os.path.join(RunLayout(str(tmp_path)).model_dir("imp_r1"), "mask"))
  r2 = _read_tree(os.path.join(RunLayout(str(tmp_path)).model_dir("imp_r2"), "mask"))
  assert all(not np.any(b & ~a) for a, b in zip(jax.tree.leaves(r1), jax.tree.leaves(r2)))
  ticket_steps = [json.loads(l)["step"] for l in open(RunLayout(str(tmp_path)).metrics("imp_r1"))]
  assert min(ticket_steps) == 3  # retraining resumes the schedule at the rewind step


def _launch(workdir, *overrides, config="configs/default.py:smoke"):
  return subprocess.run([sys.executable, "-m", "launch.main", f"--config={config}", f"--workdir={workdir}",
                         *overrides], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("override,message", [
    ("--config.data.name=mnist", "data.name='mnist' is unknown"),
    ("--config.lottery.sparsities=(0.5,1.2)", "lottery.sparsities: 1.2 is outside [0, 1)"),
    ("--config.lottery.rule=snip", "lottery.rule='snip' is unknown"),
    ("--config.model.name=vgg16", "model.name='vgg16' is unknown"),
    ("--config.data.name=npz", "data.path is empty"),
])
def test_bad_settings_exit_nonzero_with_one_line(tmp_path, override, message):
  result = _launch(str(tmp_path / "run"), override)
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert not os.path.exists(tmp_path / "run" / "w0")


def test_npz_without_required_keys_exits_nonzero(tmp_path):
  np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 8, 8, 1), np.uint8), y_train=np.zeros(4, np.int64))
  result = _launch(str(tmp_path / "run"), "--config.data.name=npz", f"--config.data.path={tmp_path / 'bad.npz'}")
  assert result.returncode == 2 and "missing keys ['x_test', 'y_test']" in result.stderr
