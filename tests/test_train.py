"""The masked jitted train step: exact zeros, and the same result on 8 simulated devices as on 1."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import config_lib, inference
from mialth_jax.lottery import masks, train, train_state
from mialth_jax.models import resnet

NUM_STEPS = 5


def _model_and_w0():
  model = resnet.create_model("resnet18", 10, "cifar", 0.125)
  return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def _setup(mesh, batch_size=24):
  model, variables = _model_and_w0()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (96, 8, 8, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 96).astype(np.int32)
  mask = masks.prune(jax.device_get(variables["params"]),
                     masks.dense_mask(variables["params"], masks.prunable_predicate("kernel$")), 0.8,
                     "global_magnitude")
  cfg = config_lib.base().train
  # A small learning rate: at 0.1 on random labels training is chaotic and float reduction-order differences
  # (1e-6 after 3 steps) grow to 1e-2 by step 5, which would test the problem, not the step.
  cfg.num_epochs, cfg.num_steps, cfg.batch_size, cfg.learning_rate = -1, NUM_STEPS, batch_size, 0.01
  tx = train_state.make_optimizer(cfg, NUM_STEPS, 4)
  replicated = NamedSharding(mesh, P())
  params = masks.apply_mask(variables["params"], mask)
  state = train_state.create_state(params, variables["batch_stats"], mask, tx)
  state = jax.device_put(state, replicated)
  data = train.TrainData(images=jax.device_put(images, replicated), labels=jax.device_put(labels, replicated),
                         host_images=images, host_labels=labels, test_images=images, test_labels=labels,
                         mean=np.float32(0.5), std=np.float32(0.25))
  loop = train.LoopConfig("t", seed=0, total_steps=NUM_STEPS, steps_per_epoch=4, batch_size=batch_size,
                          augment="cifar", eval_every_steps=99, log_every_steps=99, checkpoint_every_steps=0)
  return model, tx, loop, data, state, mask


def _run(mesh):
  model, tx, loop, data, state, mask = _setup(mesh)
  step = train.make_jitted_step(model, tx, loop, data, mesh)
  for inputs in train.step_inputs(loop, data, mesh, 0):
    state, metrics = step(state, inputs)
  return jax.device_get(state), mask, jax.device_get(metrics)


@pytest.fixture(scope="module")
def eight_device_run():
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  return _run(inference.make_mesh())


def test_pruned_weights_and_their_momentum_stay_exactly_zero(eight_device_run):
  state, mask, _ = eight_device_run
  zeros = 0
  for w, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(mask)):
    if np.ndim(m):
      assert np.all(np.asarray(w)[~m] == 0.0)
      zeros += int((~m).sum())
  assert zeros == masks.sparsity_report(mask)["pruned"] > 0
  trace = state.opt_state[1][0].trace  # chain(add_decayed_weights, sgd) -> sgd's momentum trace, params-shaped
  checked = 0
  for t, m in zip(jax.tree.leaves(trace), jax.tree.leaves(mask)):
    if np.ndim(m):
      assert np.all(np.asarray(t)[~m] == 0.0)
      assert np.any(np.asarray(t)[m] != 0.0)
      checked += 1
  assert checked == len([m for m in jax.tree.leaves(mask) if np.ndim(m)])


def test_survivors_do_train(eight_device_run):
  state, mask, metrics = eight_device_run
  assert int(state.step) == NUM_STEPS and np.isfinite(metrics["loss"])
  w0 = _model_and_w0()[1]["params"]
  for w, start, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(w0), jax.tree.leaves(mask)):
    if np.ndim(m):
      assert np.any(np.asarray(w)[m] != np.asarray(start)[m])


def test_eight_devices_match_one_device(eight_device_run):
  one = _run(Mesh(np.asarray(jax.devices()[:1]), (inference.DATA_AXIS,)))
  for a, b in zip(jax.tree.leaves(eight_device_run[0].params), jax.tree.leaves(one[0].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(eight_device_run[0].batch_stats), jax.tree.leaves(one[0].batch_stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_batch_indices_are_a_pure_function_of_seed_and_step():
  a = [train.batch_indices(7, s, 100, 32, 3) for s in range(6)]
  b = [train.batch_indices(7, s, 100, 32, 3) for s in range(6)]
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  epoch0 = np.concatenate(a[:3])
  assert len(set(epoch0.tolist())) == 96  # no repeats within an epoch
  assert not np.array_equal(a[0], a[3])   # a new permutation each epoch


@pytest.mark.parametrize("epochs,steps,message", [(-1, -1, "exactly one of"), (2.0, 10, "exactly one of")])
def test_epochs_and_steps_convention(epochs, steps, message):
  cfg = ml_collections.ConfigDict({"batch_size": 10, "num_epochs": epochs, "num_steps": steps})
  with pytest.raises(ValueError, match=message):
    train_state.num_train_steps(cfg, 100)


def test_epochs_convert_to_steps_once():
  cfg = ml_collections.ConfigDict({"batch_size": 32, "num_epochs": 2.5, "num_steps": -1})
  assert train_state.num_train_steps(cfg, 100) == (8, 3)  # 3 steps per epoch (remainder dropped), ceil(7.5)


def test_learning_rate_schedules():
  cfg = config_lib.base().train
  cfg.warmup_epochs, cfg.schedule = 1.0, "cosine"
  lr = train_state.learning_rate_schedule(cfg, 100, 10)
  assert float(lr(0)) == 0.0 and float(lr(10)) == pytest.approx(0.1) and float(lr(100)) == pytest.approx(0.0)
  cfg.warmup_epochs, cfg.schedule = 0.0, "step"
  lr = train_state.learning_rate_schedule(cfg, 100, 10)
  assert [round(float(lr(s)), 6) for s in (0, 49, 50, 74, 75, 99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_streamed_batches_train_like_device_resident_ones(eight_device_run):
  """The ImageNet path (host batches, prefetched) sees the same examples in the same order as the on-device gather."""
  mesh = inference.make_mesh()
  model, tx, loop, data, state, mask = _setup(mesh)
  streamed = train.TrainData(images=None, labels=None, host_images=data.host_images, host_labels=data.host_labels,
                             test_images=data.test_images, test_labels=data.test_labels, mean=data.mean,
                             std=data.std)
  step = train.make_jitted_step(model, tx, loop, streamed, mesh)
  inputs = list(train.step_inputs(loop, streamed, mesh, 0))
  assert len(inputs) == NUM_STEPS
  for batch in inputs:
    state, _ = step(state, batch)
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(eight_device_run[0].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
