"""The one train step's hooks (lottery/step_hooks.py) on a tiny network: a loss term adds exactly its value, a
replaced gradient computation and optimiser state are used, `after` sees the updated state, hooks run by their order,
and a slot no hook owns or two hooks replacing the same part are refused."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mialth_jax.lottery import step_hooks, train, train_state


class Tiny(nn.Module):
  dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(3)(x)


@pytest.fixture
def setup(monkeypatch):
  monkeypatch.setattr(step_hooks, "STEP_HOOKS", step_hooks.Registry("train-step hook"))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 2, 2, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 8).astype(np.int32)
  model = Tiny()
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 2, 2, 1), np.float32))
  tx = optax.sgd(lambda count: 0.1)  # a schedule: the optimiser state holds a count
  mask = jax.tree.map(lambda p: np.ones(p.shape, bool), variables["params"])
  step = functools.partial(train.train_step, model=model, tx=tx, seed=0, augment_kind="none",
                           mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))

  def start(extra=None):
    return train_state.create_state(variables["params"], variables["batch_stats"], mask, tx, extra=extra)
  return step, start, images, labels


def test_a_loss_term_adds_its_value_and_after_sees_the_new_state(setup):
  step, start, images, labels = setup
  seen = []
  step_hooks.STEP_HOOKS.register("l2", step_hooks.StepHook(
      loss_term=lambda slot, params, logits, batch: slot * jnp.sum(jnp.square(params["Dense_0"]["kernel"])),
      after=lambda slot, new_state, batch: seen.append(int(new_state.step)) or slot))
  plain, plain_metrics = step(start(), images, labels)
  with_term, metrics = step(start({"l2": np.float32(0.5)}), images, labels)
  kernel = np.asarray(start().params["Dense_0"]["kernel"], np.float64)
  assert float(metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]) + 0.5 * np.sum(kernel ** 2), rel=1e-5)
  expected = np.asarray(plain.params["Dense_0"]["kernel"]) - 0.1 * 0.5 * 2 * kernel  # SGD on the term's gradient too
  np.testing.assert_allclose(with_term.params["Dense_0"]["kernel"], expected, rtol=1e-5, atol=1e-6)
  assert seen == [1] and float(with_term.extra["l2"]) == 0.5


def test_replaced_gradients_and_optimizer_state_are_the_ones_used(setup):
  step, start, images, labels = setup

  def halved(slot, objective, params, batch):
    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return (loss, aux), jax.tree.map(lambda g: slot * g, grads)
  step_hooks.STEP_HOOKS.register("halve", step_hooks.StepHook(gradients=halved))
  plain, _ = step(start(), images, labels)
  half, _ = step(start({"halve": np.float32(0.5)}), images, labels)
  before = start().params
  jax.tree.map(lambda p, a, b: np.testing.assert_allclose(b - p, 0.5 * (a - p), rtol=1e-5, atol=1e-7),
               before, plain.params, half.params)
  step_hooks.STEP_HOOKS.register("count", step_hooks.StepHook(
      optimizer_state=lambda slot, batch: optax.tree_utils.tree_set(batch.state.opt_state, count=slot)))
  state, _ = step(start({"count": np.int32(7)}), images, labels)
  assert int(optax.tree_utils.tree_get(state.opt_state, "count")) == 8


def test_hooks_run_by_their_order_and_conflicts_are_refused(setup):
  step, start, images, labels = setup
  calls = []
  record = lambda name: lambda slot, batch: calls.append(name) or slot  # noqa: E731
  step_hooks.STEP_HOOKS.register("second", step_hooks.StepHook(order=2, before=record("second")))
  step_hooks.STEP_HOOKS.register("first", step_hooks.StepHook(order=1, before=record("first")))
  step(start({"second": np.int32(0), "first": np.int32(0)}), images, labels)
  assert calls == ["first", "second"]
  with pytest.raises(ValueError, match=r"TrainState.extra holds \['stray'\], which no registered train-step hook"):
    step(start({"stray": np.int32(0)}), images, labels)
  step_hooks.STEP_HOOKS.register("a", step_hooks.StepHook(objective=lambda slot, batch, loss_fn: None))
  step_hooks.STEP_HOOKS.register("b", step_hooks.StepHook(objective=lambda slot, batch, loss_fn: None))
  with pytest.raises(ValueError, match=r"hooks \['a', 'b'\] each replace the step's objective"):
    step(start({"a": np.int32(0), "b": np.int32(0)}), images, labels)
