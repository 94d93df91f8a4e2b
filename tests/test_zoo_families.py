"""Pruning at initialisation in the zoo: each zoo model's SNIP, GraSP and SynFlow mask is scored at its own w0 (from
its own seed) on a batch of its own members (SynFlow: data-free), exactly as the at-init functions give it when
applied to that model alone, and training from it equals sequential training of that model (test_zoo.py's
tolerance). The families run side by side: lottery.method snip, the others from lottery.controls."""
import functools

import jax
import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.data import augment
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import at_init, context as context_lib, init_scores, masks, recipes, train, zoo, zoo_pipeline
from mialth_jax.utils import checkpoint

pytestmark = pytest.mark.slow  # a zoo of 4 models, 4 kinds, and their sequential twins: about a minute on 2 cores

NUM_MODELS, STEPS, SPARSITY, EXAMPLES, ROUNDS = 4, 3, 0.8, 32, 5
TOLERANCE = dict(rtol=2e-4, atol=2e-5)  # test_zoo.py's: the vectorised zoo against sequential training
FAMILIES = ("snip", "grasp", "synflow")


def families_config():
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 32, -1.0, STEPS
  config.lottery.method, config.lottery.controls = "snip", ("grasp", "synflow")
  config.lottery.sparsities = (SPARSITY,)
  config.lottery.at_init.examples, config.lottery.at_init.synflow_rounds = EXAMPLES, ROUNDS
  config.zoo.num_models = NUM_MODELS
  config.attacks.protocols = ("zoo",)
  config.attacks.models = {"lira": {"type": "lira"}}
  config_lib.validate(config)
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  ctx = context_lib.setup(families_config(), str(tmp_path_factory.mktemp("zoo_families")))
  return ctx, zoo_pipeline.train_zoo(ctx)


def member_batch(ctx, keep_row: np.ndarray, seed: int):
  """EXAMPLES of the model's members (pool ids where keep_row), drawn as the recipe says: a sorted choice of
  positions among them with the generator [seed, 0x1417], normalised as training normalises, not augmented."""
  ids = np.flatnonzero(keep_row)
  chosen = ids[np.sort(np.random.default_rng([seed, 0x1417]).choice(len(ids), EXAMPLES, replace=False))]
  source = ExampleSource(ctx.dataset)
  return augment.normalise(source[chosen], ctx.data.mean, ctx.data.std, ctx.model.dtype), source.labels(chosen)


def direct_mask(ctx, family: str, w0: dict, batch) -> dict:
  """The at-init functions applied to one model alone: its w0 and (SNIP, GraSP) its member batch."""
  dense = ctx.dense_mask()
  if family == "synflow":
    score_of = at_init.synflow_score_of(ctx.model, w0, ctx.dataset.image_shape)
    return init_scores.synflow_mask(score_of, dense, SPARSITY, "global", ROUNDS)
  if family == "snip":
    return masks.prune_by_scores(at_init.data_scores(init_scores.snip_scores, ctx.model, w0, *batch), dense,
                                 SPARSITY, "global")
  scores = at_init.data_scores(init_scores.grasp_scores, ctx.model, w0, *batch,
                               temperature=ctx.config.lottery.at_init.grasp_temperature)
  return masks.prune_by_scores(jax.tree.map(np.negative, scores), dense, SPARSITY, "global")


def stacked(ctx, name: str, part: str):
  target = (zoo.stack([ctx.dense_mask()] * NUM_MODELS) if part == "mask"
            else zoo_pipeline._abstract_zoo(ctx, NUM_MODELS))
  return checkpoint.restore(ctx.layout.zoo(name, part), target)


def test_the_zoo_trains_every_family_with_the_runs_names(trained):
  ctx, summaries = trained
  names = [f"{f}_s80" for f in FAMILIES]
  assert list(summaries) == ["dense", *names] == [s.name for s in recipes.plan(ctx.config)]
  assert [summaries[n]["kind"] for n in names] == list(FAMILIES)
  total = sum(m.size for m in jax.tree.leaves(ctx.dense_mask()) if np.ndim(m))
  assert all(summaries[n]["sparsity"] == round(SPARSITY * total) / total for n in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_zoo_models_mask_is_its_own_w0_and_members_scored_alone(trained, family):
  ctx, _ = trained
  keep, seeds = np.load(ctx.layout.zoo("keep.npy")), np.load(ctx.layout.zoo("seeds.npy"))
  zoo_masks = stacked(ctx, f"{family}_s80", "mask")
  found = {}
  for s in (0, NUM_MODELS - 1):
    w0 = jax.device_get(ctx.init_variables(int(seeds[s])))  # its own w0, from its seed
    found[s] = direct_mask(ctx, family, w0, member_batch(ctx, keep[s], int(seeds[s])))
    for a, b in zip(jax.tree.leaves(zoo.unstack(zoo_masks, s)), jax.tree.leaves(found[s])):
      assert np.array_equal(a, b)
  # Its own: the two models' masks differ (another w0, other members).
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(found[0]),
                                                      jax.tree.leaves(found[NUM_MODELS - 1])))


def test_training_from_each_zoo_models_mask_equals_sequential_training(trained):
  ctx, _ = trained
  keep, seeds = np.load(ctx.layout.zoo("keep.npy")), np.load(ctx.layout.zoo("seeds.npy"))
  single = jax.jit(functools.partial(train.train_step, model=ctx.model, tx=ctx.tx,
                                     seed=zoo.augment_seed(ctx.config.seed), augment_kind="none",
                                     mean=ctx.data.mean, std=ctx.data.std))
  batches = zoo.Batches(keep, seeds, ctx.config.train.batch_size, ctx.steps_per_epoch)
  images, labels = zoo_pipeline.zoo_pool(ctx)
  for family in FAMILIES:
    zoo_masks, finals = stacked(ctx, f"{family}_s80", "mask"), stacked(ctx, f"{family}_s80", "final")
    for s in (0, NUM_MODELS - 1):
      mask = zoo.unstack(zoo_masks, s)
      alone = ctx.start_state(ctx.init_variables(int(seeds[s])), mask, 0)  # from its own w0, at step 0
      for k in range(STEPS):
        pos = batches.positions(k)[s]
        alone, _ = single(alone, images[pos], labels[pos])
      for part in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(zoo.unstack(finals[part], s)), jax.tree.leaves(getattr(alone, part))):
          np.testing.assert_allclose(a, np.asarray(b), **TOLERANCE)
      for w, m in zip(jax.tree.leaves(zoo.unstack(finals["params"], s)), jax.tree.leaves(mask)):
        assert np.all(w[~np.asarray(m, bool)] == 0.0)  # pruned weights stay exactly zero
