"""The reference-model zoo: balanced random subsets, the vectorised program equals sequential training, logits, the phase."""
import functools
import os

import jax
import numpy as np
import pytest

from mialth_jax import config_lib, errors, inference
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import context as context_lib, train, zoo, zoo_pipeline
from mialth_jax.utils import io

NUM_MODELS = 8


def tiny_config():
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 32, -1.0, 3
  config.train.log_every_steps = 1
  config.lottery.sparsities = (0.8,)
  config.zoo.num_models = NUM_MODELS
  return config


def test_zoo_sparsities_with_imp_are_refused_naming_the_field():
  config = tiny_config()
  config.lottery.method, config.lottery.imp_rounds = "imp", 2
  config_lib.validate(config)  # every IMP round is in the zoo
  config.zoo.sparsities = (0.8,)
  with pytest.raises(errors.ConfigError, match=r"^zoo.sparsities=\(0.8,\): .* leave zoo.sparsities empty$"):
    config_lib.validate(config)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  return context_lib.setup(tiny_config(), str(tmp_path_factory.mktemp("zoo")))


@pytest.mark.parametrize("num_models,pool_size,subset_size", [(64, 1001, 500), (16, 1797, 898), (16, 10860, 5000),
                                                               (8, 12000, 5000), (16, 900, 300), (3, 10, 7)])
def test_each_model_trains_on_exactly_the_members_count_and_each_example_is_in_floor_or_ceil(num_models, pool_size,
                                                                                              subset_size):
  keep = zoo.random_subsets(num_models, pool_size, subset_size, seed=0)
  share = num_models * subset_size / pool_size
  assert keep.shape == (num_models, pool_size) and np.all(keep.sum(1) == subset_size)
  assert set(keep.sum(0).tolist()) <= {np.floor(share), np.ceil(share)}
  assert np.array_equal(keep, zoo.random_subsets(num_models, pool_size, subset_size, seed=0))
  assert not np.array_equal(keep, zoo.random_subsets(num_models, pool_size, subset_size, seed=1))


def test_membership_is_close_to_independent_across_examples():
  """The repair moves few entries: the number of models holding two examples spreads like that of two independent
  columns of 32 of 64 models each (hypergeometric: mean 16, variance 32 * 1/2 * 1/2 * 32/63)."""
  keep = zoo.random_subsets(64, 1001, 500, seed=0).astype(float)
  together = (keep.T @ keep)[~np.eye(1001, dtype=bool)]
  assert abs(together.mean() - 16) < 0.1
  assert abs(together.std() - np.sqrt(32 * 0.25 * 32 / 63)) < 0.05 * np.sqrt(32 * 0.25 * 32 / 63)


def test_the_vectorised_zoo_equals_sequential_training_of_the_same_models(ctx):
  keep = zoo.random_subsets(NUM_MODELS, len(ExampleSource(ctx.dataset)), 898, seed=0)
  seeds = zoo.model_seeds(0, NUM_MODELS)
  dense = ctx.dense_mask()
  starts = [ctx.init_variables(int(s)) for s in seeds]
  batches = zoo.Batches(keep, seeds, 32, 4)
  images, labels = zoo_pipeline.zoo_pool(ctx)
  by_model = zoo.models_sharding(ctx.mesh, NUM_MODELS)
  state = zoo.start_states(starts, [dense] * NUM_MODELS, ctx.tx, 0, by_model)
  step = zoo_pipeline.zoo_step(ctx, NUM_MODELS)
  for k in range(3):
    state, _ = step(state, images, labels, inference.global_array(batches.positions(k), by_model))
  single = jax.jit(functools.partial(train.train_step, model=ctx.model, tx=ctx.tx, seed=zoo.augment_seed(0),
                                     augment_kind="none", mean=ctx.data.mean, std=ctx.data.std))
  for s in (0, NUM_MODELS - 1):
    alone = ctx.start_state(ctx.init_variables(int(seeds[s])), jax.tree.map(np.asarray, dense), 0)
    for k in range(3):
      pos = batches.positions(k)[s]
      alone, _ = single(alone, images[pos], labels[pos])
    for a, b in zip(jax.tree.leaves(zoo.unstack(state.params, s)), jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(a, np.asarray(b), rtol=2e-4, atol=2e-5)
    for a, b in zip(jax.tree.leaves(zoo.unstack(state.batch_stats, s)), jax.tree.leaves(alone.batch_stats)):
      np.testing.assert_allclose(a, np.asarray(b), rtol=2e-4, atol=2e-5)


def test_zoo_logits_equal_each_models_own_forward_pass(ctx):
  variables = zoo.stack([ctx.init_variables(s) for s in (3, 4)])
  source = ExampleSource(ctx.dataset)
  ids = np.arange(0, len(source), 97)
  logits = zoo.zoo_logits(ctx.model, variables, source[ids], ctx.data.mean, ctx.data.std, ctx.mesh,
                          ("identity", "flip"), batch_size=7)
  assert logits.shape == (2, len(ids), 2, 10)
  for s in range(2):
    own = inference.predict_logits(ctx.logits_fn, zoo.unstack(variables, s), source, ids, 16, ctx.mesh)
    np.testing.assert_allclose(logits[s, :, 0], own, rtol=1e-5, atol=1e-5)
    flipped = inference.predict_logits(ctx.logits_fn, zoo.unstack(variables, s),
                                       _Flipped(source), ids, 16, ctx.mesh)
    np.testing.assert_allclose(logits[s, :, 1], flipped, rtol=1e-5, atol=1e-5)


def test_the_one_program_logits_of_accelerators_equal_the_per_model_logits_of_cpus(ctx):
  variables = zoo.stack([ctx.init_variables(s) for s in (3, 4)])
  images = ExampleSource(ctx.dataset)[np.arange(0, 300, 11)]
  per_model = zoo.zoo_logits(ctx.model, variables, images, ctx.data.mean, ctx.data.std, ctx.mesh,
                             ("identity", "flip"))
  one_program = zoo._zoo_logits_fn(ctx.model, tuple(ctx.data.mean.ravel()), tuple(ctx.data.std.ravel()),
                                   ctx.data.mean.shape, ("identity", "flip"), ctx.mesh)(variables, images)
  np.testing.assert_allclose(per_model, np.asarray(one_program), rtol=1e-5, atol=1e-5)


class _Flipped:
  def __init__(self, source):
    self.source = source

  def __getitem__(self, ids):
    return self.source[ids][:, :, ::-1]


def test_the_zoo_phase_writes_keep_logits_and_tickets_with_exact_zeros(ctx):
  summaries = zoo_pipeline.train_zoo(ctx)
  layout = ctx.layout
  assert set(summaries) == {"dense", "ticket_s80"}
  keep = np.load(layout.zoo("keep.npy"))
  n = len(ExampleSource(ctx.dataset))
  assert keep.shape == (NUM_MODELS, n) and np.all(keep.sum(1) == len(ctx.splits.members))  # trained like the target
  recorded = io.read_json(layout.zoo("zoo.json"))
  assert recorded["subset_size"] == len(ctx.splits.members) and recorded["steps"] == ctx.total_steps
  last = [io.read_jsonl(layout.zoo(name, "metrics.jsonl"))[-1]["step"] for name in summaries]
  assert all(s["steps"] == ctx.total_steps for s in summaries.values()) and last == [ctx.total_steps] * 2
  for name in summaries:
    logits = np.load(layout.zoo(name, "logits.npy"))
    assert logits.shape == (NUM_MODELS, n, 2, 10) and np.isfinite(logits).all()
  assert summaries["ticket_s80"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
  final = zoo_pipeline.checkpoint.restore(layout.zoo("ticket_s80", "final"),
                                          zoo_pipeline._abstract_zoo(ctx, NUM_MODELS))["params"]
  mask = zoo_pipeline.checkpoint.restore(layout.zoo("ticket_s80", "mask"), zoo.stack([ctx.dense_mask()] *
                                                                                     NUM_MODELS))
  for w, m in zip(jax.tree.leaves(final), jax.tree.leaves(mask)):
    if np.ndim(m) > 1:
      assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)
  # Each zoo ticket's mask is its own dense model's magnitude mask: the models' masks differ.
  first = [np.asarray(m)[0] for m in jax.tree.leaves(mask) if np.ndim(m) > 1]
  second = [np.asarray(m)[1] for m in jax.tree.leaves(mask) if np.ndim(m) > 1]
  assert not all(np.array_equal(a, b) for a, b in zip(first, second))
  assert zoo_pipeline.train_zoo(ctx) == summaries  # finished: nothing is redone
  assert io.read_json(layout.zoo("zoo.json"))["num_models"] == NUM_MODELS
  assert os.path.exists(layout.zoo("dense", "metrics.jsonl"))
