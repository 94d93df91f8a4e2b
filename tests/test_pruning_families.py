"""Pruning at initialisation (SNIP, GraSP, SynFlow), channel and N:M pruning: each score or mask against an
independent computation (issue 30), and the settings that are refused."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mialth_jax import config_lib, errors, run_dir
from mialth_jax.lottery import at_init, init_scores, masks, recipes
from mialth_jax.models import resnet
from mialth_jax.utils import config_sections


class TinyNet(nn.Module):
  """Convolution, BatchNorm, ReLU, classifier: the parts of the ResNet that the scores pass through, small enough to
  compile in a second (the ResNet itself is scored in the end-to-end test)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(6, (3, 3), use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def network():
  """A tiny convolutional network, its w0, and a batch of 16 normalised 8x8 images with labels."""
  model = TinyNet()
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))
  x = np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype(np.float32)
  labels = np.random.default_rng(2).integers(0, 10, 16)
  return model, variables, x, labels


@pytest.fixture(scope="module")
def params():
  model = resnet.create_model("resnet18", 10, "cifar", 0.125)
  return jax.device_get(model.init(jax.random.PRNGKey(3), jnp.zeros((1, 8, 8, 3)))["params"])


def _kernels(tree, mask):
  return {masks.path_name(p): np.asarray(x) for (p, x), m in zip(jax.tree_util.tree_leaves_with_path(tree),
                                                                  jax.tree.leaves(mask)) if np.ndim(m)}


def _train_mode_loss(model, variables, x, labels, temperature=1.0):
  """The batch's mean cross-entropy in train mode, written out here (not the package's loss)."""
  def loss(params):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                            mutable=["batch_stats"])
    return jnp.mean(optax.softmax_cross_entropy(logits / temperature, jax.nn.one_hot(labels, 10)))
  return loss


def _assert_close(got, expected, rtol):
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * np.abs(e).max())


def test_snip_saliency_is_abs_gradient_times_weight_on_a_batch(network):
  model, variables, x, labels = network
  scores = at_init.data_scores(init_scores.snip_scores, model, variables, x, labels)
  grads = jax.jit(jax.grad(_train_mode_loss(model, variables, x, labels)))(variables["params"])
  _assert_close(scores, jax.tree.map(lambda g, w: np.abs(g * w), grads, variables["params"]), 1e-4)
  # The mask prunes exactly round(0.8 n) weights and every kept score is at least every pruned one.
  dense = masks.dense_mask(variables["params"], masks.prunable_predicate(r"kernel$"))
  mask = masks.prune_by_scores(scores, dense, 0.8, "global")
  pairs = list(zip(_kernels(scores, dense).values(), _kernels(mask, dense).values()))
  kept, pruned = np.concatenate([s[m] for s, m in pairs]), np.concatenate([s[~m] for s, m in pairs])
  assert len(pruned) == round(0.8 * (len(kept) + len(pruned))) and kept.min() >= pruned.max()


def _mlp(rng):
  """A two-layer tanh network's parameters and the loss of a batch (float64 inside jax.enable_x64)."""
  params = {"w1": rng.normal(size=(6, 5)), "w2": rng.normal(size=(5, 3))}
  x, labels = rng.normal(size=(7, 6)), rng.integers(0, 3, 7)
  return params, lambda p: jnp.mean(optax.softmax_cross_entropy(jnp.tanh(x @ p["w1"]) @ p["w2"],
                                                                  jax.nn.one_hot(labels, 3)))


def test_snip_saliency_is_lee_et_al_connection_sensitivity():
  """|dL/dc| at c = 1 for the network with weights c * w (Lee et al.'s definition)."""
  with jax.enable_x64(True):
    params, loss = _mlp(np.random.default_rng(7))
    sensitivity = jax.grad(lambda c: loss(jax.tree.map(jnp.multiply, c, params)))(jax.tree.map(np.ones_like, params))
    _assert_close(init_scores.snip_scores(loss, params), jax.tree.map(np.abs, sensitivity), 1e-12)


def test_grasp_score_is_minus_w_times_hessian_gradient_by_finite_differences():
  with jax.enable_x64(True):  # float64: central differences of the gradient are then exact to ~1e-9
    params, loss = _mlp(np.random.default_rng(4))
    grad = jax.grad(loss)
    g = grad(params)
    shifted = lambda sign: grad(jax.tree.map(lambda w, d: w + sign * 1e-5 * d, params, g))  # noqa: E731
    hg = jax.tree.map(lambda a, b: (a - b) / 2e-5, shifted(1.0), shifted(-1.0))
    _assert_close(init_scores.grasp_scores(loss, params), jax.tree.map(lambda w, h: -w * h, params, hg), 1e-6)


def test_grasp_on_the_network_is_minus_w_times_hg_of_the_tempered_train_mode_loss(network):
  """H g by reverse over reverse, as Wang et al.'s code computes it: the gradient of z = stop_gradient(g) . grad L."""
  model, variables, x, labels = network
  scores = at_init.data_scores(init_scores.grasp_scores, model, variables, x, labels, temperature=2.0)
  grad = jax.grad(_train_mode_loss(model, variables, x, labels, 2.0))

  def by_hand(params):
    g = grad(params)
    z = lambda p: sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grad(p))))  # noqa: E731
    return jax.tree.map(lambda w, h: -w * h, params, jax.grad(z)(params))
  _assert_close(scores, jax.jit(by_hand)(variables["params"]), 1e-3)


def _linear_network(rng, sizes=(6, 5, 3)):
  params = {"w1": rng.normal(size=sizes[:2]).astype(np.float32), "w2": rng.normal(size=sizes[1:]).astype(np.float32)}
  return params, lambda p, x: x @ p["w1"] @ p["w2"]


def test_synflow_scores_of_a_two_layer_linear_network_are_the_closed_form():
  params, apply = _linear_network(np.random.default_rng(5))
  scores = init_scores.synflow_scores(apply, params, jnp.ones((1, 6)))
  a1, a2 = np.abs(params["w1"]), np.abs(params["w2"])
  # R = 1' |W1| |W2| 1: dR/d|W1|_ij = sum_k |W2|_jk, dR/d|W2|_jk = sum_i |W1|_ij
  np.testing.assert_allclose(scores["w1"], a1 * a2.sum(1)[None, :], rtol=1e-6)
  np.testing.assert_allclose(scores["w2"], a2 * a1.sum(0)[:, None], rtol=1e-6)


@pytest.mark.parametrize("scope", masks.SCOPES)
def test_synflow_schedule_reaches_the_density_exactly_through_nested_rounds(scope):
  params, apply = _linear_network(np.random.default_rng(6), (40, 30, 20))
  dense = {"w1": np.ones((40, 30), bool), "w2": np.ones((30, 20), bool)}
  seen = []

  def score_of(mask):
    seen.append(mask)
    return init_scores.synflow_scores(apply, masks.apply_mask(params, mask), jnp.ones((1, 40)))
  sparsity, rounds = 0.9, 100
  final = init_scores.synflow_mask(score_of, dense, sparsity, scope, rounds)
  rounds_masks = seen[1:] + [final]
  density = 1.0 - sparsity
  for r, mask in enumerate(rounds_masks, 1):
    target = sparsity if r == rounds else 1.0 - density ** (r / rounds)
    sizes = [1200, 600]
    expected = ([round(target * n) for n in sizes] if scope == "layerwise" else [round(target * sum(sizes))])
    pruned = [int((~mask[k]).sum()) for k in ("w1", "w2")]
    assert (pruned if scope == "layerwise" else [sum(pruned)]) == expected, r
  assert all(not np.any(b[k] & ~a[k]) for a, b in zip(seen[1:], rounds_masks[1:]) for k in ("w1", "w2"))
  assert len(seen) == rounds


def test_channel_l1_prunes_whole_filters_with_the_requested_count(params):
  dense = masks.dense_mask(params, masks.prunable_predicate(r"kernel$"))
  first = masks.prune(params, dense, 0.5, "channel_l1")
  second = masks.prune(params, first, 0.8, "channel_l1")  # IMP: a second round nests in the first
  weights = _kernels(params, dense)
  for sparsity, mask in ((0.5, first), (0.8, second)):
    for name, keep in _kernels(mask, dense).items():
      if keep.ndim == 2:
        assert keep.all(), name  # the classifier's output channels are the classes
        continue
      filters = keep.reshape(-1, keep.shape[-1])
      assert np.all(filters.all(0) | ~filters.any(0)), name  # each filter kept or pruned whole
      pruned = np.flatnonzero(~filters.any(0))
      assert len(pruned) == round(sparsity * keep.shape[-1]), name
      if sparsity == 0.5:
        norms = [np.abs(weights[name][..., o]).sum() for o in range(keep.shape[-1])]
        kept = np.setdiff1d(np.arange(keep.shape[-1]), pruned)
        assert max(norms[o] for o in pruned) <= min(norms[o] for o in kept), name
  assert all(not np.any(b & ~a) for a, b in zip(_kernels(first, dense).values(), _kernels(second, dense).values()))


@pytest.mark.parametrize("rule,n,m", [("nm", 2, 4), ("nm:1:4", 1, 4), ("nm:3:8", 3, 8)])
def test_nm_keeps_the_n_largest_of_every_m_along_the_input_axis(params, rule, n, m):
  dense = masks.dense_mask(params, masks.prunable_predicate(r"kernel$"))
  mask = masks.prune(params, dense, 1 - n / m, rule)
  weights = _kernels(params, dense)
  grouped = 0
  for name, keep in _kernels(mask, dense).items():
    w = weights[name]
    if w.shape[-2] % m:
      assert keep.all(), name  # the first convolution of a 3-channel image: left dense
      continue
    columns = np.moveaxis(w, -2, -1).reshape(-1, w.shape[-2])  # every (h, w, o) or (o,): its input axis
    kept = np.moveaxis(keep, -2, -1).reshape(-1, w.shape[-2])
    for column, kept_column in zip(columns, kept):
      for start in range(0, len(column), m):
        group, kept_here = np.abs(column[start:start + m]), kept_column[start:start + m]
        assert sorted(group[kept_here]) == sorted(group)[m - n:]  # the N largest values
        assert not kept_here[np.argsort(group, kind="stable")[:m - n]].any()  # ties: the lower position goes first
        grouped += 1
  assert grouped > 1000


def _config(**lottery):
  config = config_lib.base()
  for key, value in lottery.items():
    config.lottery[key] = value
  return config


@pytest.mark.parametrize("change,message", [
    ({"method": "lth"}, "lottery.method='lth' is unknown; expected one of oneshot, imp, snip, grasp, synflow"),
    ({"rule": "nm:4:4"}, "lottery.rule='nm:4:4': N:M keeps N of every M weights and needs 0 < N < M"),
    ({"rule": "nm:2-4"}, "lottery.rule='nm:2-4' is malformed; expected nm:N:M"),
    ({"rule": "nm:2:4:8"}, "lottery.rule='nm:2:4:8' is malformed"),
    ({"rule": "nm:a:b"}, "lottery.rule='nm:a:b' is malformed"),
    ({"rule": "nm"}, "lottery.sparsities: lottery.rule='nm' prunes exactly 0.5 of the weights, not 0.8, 0.9"),
    ({"rule": "nm", "sparsities": (0.5,), "method": "imp", "imp_rounds": 2},
     "lottery.sparsities: lottery.rule='nm' prunes exactly 0.5 of the weights, not 0.2, 0.36"),
    ({"rule": "channel_l1:2"}, "lottery.rule='channel_l1:2': the rule channel_l1 takes no ':' argument"),
    ({"rule": "snip"}, "lottery.rule='snip' is unknown"),
    ({"method": "snip", "rule": "layerwise_magnitude"}, "lottery.rule='layerwise_magnitude': lottery.method=snip"),
    ({"method": "grasp", "rewind_step": 2}, "lottery.rewind_step=2: lottery.method=grasp trains from w0"),
    ({"at_init": {"scope": "local"}}, "lottery.at_init.scope='local' is unknown; expected one of global, layerwise"),
    ({"at_init": {"synflow_rounds": 0}}, "lottery.at_init.synflow_rounds: expected a whole number >= 1, got 0"),
    ({"at_init": {"examples": -3}}, "lottery.at_init.examples: expected a whole number >= 1, got -3"),
    ({"at_init": {"grasp_temperature": 0.0}}, "lottery.at_init.grasp_temperature must be > 0, got 0.0"),
])
def test_bad_settings_are_refused_with_one_line_naming_the_field(change, message):
  _assert_refused(change, message)


def _assert_refused(change: dict, message: str) -> None:
  """`change` holds _config's arguments and the fields of the lottery.at_init / lottery.structured sections."""
  sections = ("at_init", "structured")
  config = _config(**{k: v for k, v in change.items() if k not in sections})
  for section in sections:
    for key, value in change.get(section, {}).items():
      config.lottery[section][key] = value
  with pytest.raises(errors.ConfigError) as refused:
    config_lib.validate(config)
  assert message in str(refused.value) and "\n" not in str(refused.value)


def test_families_run_side_by_side_from_lottery_controls_with_the_zoo():
  config = _config(sparsities=(0.5, 0.8), controls=("snip", "grasp", "synflow", "channel", "nm"))
  config.lottery.structured.channel_sparsities = (0.5,)
  config.attacks.protocols = ("paper", "zoo")
  config_lib.validate(config)  # the zoo repeats every family
  assert [(s.name, s.kind, s.sparsity, s.mask_from, s.rule) for s in recipes.plan(config)] == [
      ("dense", "dense", 0.0, "", ""),
      ("ticket_s50", "ticket", 0.5, "dense", "global_magnitude"), ("ticket_s80", "ticket", 0.8, "dense",
                                                                   "global_magnitude"),
      ("snip_s50", "snip", 0.5, "w0", "global"), ("snip_s80", "snip", 0.8, "w0", "global"),
      ("grasp_s50", "grasp", 0.5, "w0", "global"), ("grasp_s80", "grasp", 0.8, "w0", "global"),
      ("synflow_s50", "synflow", 0.5, "w0", "global"), ("synflow_s80", "synflow", 0.8, "w0", "global"),
      ("channel_s50", "channel", 0.5, "dense", "channel_l1"), ("nm2of4_s50", "nm", 0.5, "dense", "nm:2:4")]
  assert all(issubclass(recipes.RECIPES[s.kind], recipes.OwnMask) for s in recipes.plan(config))  # in the zoo
  config.lottery.structured.nm, config.lottery.controls = "1:4", ("nm",)
  assert [(s.name, s.sparsity) for s in recipes.plan(config)][-1] == ("nm1of4_s75", 0.75)
  # A method listed in lottery.controls too is planned once; the method alone plans as before.
  config.lottery.method, config.lottery.controls = "channel", ("channel", "random_reinit")
  assert [s.name for s in recipes.plan(config)] == ["dense", "channel_s50", "random_reinit_s50"]
  with pytest.raises(errors.ConfigError, match=r"^lottery.controls: random_prune_s50, random_prune_s80 would be "
                                               r"planned twice"):
    config_lib.validate(_config(sparsities=(0.5, 0.8), controls=("snip", "random_prune")))  # ticket_s50's, snip_s50's


@pytest.mark.parametrize("change,message", [
    ({"structured": {"nm": "2-4"}}, "lottery.structured.nm='nm:2-4' is malformed; expected nm:N:M"),
    ({"structured": {"nm": "4:2"}}, "lottery.structured.nm='nm:4:2': N:M keeps N of every M weights"),
    ({"structured": {"channel_sparsities": (1.0,)}}, "lottery.structured.channel_sparsities: 1.0 is outside [0, 1)"),
    ({"method": "nm", "rule": "random"}, "lottery.rule='random': lottery.method=nm prunes by its own rule"),
])
def test_bad_structured_settings_are_refused_naming_the_field(change, message):
  _assert_refused(change, message)


def test_each_family_is_planned_as_tickets_and_listed_by_the_help():
  config = _config(method="snip", controls=("random_reinit",))
  config_lib.validate(config)
  plan = recipes.plan(config)
  assert [(s.name, s.kind, s.mask_from, s.rule) for s in plan[:4]] == [
      ("dense", "dense", "", ""), ("snip_s50", "snip", "w0", "global"), ("snip_s80", "snip", "w0", "global"),
      ("snip_s90", "snip", "w0", "global")]
  assert [s.mask_from for s in plan[4:]] == ["snip_s50", "snip_s80", "snip_s90"]  # controls made for them
  assert {"snip", "grasp", "synflow"} <= set(recipes.ticket_kinds())
  config_lib.validate(_config(rule="nm:1:4", sparsities=(0.75,)))
  config_lib.validate(_config(rule="channel_l1", method="imp", imp_rounds=2))
  described = {name: comment for name, _, comment in config_sections.describe(config_lib.base())}
  assert all(f"{name} (" in described["lottery.method"] for name in ("oneshot", "imp", "snip", "grasp", "synflow",
                                                                      "channel", "nm"))
  assert "global_magnitude | layerwise_magnitude | random | channel_l1 (" in described["lottery.rule"]
  assert "| nm (nm:N:M keeps the N largest |w| of every M" in described["lottery.rule"]


def test_a_run_folder_takes_the_families_as_added_models_but_not_other_scores():
  """The families experiment relaunched on a sparsity-vs-fit folder adds channel and N:M models (their names carry
  the settings) and keeps its dense model and tickets; another SNIP batch would change models already trained."""
  held = json.loads(_config().to_json())
  families = _config(controls=("snip", "channel", "nm"))
  families.lottery.structured.channel_sparsities, families.lottery.structured.nm = (0.5,), "1:4"
  assert run_dir.differing_fields(held, json.loads(families.to_json())) == []
  families.lottery.at_init.examples += 1
  assert run_dir.differing_fields(held, json.loads(families.to_json())) == ["lottery.at_init.examples"]


def _expected_pruned(shapes: list[tuple], family: str, sparsity: float) -> int:
  """The weights a family prunes, from the prunable kernels' shapes alone: round(s n) for the scores of pruning at
  initialisation; round(s O) whole filters of every convolution for channel_l1; half of every kernel whose input
  axis is a multiple of 4 for 2:4."""
  if family == "channel_l1":
    return sum(round(sparsity * s[-1]) * int(np.prod(s[:-1])) for s in shapes if len(s) == 4)
  if family == "nm":
    return sum(int(np.prod(s)) // 2 for s in shapes if s[-2] % 4 == 0)
  return round(sparsity * sum(int(np.prod(s)) for s in shapes))


@pytest.mark.slow
@pytest.mark.parametrize("family,lottery", [
    ("snip", {"method": "snip"}), ("grasp", {"method": "grasp"}),
    ("synflow", {"method": "synflow", "at_init": {"synflow_rounds": 10}}),
    ("channel_l1", {"rule": "channel_l1"}), ("nm", {"rule": "nm", "sparsities": (0.5,)})])
def test_a_launch_of_each_family_trains_attacks_and_judges_its_pruned_model(tmp_path, family, lottery):
  from mialth_jax.experiments import launch, verdict
  from mialth_jax.layout import RunLayout
  config = _config(**{"sparsities": (0.8,), **{k: v for k, v in lottery.items() if k != "at_init"}})
  for key, value in lottery.get("at_init", {}).items():
    config.lottery.at_init[key] = value
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 4
  config.train.eval_every_epochs = 1.0
  config.attacks.models = {"loss": {"type": "threshold_loss"}}
  config.attacks.num_bootstrap = 50
  results = launch.run(config, str(tmp_path))
  layout = RunLayout(str(tmp_path))
  summaries = layout.summaries()
  name = next(n for n, s in summaries.items() if s["kind"] != "dense")
  sparsity = summaries[name]["sparsity"]
  mask = jax.device_get(masks.dense_mask(jax.eval_shape(lambda: resnet.create_model(
      "resnet18", 10, "cifar", 0.0625).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))["params"],
      masks.prunable_predicate(r"kernel$")))
  shapes = [np.shape(m) for m in jax.tree.leaves(mask) if np.ndim(m)]
  total = sum(int(np.prod(s)) for s in shapes)
  assert sparsity == float(1 - (total - _expected_pruned(shapes, family, config.lottery.sparsities[0])) / total)
  assert summaries[name]["kind"] in recipes.ticket_kinds()
  assert any(r["protocol"] == "paper" and r["target"] == name for r in results)
  judged = verdict.judge(str(tmp_path))
  assert [c.ticket for c in judged.comparisons] == [name], judged.notes
