"""The narrow dense control (lottery/narrow.py, issue 27): a dense network with as many trainable parameters as a
ticket keeps, checked against counts made here: parameter shapes from `model.init`, and the ticket's mask made by the
package's own pruning of random weights."""
import types

import jax
import numpy as np
import pytest

from configs import cifar10_resnet18, default
from mialth_jax import errors
from mialth_jax.data import load_dataset
from mialth_jax.lottery import masks, narrow
from mialth_jax.models import resnet

CIFAR10 = types.SimpleNamespace(image_shape=(32, 32, 3), num_classes=10)  # the subset's shapes, without its file


def _params(config, dataset, width):
  model = resnet.create_model(config.model.name, dataset.num_classes, config.model.stem, width)
  images = np.zeros((1, *dataset.image_shape), np.uint8)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]


def _size(params) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _ticket_kept(config, dataset, sparsity) -> int:
  """Nonzero trainable parameters of a ticket: a mask pruned from random weights, its True entries counted, plus
  every parameter the mask leaves out of pruning."""
  shapes = _params(config, dataset, config.model.width_multiplier)
  rng = np.random.default_rng(0)
  weights = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
  lottery = config.lottery
  is_prunable = masks.prunable_predicate(lottery.prunable, lottery.keep_first_conv, lottery.keep_classifier)
  mask = masks.prune(weights, masks.dense_mask(weights, is_prunable), sparsity, lottery.rule)
  return sum(int(m.sum()) if np.ndim(m) else w.size for w, m in zip(jax.tree.leaves(weights), jax.tree.leaves(mask)))


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9])
@pytest.mark.parametrize("name,config,dataset", [("digits", default.get_config(), None),  # loads digits itself
                                                 ("cifar10_subset", cifar10_resnet18.get_config("subset"), CIFAR10)])
def test_the_narrow_dense_model_has_the_tickets_kept_weights_within_2_percent(name, config, dataset, sparsity):
  width = narrow.matched_width(config, sparsity, dataset)
  shapes = dataset or load_dataset(config.data)
  kept = _ticket_kept(config, shapes, sparsity)
  assert narrow.ticket_count(config, sparsity, shapes) == kept
  assert width < config.model.width_multiplier
  assert abs(_size(_params(config, shapes, width)) - kept) / kept <= 0.02, name


def test_the_narrow_config_is_the_reference_at_the_matched_width():
  config = default.get_config()
  control = narrow.narrow_config(config, 0.8)
  assert control.model.width_multiplier == narrow.matched_width(config, 0.8)
  assert control.controls.narrow_of_sparsity == 0.8 and config.controls.narrow_of_sparsity == 0.0
  control.model.width_multiplier, control.controls.narrow_of_sparsity = config.model.width_multiplier, 0.0
  assert control.to_dict() == config.to_dict()


def test_no_width_within_the_tolerance_is_a_config_error():
  smoke = cifar10_resnet18.get_config("smoke")  # 4 first-stage channels: at 90 % the ticket falls between two widths
  kept = _ticket_kept(smoke, CIFAR10, 0.9)
  with pytest.raises(errors.ConfigError, match=rf"no width of resnet18 matches the ticket at sparsity 0.9: it keeps "
                                               rf"{kept:,} weights.*% off \(tolerance 2.00%\)"):
    narrow.matched_width(smoke, 0.9, CIFAR10)
  with pytest.raises(errors.ConfigError, match=r"tolerance 0.00%"):
    narrow.matched_width(cifar10_resnet18.get_config("subset"), 0.8, CIFAR10, tolerance=1e-6)
