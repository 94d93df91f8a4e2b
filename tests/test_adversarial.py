"""Adversarial perturbations and the signals built on them, on a small CNN (with eval-mode BatchNorm) trained on
digits for a few seconds: the eps ball and the pixel range hold, eps = 0 scores 0, one PGD step of size eps is FGSM,
the small-eps limit of the loss variation is the input-gradient norm (finite differences), and the sharded signals do
not depend on batch size, order or device count (1 vs 8 simulated devices)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import inference
from mialth_jax.attacks import adversarial, adversarial_signals, label_only, registry
from mialth_jax.defences import smoothing
from mialth_jax.attacks import target as target_lib
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.data import digits
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import train as train_lib, train_state

NUM = 24  # examples per batched check


class SmallCNN(nn.Module):
  """Two convolutions with BatchNorm and a linear head: compiles in a second, unlike a ResNet."""
  num_classes: int = 10
  dtype: type = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3))(x)))
    x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def trained():
  """(model, variables, dataset, mean, std): the CNN after 150 Adam steps on the digits train split (eval mode then
  uses the learnt running statistics)."""
  dataset = digits.load()
  x = dataset.x_train.astype(np.float32) / 255.0
  mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
  model = SmallCNN()
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, batch_stats, opt_state, images, labels):
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, (images - mean) / std, train=True,
                                    mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates["batch_stats"]
    (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), batch_stats, opt_state
  params, batch_stats, opt_state = variables["params"], variables["batch_stats"], tx.init(variables["params"])
  rng = np.random.default_rng(0)
  for _ in range(150):
    idx = rng.choice(len(x), 64, replace=False)
    params, batch_stats, opt_state = step(params, batch_stats, opt_state, x[idx], dataset.y_train[idx])
  return model, {"params": params, "batch_stats": batch_stats}, dataset, mean, std


@pytest.fixture(scope="module")
def batch(trained):
  """(logits_fn, x [NUM, 8, 8, 1] in [0, 1], labels) of test images."""
  model, variables, dataset, mean, std = trained
  return (adversarial.pixel_logits_fn(model, variables, mean, std), dataset.x_test[:NUM].astype(np.float32) / 255.0,
          dataset.y_test[:NUM])


def test_the_small_cnn_learnt_digits(trained, batch):
  logits_fn, x, labels = batch
  assert (np.asarray(logits_fn(x)).argmax(1) == labels).mean() >= 0.8


@pytest.fixture(scope="module")
def perturbations(batch):
  """{(norm, eps): [FGSM, one-step PGD of size eps, 3-step PGD from x, 3-step PGD from a random start]}, each
  [NUM, ...], computed by one jitted vmap per norm."""
  logits_fn, x, labels = batch
  keys = jax.random.split(jax.random.key(3, impl="threefry2x32"), NUM)

  @functools.partial(jax.jit, static_argnames="norm")
  def perturbed(eps, *, norm):
    attacks = (lambda xi, yi, k: adversarial.fgsm(logits_fn, xi, yi, eps, norm),
               lambda xi, yi, k: adversarial.pgd(logits_fn, xi, yi, eps, norm=norm, steps=1, step_size=eps),
               lambda xi, yi, k: adversarial.pgd(logits_fn, xi, yi, eps, norm=norm, steps=3),
               lambda xi, yi, k: adversarial.pgd(logits_fn, xi, yi, eps, norm=norm, steps=3, key=k))
    return [jax.vmap(attack)(x, labels, keys) for attack in attacks]
  return {(norm, eps): [np.asarray(a) for a in perturbed(np.float32(eps), norm=norm)]
          for norm, eps in (("linf", 4 / 255), ("linf", 0.0), ("l2", 0.5), ("l2", 0.0))}


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.5), ("linf", 0.0), ("l2", 0.0)])
def test_every_perturbation_stays_in_its_eps_ball_and_the_pixel_range(batch, perturbations, norm, eps):
  _, x, _ = batch
  for x_adv in perturbations[(norm, eps)]:
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(NUM, -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert (size <= eps + 1e-6).all(), size.max()
  if eps > 0:  # the attacks moved something: the ball's surface is reached by FGSM on most examples
    moved = np.abs(perturbations[(norm, eps)][0] - x).reshape(NUM, -1)
    reach = moved.max(1) if norm == "linf" else np.linalg.norm(moved, axis=1)
    assert np.median(reach) > 0.5 * eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_pgd_step_of_size_eps_is_fgsm_and_more_steps_raise_the_loss(batch, perturbations, norm):
  logits_fn, x, labels = batch
  eps = 4 / 255 if norm == "linf" else 0.5
  fgsm, pgd1, pgd3, _ = perturbations[(norm, eps)]
  if norm == "linf":
    np.testing.assert_array_equal(pgd1, fgsm)
  else:  # PGD's projection rescales a step whose rounded l_2 norm is an ulp above eps
    np.testing.assert_allclose(pgd1, fgsm, rtol=0, atol=1e-6)
  assert not np.array_equal(pgd3, fgsm)
  loss = lambda z: -np.asarray(jax.nn.log_softmax(logits_fn(z)))[np.arange(NUM), labels]  # noqa: E731
  assert (loss(fgsm) >= loss(x) - 1e-6).mean() >= 0.9
  assert loss(pgd3).mean() >= loss(x).mean()


def test_eps_zero_leaves_every_example_and_scores_zero(batch, perturbations):
  logits_fn, x, labels = batch
  for norm in ("linf", "l2"):
    for x_adv in perturbations[(norm, 0.0)]:
      np.testing.assert_array_equal(x_adv, x)
  for output, norm in (("tv", "linf"), ("loss", "l2")):
    score = jax.jit(jax.vmap(functools.partial(adversarial.tv_signal, logits_fn, key=None, eps=0.0, norm=norm, steps=3,
                                               step_fraction=0.25, random_start=False, output=output, per_eps=True)))
    np.testing.assert_array_equal(np.asarray(score(x, labels)), 0.0)
  changes = {output: jax.jit(jax.vmap(functools.partial(adversarial.output_change, logits_fn, output=output)))
             for output in ("tv", "loss")}
  for x_adv in perturbations[("linf", 0.0)] + perturbations[("l2", 0.0)]:  # both outputs of every eps-0 attack
    for change in changes.values():
      np.testing.assert_array_equal(np.asarray(change(x, x_adv, labels)), 0.0)


def test_the_small_eps_limit_of_the_loss_variation_is_the_input_gradient_norm(trained, batch):
  """(l(FGSM_eps(x)) - l(x)) / eps -> || grad_x l ||_1 (l_inf) or _2 (l_2) as eps -> 0: finite differences. Real
  digits (many pixels at 0, which the clipped attack cannot lower) for l_inf; images inside (0, 1) for l_2. The
  examples with the largest loss among 400: float32 cannot resolve the loss change of a confident one."""
  logits_fn, _, _ = batch
  dataset = trained[2]
  pool = dataset.x_test[:400].astype(np.float32) / 255.0
  pool_loss = -np.asarray(jax.nn.log_softmax(logits_fn(pool)))[np.arange(400), dataset.y_test[:400]]
  hardest = np.argsort(-pool_loss)[:NUM]
  x, labels = pool[hardest], dataset.y_test[:400][hardest]
  loss = lambda z: -jax.vmap(lambda zi, yi: jax.nn.log_softmax(logits_fn(zi[None])[0])[yi])(z, labels)  # noqa: E731
  for norm, images in (("linf", x), ("l2", 0.1 + 0.8 * x)):
    gn = np.asarray(jax.jit(jax.vmap(functools.partial(adversarial.grad_norm_signal, logits_fn, key=None,
                                                       norm=norm)))(images, labels))
    fgsm = jax.jit(jax.vmap(functools.partial(adversarial.fgsm, logits_fn, norm=norm), in_axes=(0, 0, None)))
    errors = []
    for eps in (1e-2, 1e-3, 1e-4):
      finite = np.asarray(loss(fgsm(images, labels, np.float32(eps))) - loss(images)) / eps
      errors.append(np.median(np.abs(finite - gn) / gn))
    # first order: the error falls about tenfold per decade of eps (measured 0.30, 0.030, 0.0030 for l_inf)
    assert errors[2] < 0.01 and errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3, (norm, errors)


def _target(trained, mesh, tmp_path, name):
  model, variables, dataset, mean, std = trained
  return target_lib.Target(label=name, cache_path=str(tmp_path / f"{name}.npz"), source=ExampleSource(dataset),
                           model=model, load_variables=lambda: jax.device_put(variables, NamedSharding(mesh, P())),
                           mean=mean, std=std, mesh=mesh)


SIGNALS = {  # the signals whose invariance is checked: random draws (PGD random start, HopSkipJump) included
    "tv": adversarial_signals.Signal.make("tv", 5, eps=8 / 255, norm="linf", steps=2, step_fraction=0.5,
                                          random_start=True, output="tv", per_eps=False),
    "hsj": adversarial_signals.Signal.make("hsj_distance", 1, iterations=2, init_eval=8, max_eval=16, init_size=10),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_signals_do_not_depend_on_batch_size_order_or_device_count(trained, tmp_path, name):
  signal = SIGNALS[name]
  n_train = len(trained[2].y_train)
  ids = np.r_[np.arange(0, 40, 3), n_train + np.arange(5, 40, 4)]  # members and non-members, 24 of them
  eight = _target(trained, inference.make_mesh(), tmp_path, "eight")
  one = _target(trained, Mesh(np.asarray(jax.devices()[:1]), (inference.DATA_AXIS,)), tmp_path, "one")
  assert eight.mesh.size == 8
  reference = adversarial_signals.evaluate(signal, eight, ids, 16)  # batches of 16 and 8 (8 of them padding)
  order = np.random.default_rng(0).permutation(len(ids))
  shuffled = adversarial_signals.evaluate(signal, eight, ids[order], 16)
  np.testing.assert_allclose(shuffled, reference[order], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(adversarial_signals.evaluate(signal, one, ids, 16), reference, rtol=1e-5, atol=1e-6)
  if name == "tv":  # batches of 24 (3 per device) instead of 16 (2 per device)
    np.testing.assert_allclose(adversarial_signals.evaluate(signal, eight, ids, 24), reference, rtol=1e-5, atol=1e-6)
  other = adversarial_signals.Signal(signal.kind, signal.options, signal.seed + 1)  # the random draws matter
  assert not np.allclose(adversarial_signals.evaluate(other, eight, ids, 16), reference)


def test_cached_signals_are_reused_and_extended(trained, tmp_path):
  target = _target(trained, inference.make_mesh(), tmp_path, "cached")
  signal = adversarial_signals.Signal.make("grad_norm", norm="linf")
  first = adversarial_signals.compute(signal, target, np.array([5, 3, 9]), 8)
  both = adversarial_signals.compute(signal, target, np.array([9, 11, 5]), 8)
  np.testing.assert_array_equal(both[[0, 2]], first[[2, 0]])
  cached = np.load(adversarial_signals.cache_path(target, signal))
  np.testing.assert_array_equal(cached["ids"], [3, 5, 9, 11])
  assert str(cached["signal"]) == signal.describe()


def test_label_only_augmentations_and_query_budget():
  x = jnp.arange(16, dtype=jnp.float32).reshape(4, 4, 1)
  views = np.asarray(label_only.augmentations(x, 1, True))
  assert views.shape == (18, 4, 4, 1)
  np.testing.assert_array_equal(views[4], x)  # shift (0, 0) of the unflipped image
  np.testing.assert_array_equal(views[13], x[:, ::-1])
  np.testing.assert_array_equal(views[5][:, 1:], x[:, :-1])  # shift (0, +1) moves the image right, zero fill
  np.testing.assert_array_equal(views[5][:, 0], 0)
  np.testing.assert_array_equal(views[1][:-1], x[1:])  # shift (-1, 0) moves it up
  np.testing.assert_array_equal(views[1][-1], 0)
  assert label_only.query_budget(64, iterations=2, init_eval=8, max_eval=16, init_size=10) == (
      1 + 10 + 10 + 2 * (10 + 30) + 8 + 11)


@pytest.mark.parametrize("config,message", [
    ({"type": "adversarial_tv", "eps": -0.1}, "option eps must be a number >= 0"),
    ({"type": "adversarial_tv", "norm": "l1"}, "option norm must be one of linf, l2"),
    ({"type": "hopskipjump", "init_eval": 100, "max_eval": 10}, "option max_eval must be >= init_eval"),
    ({"type": "minimal_perturbation", "steps": 0}, "option steps must be an int >= 1"),
    ({"type": "augmentation_robustness", "direction": "up"}, "option direction must be one of auto"),
    ({"type": "adversarial_features", "signals": {"a": {"type": "threshold_loss"}}}, "option signals must be"),
])
def test_bad_options_are_refused_in_one_line(config, message):
  with pytest.raises(AttackError, match=message):
    registry.make_attack(config)


def test_hopskipjump_distances_agree_with_arts(trained, tmp_path):
  """The same model, examples and budget through ART's HopSkipJump (a BlackBoxClassifier answering labels only):
  the distances agree in distribution (benchmarks/hsj_vs_art.py runs the larger comparison of docs/adversarial.md)."""
  pytest.importorskip("art", reason="adversarial-robustness-toolbox not installed (pip install -e '.[art]')")
  from art.attacks.evasion import HopSkipJump
  from art.estimators.classification import BlackBoxClassifier
  from scipy import stats
  model, variables, dataset, mean, std = trained
  ids = len(dataset.y_train) + np.arange(24)
  ours = adversarial_signals.evaluate(SIGNALS["hsj"], _target(trained, inference.make_mesh(), tmp_path, "hsj"), ids,
                                      16)
  logits_fn = jax.jit(adversarial.pixel_logits_fn(model, variables, mean, std))
  predict = lambda z: np.eye(10, dtype=np.float32)[np.asarray(logits_fn(z)).argmax(1)]  # noqa: E731
  x = dataset.x_test[:24].astype(np.float32) / 255.0
  options = dict(SIGNALS["hsj"].options)
  np.random.seed(0)
  x_adv = HopSkipJump(BlackBoxClassifier(predict, (8, 8, 1), 10, clip_values=(0.0, 1.0)), norm=2, verbose=False,
                      max_iter=options["iterations"], init_eval=options["init_eval"], max_eval=options["max_eval"],
                      init_size=options["init_size"]).generate(x)
  art = np.linalg.norm((x_adv - x).reshape(24, -1), axis=1)
  searched = (predict(x).argmax(1) == dataset.y_test[:24]) & (ours > 0)
  np.testing.assert_array_equal(ours[~searched], 0.0)  # misclassified: distance 0, as ART's membership attack sets
  ours, art = ours[searched], art[searched]
  assert 0.75 < np.median(ours) / np.median(art) < 1.33, (np.median(ours), np.median(art))
  assert stats.ks_2samp(ours, art).pvalue > 0.05
  assert stats.spearmanr(ours, art).statistic > 0.5  # the same examples are near / far from the boundary


def test_smoothing_answers_the_mean_softmax_over_fixed_noise(trained, tmp_path):
  model, variables, dataset, mean, std = trained
  smoothed = smoothing.SmoothedModel(model, 0.1, 5, tuple(np.ravel(std).tolist()), seed=2)
  x = (dataset.x_test[:6].astype(np.float32) / 255.0 - mean) / std
  noise = np.asarray(jax.random.normal(jax.random.key(2, impl="threefry2x32"), (5, 8, 8, 1))) * 0.1 / std
  apply = jax.jit(lambda z: model.apply(variables, z, train=False))
  probs = np.mean([np.asarray(jax.nn.softmax(apply(x + n))) for n in noise], axis=0)
  np.testing.assert_allclose(np.exp(np.asarray(jax.jit(smoothed.apply)(variables, x))), probs, rtol=1e-5, atol=1e-6)
  exact = smoothing.SmoothedModel(model, 0.0, 3, tuple(np.ravel(std).tolist()))
  np.testing.assert_allclose(np.asarray(jax.jit(exact.apply)(variables, x)), np.asarray(jax.nn.log_softmax(apply(x))),
                             atol=1e-5)
  target = smoothing.smoothed_target(_target(trained, inference.make_mesh(), tmp_path, "cnn"), "cnn~smooth",
                                     str(tmp_path / "cnn~smooth.npz"), sigma=0.1, num_samples=5, seed=2)
  assert target.model == smoothed and target.variables is not None
  np.testing.assert_allclose(target.outputs(len(dataset.y_train) + np.arange(6)).probs, probs, rtol=1e-5, atol=1e-6)


def test_the_penalised_step_is_the_plain_step_at_weight_zero_and_flattens_the_loss(trained):
  """The `input_gradient_penalty` step hook (it replaces the step's objective) at weight 0 is the plain step."""
  model, variables, dataset, mean, std = trained
  tx = optax.sgd(0.05)
  mask = jax.tree.map(lambda p: np.ones(p.shape, bool), variables["params"])
  start = lambda weight: train_state.create_state(  # noqa: E731
      variables["params"], variables["batch_stats"], mask, tx,
      extra=None if weight is None else {"input_gradient_penalty": np.float32(weight)})
  step = jax.jit(functools.partial(train_lib.train_step, model=model, tx=tx, seed=0, augment_kind="none", mean=mean,
                                   std=std))
  images, labels = dataset.x_test[:40], dataset.y_test[:40]
  a, b = step(start(None), images, labels)[0], step(start(0.0), images, labels)[0]
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), (a.params, a.batch_stats),
               (b.params, b.batch_stats))
  states = {"plain": start(None), "penalised": start(0.01)}  # a weight of 1 diverges at this learning rate
  for _ in range(6):
    states = {name: step(state, images, labels)[0] for name, state in states.items()}
  norms = {}
  for name, state in states.items():
    logits_fn = adversarial.pixel_logits_fn(model, {"params": state.params, "batch_stats": state.batch_stats}, mean,
                                            std)
    norms[name] = float(np.mean(jax.vmap(functools.partial(adversarial.grad_norm_signal, logits_fn, key=None,
                                                           norm="l2"))(images / 255.0, labels)))
  assert norms["penalised"] < 0.8 * norms["plain"], norms
