"""ResNet variants pinned by parameter count (jax.eval_shape: no memory, no compute) and basic behaviour."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mialth_jax.models import resnet


def _num_params(name, num_classes, stem, size, width=1.0):
  model = resnet.create_model(name, num_classes, stem, width)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name,num_classes,stem,size,expected", [
    ("resnet18", 10, "cifar", 32, 11_173_962),       # kuangliu/pytorch-cifar ResNet18
    ("resnet50", 1000, "imagenet", 224, 25_557_032),  # torchvision resnet50
    ("resnet18", 1000, "imagenet", 224, 11_689_512),  # torchvision resnet18
    ("resnet34", 1000, "imagenet", 224, 21_797_672),  # torchvision resnet34
])
def test_parameter_counts_match_reference(name, num_classes, stem, size, expected):
  assert _num_params(name, num_classes, stem, size) == expected


def test_width_multiplier_scales_channels():
  model = resnet.create_model("resnet18", 10, "cifar", 0.25)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  assert shapes["params"]["stem_conv"]["kernel"].shape == (3, 3, 3, 16)
  assert shapes["params"]["head"]["kernel"].shape == (128, 10)


def test_each_stage_rounds_its_own_channels():
  assert resnet.stage_channels(0.25, 4) == (16, 32, 64, 128)  # on the 1/64 grid: doubling per stage
  assert resnet.stage_channels(0.3, 4) == (19, 38, 77, 154)   # 19.2, 38.4, 76.8, 153.6 rounded one by one
  model = resnet.create_model("resnet18", 10, "cifar", 0.3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))["params"]
  assert shapes["stem_conv"]["kernel"].shape == (3, 3, 3, 19)
  assert shapes["stage3_block0"]["conv1"]["kernel"].shape == (3, 3, 38, 77)
  assert shapes["head"]["kernel"].shape == (154, 10)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = resnet.create_model("resnet18", 7, "cifar", 0.125, dtype="bfloat16")
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  logits = model.apply(variables, jnp.ones((2, 8, 8, 1)))
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert {x.dtype for x in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}


def test_train_mode_updates_batch_stats_eval_mode_does_not():
  model = resnet.create_model("resnet18", 3, "cifar", 0.125)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((4, 8, 8, 1)))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1)) * 3 + 1
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  mean_before = variables["batch_stats"]["stem_bn"]["mean"]
  assert not np.allclose(updates["batch_stats"]["stem_bn"]["mean"], mean_before)
  _, unchanged = model.apply(variables, x, train=False, mutable=["batch_stats"])
  for a, b in zip(jax.tree.leaves(unchanged["batch_stats"]), jax.tree.leaves(variables["batch_stats"])):
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="resnet19"), "model.name='resnet19' is unknown"),
    (dict(stem="tiny"), "model.stem='tiny' is unknown"),
    (dict(dtype="float16"), "model.dtype='float16' is unknown"),
    (dict(width_multiplier=0.0), "model.width_multiplier must be > 0"),
])
def test_bad_model_settings_are_named(kwargs, message):
  args = dict(name="resnet18", num_classes=10, stem="cifar", width_multiplier=1.0, dtype="float32") | kwargs
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    resnet.create_model(**args)
