"""DP-SGD (defences/dp_sgd.py, dp_budget.py) on small problems, each number against an independent computation:
every per-example gradient is clipped before noise (a loop of per-example jax.grad), the noise's std is multiplier x
norm (many draws on zero gradients), epsilon is dp-accounting's (direct events, and jax-privacy's own accountant),
the calibrated noise meets its target and no less noise would, Poisson batches have the sampling rate, GroupNorm keeps
examples apart, a recipe's summary holds the guarantee, and bad settings are refused with one line naming the
field."""
import functools
import re

import dp_accounting
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax_privacy import accounting as jp_accounting
from scipy import stats

from mialth_jax import config_lib, errors
from mialth_jax.data import augment
from mialth_jax.defences import dp_budget, dp_sgd
from mialth_jax.lottery import train, train_state
from mialth_jax.models import resnet

ZERO, ONE = np.zeros(1, np.float32), np.ones(1, np.float32)


class Tiny(nn.Module):
  """Conv, GroupNorm, Dense: small enough to loop over examples, with the normalisation DP models use."""
  dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = resnet.GroupNorm(4)(nn.Conv(8, (3, 3))(x))
    return nn.Dense(3)(nn.relu(x).reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def tiny():
  """(model, params, images, labels, one jitted DP step with SGD at learning rate 1: the update is -gradient)."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 8).astype(np.int32)
  model = Tiny()
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 1), np.float32))["params"]
  tx = optax.sgd(1.0)
  mask = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
  step = jax.jit(functools.partial(train.train_step, model=model, tx=tx, seed=3, augment_kind="none", mean=ZERO,
                                   std=ONE))

  def gradient(clip_norm, noise_multiplier, expected_batch_size, valid, seed_step=0):
    extra = {"dp_sgd": {"clip_norm": np.float32(clip_norm), "noise_multiplier": np.float32(noise_multiplier),
                        "expected_batch_size": np.float32(expected_batch_size)}}
    state = train_state.create_state(params, {}, mask, tx, step=seed_step, extra=extra)
    new, metrics = step(state, images, labels, np.asarray(valid, bool))
    return jax.tree.map(lambda before, after: np.asarray(before - after, np.float64), params, new.params), metrics
  return model, params, images, labels, gradient


def _per_example_gradients(model, params, images, labels):
  """Each example's own loss gradient, one jax.grad (on a batch of one) at a time."""
  inputs = augment.normalise(images, ZERO, ONE, jnp.float32)
  grad = jax.jit(jax.grad(lambda p, x, y: train.cross_entropy(model.apply({"params": p}, x), y)))
  return [grad(params, inputs[i:i + 1], labels[i:i + 1]) for i in range(len(labels))]


def test_every_per_example_gradient_is_clipped_to_the_norm_before_summing(tiny):
  model, params, images, labels, gradient = tiny
  per_example = _per_example_gradients(model, params, images, labels)
  norms = np.array([float(optax.tree.norm(g)) for g in per_example])
  valid = np.arange(8) < 6                 # the last two rows are padding: no gradient at all
  clip_norm = float(np.median(norms[:6]))  # half the real examples are clipped, half are not
  expected = functools.reduce(lambda a, b: jax.tree.map(np.add, a, b), [
      jax.tree.map(lambda g, s=min(1.0, clip_norm / norms[i]): np.asarray(g, np.float64) * s, per_example[i])
      for i in range(6)])
  got, metrics = gradient(clip_norm, 0.0, 5.0, valid)
  jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e / 5.0, rtol=2e-5, atol=1e-7), got, expected)
  assert (norms[:6] > clip_norm).sum() == 3 and (norms[:6] < clip_norm).sum() == 3
  losses = [float(train.cross_entropy(model.apply({"params": params}, augment.normalise(
      images[i:i + 1], ZERO, ONE, jnp.float32)), labels[i:i + 1])) for i in range(6)]
  assert float(metrics["loss"]) == pytest.approx(np.mean(losses), rel=1e-5)  # the real rows' mean loss


def test_noise_standard_deviation_is_the_multiplier_times_the_norm(tiny):
  _, params, _, _, gradient = tiny
  noise_multiplier, clip_norm, expected_batch_size = 1.3, 0.7, 4.0
  draws = [jax.tree.leaves(gradient(clip_norm, noise_multiplier, expected_batch_size, np.zeros(8, bool), step)[0])
           for step in range(4)]  # zero gradients (every row padding): the update is the noise / batch size
  noise = [np.concatenate([leaf.ravel() for leaf in leaves]) * expected_batch_size for leaves in draws]
  samples = np.concatenate(noise)
  n = samples.size  # 4 steps x 411 parameters
  std = noise_multiplier * clip_norm
  assert abs(np.std(samples) / std - 1) < 4 / np.sqrt(2 * n)   # the std's standard error is std / sqrt(2n)
  assert abs(np.mean(samples)) < 4 * std / np.sqrt(n)
  assert stats.kstest(samples / std, "norm").pvalue > 1e-3      # Gaussian, not only of the right scale
  assert abs(np.corrcoef(noise[0], noise[1])[0, 1]) < 4 / np.sqrt(noise[0].size)  # fresh noise at every step


def test_epsilon_is_dp_accountings_for_the_truncated_poisson_gaussian():
  sampling = dp_budget.Sampling(members=600, sampling_rate=64 / 600, max_batch_size=100)
  got = dp_budget.epsilon(sampling, ((4.0, 50),), 1e-5)
  accountant = dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                                               value_discretization_interval=1e-4)
  accountant.compose(dp_accounting.TruncatedSubsampledGaussianDpEvent(600, 64 / 600, 100, 4.0), 50)
  assert got == accountant.get_epsilon(1e-5)
  params = jp_accounting.DpParams(noise_multipliers=4.0, num_samples=600, delta=1e-5, batch_size=64,
                                  truncated_batch_size=100)
  via_jax_privacy = jp_accounting.DpsgdTrainingAccountant(jp_accounting.PldAccountantConfig()).compute_epsilon(
      50, params)
  assert got == pytest.approx(via_jax_privacy, rel=1e-9)
  composed = dp_budget.epsilon(sampling, ((4.0, 30), (4.0, 20)), 1e-5)  # a DP ticket: its source's steps, then its own
  assert composed == pytest.approx(got, rel=1e-6)


def test_calibrated_noise_meets_the_target_and_less_noise_would_not():
  sampling = dp_budget.Sampling(members=100, sampling_rate=0.9, max_batch_size=100)  # large noise: fast accounting
  noise = dp_budget.calibrated_noise(sampling, 4, 1.0, 1e-5)
  assert dp_budget.epsilon(sampling, ((noise, 4),), 1e-5) <= 1.0
  assert dp_budget.epsilon(sampling, ((noise - 2 * dp_budget.CALIBRATION_TOL, 4),), 1e-5) > 1.0


def test_poisson_batches_sample_each_member_at_the_rate_and_repeat_by_step():
  sampling = dp_budget.Sampling(members=500, sampling_rate=0.1, max_batch_size=80)
  batches = dp_budget.PoissonBatches(seed=1, sampling=sampling, length=88)
  drawn = [batches(step) for step in range(400)]
  sizes = np.array([valid.sum() for _, valid in drawn])
  assert all(len(positions) == 88 and not valid[sizes[i]:].any() for i, (positions, valid) in enumerate(drawn))
  assert abs(sizes.mean() - 50) < 4 * np.sqrt(500 * 0.1 * 0.9 / 400)  # Binomial(500, 0.1) batch sizes
  counts = np.bincount(np.concatenate([p[v] for p, v in drawn]), minlength=500)
  assert stats.chisquare(counts).pvalue > 1e-3     # every member as likely as any other
  assert all(len(set(p[v])) == v.sum() for p, v in drawn)  # no member twice in a batch
  again = batches(17)
  np.testing.assert_array_equal(again[0], drawn[17][0])
  truncated = dp_budget.PoissonBatches(1, dp_budget.Sampling(500, 0.5, 80), 80)(0)[1]
  assert truncated.sum() == 80  # 250 expected, cut to the truncation size


def test_group_norm_resnet_keeps_examples_apart_and_batch_norm_is_unchanged():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
  others = np.concatenate([images[:1], rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)])
  group = resnet.create_model("resnet18", 3, "cifar", 0.0625, norm="group")
  variables = group.init(jax.random.PRNGKey(0), images[:1])
  assert set(variables) == {"params"}
  forward = jax.jit(lambda x: group.apply(variables, x, train=True))
  np.testing.assert_array_equal(forward(images)[0], forward(others)[0])  # example 0 sees no other example
  batch = resnet.create_model("resnet18", 3, "cifar", 0.0625)
  batch_shapes = jax.eval_shape(lambda: batch.init(jax.random.PRNGKey(0), images[:1]))
  assert jax.tree.map(np.shape, batch_shapes["params"]) == jax.tree.map(np.shape, variables["params"])
  assert batch == resnet.ResNet(num_classes=3, width_multiplier=0.0625, **resnet.ARCHITECTURES["resnet18"])


@pytest.mark.parametrize("channels,groups", [(8, 8), (24, 8), (32, 16)])
def test_group_norm_splits_channels_into_gcd_groups(channels, groups):
  x = np.random.default_rng(1).normal(size=(2, 3, 3, channels)).astype(np.float32)
  y = resnet.GroupNorm(16).apply({"params": {"scale": np.ones(channels, np.float32),
                                             "bias": np.zeros(channels, np.float32)}}, x)
  grouped = x.reshape(2, 3, 3, groups, channels // groups).astype(np.float64)
  mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
  var = grouped.var(axis=(1, 2, 4), keepdims=True)
  np.testing.assert_allclose(y, ((grouped - mean) / np.sqrt(var + 1e-5)).reshape(x.shape), rtol=1e-4, atol=1e-5)


def _dp_config(**settings):
  config = config_lib.base()
  config.model.norm = "group"
  config.lottery.controls = ("dp", "dp_ticket")
  for key, value in settings.items():
    config.defences.dp_sgd[key] = value
  return config


@pytest.mark.parametrize("change,field", [
    (dict(epsilons=(8.0, 0.0)), "defences.dp_sgd.epsilons"),
    (dict(epsilons=(), noise_multipliers=(-1.0,)), "defences.dp_sgd.noise_multipliers"),
    (dict(clip_norm=0.0), "defences.dp_sgd.clip_norm"),
    (dict(delta=1.0), "defences.dp_sgd.delta"),
    (dict(noise_multipliers=(1.0,)), "defences.dp_sgd.epsilons and defences.dp_sgd.noise_multipliers"),
    (dict(ticket_from="trained"), "defences.dp_sgd.ticket_from"),
])
def test_bad_dp_settings_are_refused_naming_the_field(change, field):
  with pytest.raises(errors.ConfigError, match=re.escape(field)) as raised:
    config_lib.validate(_dp_config(**change))
  assert "\n" not in str(raised.value)


def test_batch_norm_under_dp_is_refused_naming_model_norm():
  config = _dp_config()
  config.model.norm = "batch"
  with pytest.raises(errors.ConfigError, match=r"^model\.norm='batch': DP-SGD models \(dp, dp_ticket\) need"):
    config_lib.validate(config)
  config.model.norm = "group"
  config_lib.validate(config)
  config.lottery.controls = ("dp_ticket", "dp")  # tickets of the dp models need them trained first
  with pytest.raises(errors.ConfigError, match=r"^lottery\.controls: dp_ticket"):
    config_lib.validate(config)


def test_delta_at_or_above_one_over_members_is_refused_before_training(tmp_path):
  from mialth_jax.data import load_dataset, splits as splits_lib
  from mialth_jax.layout import RunLayout
  from mialth_jax.lottery import context, recipes
  config = _dp_config(delta=1 / 400)
  config.data.num_train = 400
  dataset = load_dataset(config.data)
  ctx = context.build(config, RunLayout(str(tmp_path)), dataset,
                      splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), 400, 0))
  spec = next(s for s in recipes.plan(config) if s.kind == "dp")
  with pytest.raises(errors.ConfigError, match=r"^defences\.dp_sgd\.delta=0\.0025 must be below 1 / members = 1/400"):
    dp_sgd.DpSgd().check(ctx, spec)
  ctx.config.defences.dp_sgd.delta = 1e-5
  dp_sgd.DpSgd().check(ctx, spec)
  sampling = dp_budget.sampling_of(ctx)  # 128 expected of 400: truncated where Binomial(400, 0.32) exceeds w.p. 1e-4
  assert sampling.sampling_rate == 128 / 400
  assert stats.binom.sf(sampling.max_batch_size, 400, 0.32) <= 1e-4 < stats.binom.sf(sampling.max_batch_size - 1,
                                                                                      400, 0.32)
  assert not list(tmp_path.iterdir())  # nothing written


def test_a_dp_models_summary_holds_its_guarantee(tmp_path):
  from mialth_jax.data import load_dataset, splits as splits_lib
  from mialth_jax.layout import RunLayout
  from mialth_jax.lottery import context, recipes
  config = _dp_config(epsilons=(), noise_multipliers=(4.0,), max_batch_size=160)
  config.data.num_train = 400
  dataset = load_dataset(config.data)
  ctx = context.build(config, RunLayout(str(tmp_path)), dataset,
                      splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), 400, 0))
  spec = next(s for s in recipes.plan(config) if s.kind == "dp")
  assert spec.name == "dp_nm4"
  summary = dp_sgd.DpSgd().summary(ctx, spec, 5)
  accountant = dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                                               value_discretization_interval=1e-4)
  accountant.compose(dp_accounting.TruncatedSubsampledGaussianDpEvent(400, 128 / 400, 160, 4.0), 5)
  assert summary["epsilon"] == accountant.get_epsilon(1e-5)
  assert {k: summary[k] for k in ("delta", "noise_multiplier", "clip_norm", "sampling_rate", "max_batch_size",
                                  "private_steps", "members", "target_epsilon")} == {
      "delta": 1e-5, "noise_multiplier": 4.0, "clip_norm": 1.0, "sampling_rate": 128 / 400, "max_batch_size": 160,
      "private_steps": 5, "members": 400, "target_epsilon": None}
  batches = dp_sgd.DpSgd().loop_overrides(ctx, spec)["batch_selection"]
  assert batches.length == 160 and batches.sampling == dp_budget.sampling_of(ctx)  # 160: a multiple of 8 devices
