"""Pruning rules: exact counts, the definitions of global vs layer-wise, what is never pruned, IMP nesting."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mialth_jax.lottery import masks
from mialth_jax.models import resnet


@pytest.fixture(scope="module")
def params():
  model = resnet.create_model("resnet18", 10, "cifar", 0.125)
  return jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"])


@pytest.fixture(scope="module")
def dense(params):
  return masks.dense_mask(params, masks.prunable_predicate(r"kernel$"))


def _prunable(mask):
  return {masks.path_name(p): np.asarray(m) for p, m in jax.tree_util.tree_leaves_with_path(mask) if np.ndim(m)}


def _weights(params, mask):
  names = _prunable(mask)
  return {masks.path_name(p): np.asarray(w) for p, w in jax.tree_util.tree_leaves_with_path(params)
          if masks.path_name(p) in names}


@pytest.mark.parametrize("rule", ["global_magnitude", "layerwise_magnitude", "random"])  # rules of any sparsity
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.95, 0.999])
def test_prune_removes_exactly_round_p_n(params, dense, rule, sparsity):
  mask = masks.prune(params, dense, sparsity, rule, seed=3)
  leaves = _prunable(mask)
  n = sum(m.size for m in leaves.values())
  pruned = sum(int((~m).sum()) for m in leaves.values())
  if rule == "layerwise_magnitude":
    assert pruned == sum(round(sparsity * m.size) for m in leaves.values())
  else:
    assert pruned == round(sparsity * n)
  assert masks.sparsity_report(mask)["pruned"] == pruned


def test_global_magnitude_uses_one_threshold_across_layers(params, dense):
  mask = masks.prune(params, dense, 0.8, "global_magnitude")
  weights, leaves = _weights(params, mask), _prunable(mask)
  kept = np.concatenate([np.abs(weights[k][leaves[k]]) for k in leaves])
  pruned = np.concatenate([np.abs(weights[k][~leaves[k]]) for k in leaves])
  assert pruned.max() <= kept.min()
  per_layer = [1 - m.mean() for m in leaves.values()]
  assert max(per_layer) - min(per_layer) > 0.1  # layers end up with different sparsities


def test_layerwise_magnitude_uses_one_threshold_per_layer(params, dense):
  mask = masks.prune(params, dense, 0.8, "layerwise_magnitude")
  weights, leaves = _weights(params, mask), _prunable(mask)
  for name, m in leaves.items():
    assert (~m).sum() == round(0.8 * m.size)
    assert np.abs(weights[name][~m]).max() <= np.abs(weights[name][m]).min()


def test_random_has_same_per_layer_counts_as_global_but_other_positions(params, dense):
  magnitude = _prunable(masks.prune(params, dense, 0.8, "global_magnitude"))
  random = _prunable(masks.prune(params, dense, 0.8, "random", seed=1))
  for name in magnitude:
    assert magnitude[name].sum() == random[name].sum()
  overlap = np.mean(np.concatenate([(magnitude[k] == random[k]).ravel() for k in magnitude]))
  assert overlap < 0.9
  again = _prunable(masks.prune(params, dense, 0.8, "random", seed=1))
  assert all(np.array_equal(again[k], random[k]) for k in random)


def test_batchnorm_and_biases_are_never_pruned(params, dense):
  mask = masks.prune(params, dense, 0.95, "global_magnitude")
  for path, m in jax.tree_util.tree_leaves_with_path(mask):
    name = masks.path_name(path)
    if name.endswith(("scale", "bias")):
      assert np.ndim(m) == 0 and bool(m)
  assert set(_prunable(mask)) == {n for n in _prunable(dense)}
  assert all(n.endswith("kernel") for n in _prunable(mask))


def test_keep_first_conv_and_classifier(params):
  keep = masks.dense_mask(params, masks.prunable_predicate(r"kernel$", keep_first_conv=True, keep_classifier=True))
  names = set(_prunable(keep))
  assert "stem_conv/kernel" not in names and "head/kernel" not in names and "stage1_block0/conv1/kernel" in names


def test_ties_are_broken_by_position():
  params = {"a": {"kernel": np.ones((4, 4), np.float32)}, "b": {"kernel": np.ones((2, 2), np.float32)}}
  dense = masks.dense_mask(params, masks.prunable_predicate("kernel$"))
  mask = masks.prune(params, dense, 0.5, "global_magnitude")
  # 20 equal weights, 10 pruned: the first 10 in leaf order (a's 16 come first).
  assert (~mask["a"]["kernel"]).ravel().tolist() == [True] * 10 + [False] * 6
  assert mask["b"]["kernel"].all()


@pytest.mark.parametrize("rule", ["global_magnitude", "layerwise_magnitude"])
def test_imp_density_is_exact_and_masks_nest(params, dense, rule):
  f, mask, previous = 0.2, dense, dense
  n = masks.sparsity_report(dense)["total"]
  rng = np.random.default_rng(0)
  for rounds in range(1, 6):
    # Retraining changes the weights between rounds; simulate that with fresh random weights.
    params = jax.tree.map(lambda w: rng.normal(size=np.shape(w)).astype(np.float32), params)
    mask = masks.prune(params, previous, masks.imp_sparsity(f, rounds), rule)
    report = masks.sparsity_report(mask)
    if rule == "global_magnitude":
      assert report["kept"] == n - round((1 - (1 - f) ** rounds) * n)
    assert report["sparsity"] == pytest.approx(1 - (1 - f) ** rounds, abs=1e-3)
    for new, old in zip(_prunable(mask).values(), _prunable(previous).values()):
      assert not np.any(new & ~old)  # nothing pruned comes back
    previous = mask


def test_apply_mask_gives_exact_positive_zeros():
  x = {"w": jnp.array([-1.5, 2.0, -0.0, 3.0])}
  out = masks.apply_mask(x, {"w": np.array([False, True, False, True])})
  assert np.array_equal(np.asarray(out["w"]), [0.0, 2.0, 0.0, 3.0])
  assert not np.signbit(np.asarray(out["w"])[0])


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_refused(params, dense, sparsity):
  with pytest.raises(ValueError, match=r"is outside \[0, 1\)"):
    masks.prune(params, dense, sparsity, "global_magnitude")


def test_unknown_rule_and_bad_regex_are_named(params, dense):
  with pytest.raises(ValueError, match="lottery.rule='snip' is unknown"):
    masks.prune(params, dense, 0.5, "snip")
  with pytest.raises(ValueError, match="lottery.prunable="):
    masks.prunable_predicate("kernel(")
  with pytest.raises(ValueError, match="matches no parameter"):
    masks.dense_mask(params, masks.prunable_predicate("nothing_matches"))
