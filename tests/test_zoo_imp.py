"""IMP and late rewinding in the zoo: each zoo model's IMP rounds equal sequential IMP of its seed (its own dense
model pruned, then its own rounds' survivors, each rewound to its own w0 or late-rewind point), and each zoo ticket
starts from its own dense model's state at lottery.rewind_step."""
import functools

import jax
import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.lottery import context as context_lib, recipes, train, zoo, zoo_pipeline
from mialth_jax.utils import checkpoint, io

pytestmark = pytest.mark.slow  # two zoos of 8 models, 3 kinds each, and their sequential twins: ~2 min on 2 cores

NUM_MODELS, STEPS, ROUNDS, FRACTION = 8, 4, 2, 0.5
TOLERANCE = dict(rtol=2e-4, atol=2e-5)  # test_zoo.py's: the vectorised zoo against sequential training


def imp_config(rewind_step: int):
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 32, -1.0, STEPS
  config.train.log_every_steps = 1
  config.lottery.method, config.lottery.imp_rounds, config.lottery.imp_fraction = "imp", ROUNDS, FRACTION
  config.lottery.rewind_step = rewind_step
  config.zoo.num_models = NUM_MODELS
  return config


@pytest.fixture(scope="module", params=[0, 2], ids=["rewind_to_w0", "late_rewind_step_2"])
def trained(request, tmp_path_factory):
  ctx = context_lib.setup(imp_config(request.param), str(tmp_path_factory.mktemp("zoo_imp")))
  return ctx, zoo_pipeline.train_zoo(ctx)


@pytest.fixture(scope="module")
def alone(trained) -> dict:
  """{s: sequential_imp of zoo model s} for the first and last zoo model."""
  ctx, _ = trained
  keep, seeds = np.load(ctx.layout.zoo("keep.npy")), np.load(ctx.layout.zoo("seeds.npy"))
  return {s: sequential_imp(ctx, keep[s], int(seeds[s])) for s in (0, NUM_MODELS - 1)}


def stacked(ctx, path: str):
  return checkpoint.restore(path, zoo_pipeline._abstract_zoo(ctx, NUM_MODELS))


def stacked_mask(ctx, name: str):
  return checkpoint.restore(ctx.layout.zoo(name, "mask"), zoo.stack([ctx.dense_mask()] * NUM_MODELS))


def magnitude_mask(params, prior, sparsity: float):
  """Written out independently of masks.prune: of the n prunable weights (the prior's array leaves), the
  round(sparsity * n) smallest |w| are pruned, counting those the prior pruned already (IMP ranks its survivors)."""
  kernels = [(np.abs(np.asarray(w)), np.asarray(m)) for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(prior))
             if np.ndim(m)]
  total = sum(m.size for _, m in kernels)
  more = round(sparsity * total) - sum(int((~m).sum()) for _, m in kernels)
  cut = np.sort(np.concatenate([a[m] for a, m in kernels]))[more - 1]
  new = iter([m & (a > cut) for a, m in kernels])
  mask = jax.tree.unflatten(jax.tree.structure(prior), [next(new) if np.ndim(m) else m for m in jax.tree.leaves(prior)])
  assert sum(int((~m).sum()) for m in jax.tree.leaves(mask) if np.ndim(m)) == round(sparsity * total)  # no ties
  return mask


def sequential_imp(ctx, keep_row: np.ndarray, seed: int) -> dict:
  """One zoo model trained alone, as the run trains its own: dense from init(seed), then IMP round r prunes round
  r - 1's final weights (dense's for r = 1) among its survivors and retrains from the rewind point (w0, or dense's
  state after lottery.rewind_step steps) at that step. {name: (mask, final state)}, and "rewind": that point."""
  rewind_step = ctx.config.lottery.rewind_step
  single = jax.jit(functools.partial(train.train_step, model=ctx.model, tx=ctx.tx, seed=zoo.augment_seed(ctx.config.seed),
                                     augment_kind="none", mean=ctx.data.mean, std=ctx.data.std))
  batches = zoo.Batches(keep_row[None], np.array([seed]), ctx.config.train.batch_size, ctx.steps_per_epoch)
  images, labels = zoo_pipeline.zoo_pool(ctx)

  def train_from(variables, mask, first_step):
    state, at_rewind = ctx.start_state(variables, jax.tree.map(np.asarray, mask), first_step), None
    for k in range(first_step, STEPS):
      if k == rewind_step:
        at_rewind = {"params": state.params, "batch_stats": state.batch_stats}
      pos = batches.positions(k)[0]
      state, _ = single(state, images[pos], labels[pos])
    return state, at_rewind

  w0 = ctx.init_variables(seed)
  mask = ctx.dense_mask()
  state, at_rewind = train_from(w0, mask, 0)
  found = {"dense": (mask, state), "rewind": at_rewind}
  for r in range(1, ROUNDS + 1):
    mask = magnitude_mask(state.params, mask, 1 - (1 - FRACTION) ** r)
    state, _ = train_from(at_rewind, mask, rewind_step)
    found[f"imp_r{r}"] = (mask, state)
  return found


def test_the_zoo_has_the_runs_imp_rounds_with_their_sparsities(trained):
  ctx, summaries = trained
  assert list(summaries) == ["dense", "imp_r1", "imp_r2"] == [s.name for s in recipes.plan(ctx.config)]
  assert [summaries[n]["kind"] for n in summaries] == ["dense", "imp", "imp"]
  assert [summaries[n]["sparsity"] for n in ("imp_r1", "imp_r2")] == pytest.approx([0.5, 0.75], abs=1e-3)
  first_logged = io.read_jsonl(ctx.layout.zoo("imp_r1", "metrics.jsonl"))[0]["step"]
  assert first_logged == ctx.config.lottery.rewind_step + 1  # retraining resumes the schedule at the rewind step


def test_imp_in_the_zoo_equals_sequential_imp_of_the_same_seeds(trained, alone):
  ctx, _ = trained
  finals = {name: stacked(ctx, ctx.layout.zoo(name, "final")) for name in ("dense", "imp_r1", "imp_r2")}
  zoo_masks = {name: stacked_mask(ctx, name) for name in ("dense", "imp_r1", "imp_r2")}
  for s, by_name in alone.items():
    for r, name in enumerate(("imp_r1", "imp_r2"), 1):
      previous = "dense" if r == 1 else f"imp_r{r - 1}"
      # Each round prunes its own zoo model's previous round, among that model's survivors.
      own = magnitude_mask(zoo.unstack(finals[previous]["params"], s), zoo.unstack(zoo_masks[previous], s),
                           1 - (1 - FRACTION) ** r)
      for a, b, c in zip(jax.tree.leaves(zoo.unstack(zoo_masks[name], s)), jax.tree.leaves(own),
                         jax.tree.leaves(by_name[name][0])):
        assert np.array_equal(a, b) and np.array_equal(a, c)
      for part in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(zoo.unstack(finals[name][part], s)),
                        jax.tree.leaves(getattr(by_name[name][1], part))):
          np.testing.assert_allclose(a, np.asarray(b), **TOLERANCE)


def test_each_zoo_ticket_starts_from_its_own_models_rewind_point(trained, alone):
  ctx, _ = trained
  rewind_step = ctx.config.lottery.rewind_step
  spec = next(s for s in zoo_pipeline.zoo_plan(ctx) if s.name == "imp_r2")
  masks = [zoo.unstack(stacked_mask(ctx, "imp_r2"), s) for s in range(NUM_MODELS)]
  start = zoo_pipeline.start_state(ctx, spec, masks)
  point = stacked(ctx, ctx.layout.zoo("rewind" if rewind_step else "w0"))
  w0 = stacked(ctx, ctx.layout.zoo("w0"))
  assert np.all(np.asarray(start.step) == rewind_step)
  for s in range(NUM_MODELS):
    for got, saved, first, m in zip(jax.tree.leaves(zoo.unstack(start.params, s)),
                                    jax.tree.leaves(zoo.unstack(point["params"], s)),
                                    jax.tree.leaves(zoo.unstack(w0["params"], s)), jax.tree.leaves(masks[s])):
      np.testing.assert_array_equal(got, np.where(m, saved, 0.0).astype(saved.dtype))
      assert np.array_equal(saved, first) == (rewind_step == 0)  # late rewinding: not w0
    for got, saved in zip(jax.tree.leaves(zoo.unstack(start.batch_stats, s)),
                          jax.tree.leaves(zoo.unstack(point["batch_stats"], s))):
      np.testing.assert_array_equal(got, saved)
  for s, by_name in alone.items():  # the point is zoo model s's own dense state after rewind_step steps
    for a, b in zip(jax.tree.leaves(zoo.unstack(point, s)), jax.tree.leaves(by_name["rewind"])):
      np.testing.assert_allclose(a, np.asarray(b), **TOLERANCE)
