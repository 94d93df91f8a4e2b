"""PyTorch parity: converted state dicts give PyTorch's logits; a step from the same state gives PyTorch's loss and
update; the learning-rate schedule written out for PyTorch is Optax's. Skipped where torch is not installed."""
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch parity checks need torch: pip install -e '.[torch]'")

from mialth_jax import errors  # noqa: E402
from mialth_jax.experiments import torch_parity as parity  # noqa: E402
from mialth_jax.lottery import train_state  # noqa: E402
from mialth_jax.models import resnet, torch_convert, torch_reference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.2, 0.25, 0.3], np.float32)


def _torch_model(name, layout, stem, size):
  """A width-1/8 PyTorch ResNet whose running statistics moved off their defaults, and its eval-mode logits."""
  torch.manual_seed(0)
  model = torch_reference.ResNet(name, 10, layout, stem, 0.125)
  images = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
  with torch.no_grad():
    for _ in range(2):
      model(torch_reference.to_nchw(images, MEAN, STD))  # train mode: updates running_mean / running_var
    model.eval()
    logits = model(torch_reference.to_nchw(images, MEAN, STD)).numpy()
  return model, images, logits


def _flax_logits(model, name, stem, size, layout, images, padding):
  flax_model = resnet.create_model(name, 10, stem, 0.125, padding=padding)
  template = jax.eval_shape(lambda: flax_model.init(jax.random.PRNGKey(0), np.zeros((1, size, size, 3))))
  variables = torch_convert.flax_variables(model.state_dict(), template, layout)
  return np.asarray(flax_model.apply(variables, ((images / 255.0 - MEAN) / STD).astype(np.float32)))


@pytest.mark.parametrize("name,layout,stem,size", [
    ("resnet18", "cifar", "cifar", 32),             # kuangliu/pytorch-cifar
    ("resnet18", "torchvision", "cifar", 32),       # torchvision with the CIFAR stem
    ("resnet50", "torchvision", "imagenet", 32),    # torchvision as it ships
    ("resnet50", "cifar", "cifar", 32),
])
def test_converted_state_dict_gives_pytorch_logits(name, layout, stem, size):
  model, images, torch_logits = _torch_model(name, layout, stem, size)
  logits = _flax_logits(model, name, stem, size, layout, images, "torch")
  np.testing.assert_allclose(logits, torch_logits, atol=1e-4, rtol=0)
  # XLA's SAME pads the stride-2 3x3 convolutions 0 before and 1 after: the same weights compute another function.
  assert np.abs(_flax_logits(model, name, stem, size, layout, images, "same") - torch_logits).max() > 1e-2


def test_converter_names_what_does_not_fit():
  model, _, _ = _torch_model("resnet18", "cifar", "cifar", 32)
  for name, width, layout, message in [("resnet50", 0.125, "cifar", "does not fit the model"),
                                       ("resnet18", 0.25, "cifar", "has shape"),
                                       ("resnet18", 0.125, "torchvision", "does not belong to a torchvision-layout"),
                                       ("resnet18", 0.125, "keras", "layout='keras' is unknown")]:
    flax_model = resnet.create_model(name, 10, "cifar", width, padding="torch")
    template = jax.eval_shape(lambda m=flax_model: m.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3))))
    with pytest.raises(errors.ConfigError, match=message):
      torch_convert.flax_variables(model.state_dict(), template, layout)


@pytest.mark.parametrize("schedule,warmup_epochs", [("cosine", 1.0), ("cosine", 0.0), ("constant", 2.0)])
def test_pytorch_learning_rate_is_optaxs_schedule(schedule, warmup_epochs):
  train = ml_collections.ConfigDict(dict(learning_rate=0.1, schedule=schedule, warmup_epochs=warmup_epochs,
                                         step_boundaries=(0.5,), step_factor=0.1))
  optax_schedule = train_state.learning_rate_schedule(train, 100, 10)
  ours = [parity.torch_learning_rate(train, step, 100, 10) for step in range(101)]
  np.testing.assert_allclose(ours, [float(optax_schedule(step)) for step in range(101)], rtol=1e-6, atol=1e-7)  # float32 in Optax


def _launch(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "launch.torch_parity", "--config=configs/default.py",
                         f"--workdir={workdir}", "--config.model.width_multiplier=0.125", *flags],
                        cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_each_of_50_steps_from_the_same_state_gives_pytorchs_loss_and_update(tmp_path):
  """Digits, ResNet-18 x1/8, the default recipe (lr 0.1, Nesterov, weight decay): before every step the JAX state is
  set to PyTorch's, so each loss and update is compared from the same parameters, momentum and step count."""
  result = _launch(tmp_path, "--steps=50", "--synchronise", "--eval_every_epochs=100")
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((tmp_path / "parity.json").read_text())
  assert summary["steps"] == 50
  assert summary["max_loss_difference_first_50_steps"] < 1e-5
  # Relative to the largest parameter. Typically 1e-7; a step that meets a nearly constant BatchNorm channel (8x8
  # digits are 1x1 in the last stage) amplifies rounding up to ~3e-4. A missing weight decay would be 5e-5 on
  # every step, a missing Nesterov term ~1e-2.
  assert summary["median_param_difference_relative"] < 1e-6
  assert summary["max_param_difference_relative"] < 1e-3
  final = summary["final_eval"]  # both evaluate PyTorch's final state: eval mode agrees too
  assert abs(final["jax_test_accuracy"] - final["torch_test_accuracy"]) < 1e-6
  assert abs(final["jax_test_loss"] - final["torch_test_loss"]) < 1e-4
  records = [json.loads(line) for line in (tmp_path / "parity.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["phase"] == "train"] == list(range(1, 51))
  again = _launch(tmp_path, "--steps=50")
  assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: --workdir=")
