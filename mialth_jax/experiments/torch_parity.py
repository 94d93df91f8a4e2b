"""PyTorch parity: one recipe trained by a PyTorch reference step and by mialth_jax's jitted step, side by side.

Both start from the same w0 (a PyTorch ResNet's initial state dict, converted by `models/torch_convert.py`), see the
same batches (`train.batch_indices`) and the same augmentation draws (`augment.augment` with the step's key, handed to
PyTorch as uint8 images), and follow the same learning-rate schedule, computed for PyTorch by `torch_learning_rate`
(plain Python, not Optax). The JAX side is the pipeline's own step (`Context.train_step`) with `model.padding="torch"`;
the PyTorch side is `torch.optim.SGD` (momentum, Nesterov, weight decay on every parameter, as ours) on
`models/torch_reference.py`'s ResNet. What remains different is float rounding, and BatchNorm's running variance
(PyTorch averages the unbiased batch variance, Flax the biased one: eval-mode only). Needs torch, imported on first
use only (`torch_module`), so this module imports without it.

SGD at a CIFAR learning rate is chaotic: two PyTorch runs whose w0 differ by 1e-7 (relative) drift apart by a factor
of 3-10 a step, so free-running losses of any two implementations part after a few steps. `synchronise=True` checks the
step itself: before every step the JAX state (parameters, batch statistics, momentum, step count) is set to PyTorch's,
so each step's loss and update are compared from the same state; the free-running mode compares whole runs.
"""
import dataclasses
import math
import time

import jax
import ml_collections
import numpy as np
import optax

from mialth_jax import errors, inference
from mialth_jax.data import augment, load_dataset, splits as splits_lib
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import context as context_lib, loop as loop_lib, train as train_lib
from mialth_jax.models import torch_convert, torch_reference
from mialth_jax.utils import progress


def torch_module():
  """torch, imported here on first use: the one place this module imports it (ModuleNotFoundError without it)."""
  import torch  # pylint: disable=import-outside-toplevel
  return torch


def torch_learning_rate(train: ml_collections.ConfigDict, step: int, total_steps: int, steps_per_epoch: int) -> float:
  """The learning rate of `step`: linear warm-up from 0, then cosine decay to 0 or a constant (as
  `train_state.learning_rate_schedule`, written out independently)."""
  warmup = int(round(train.warmup_epochs * steps_per_epoch))
  if step < warmup:
    return train.learning_rate * step / warmup
  if train.schedule == "constant":
    return train.learning_rate
  if train.schedule != "cosine":
    raise errors.ConfigError(f"train.schedule={train.schedule!r}: the PyTorch reference follows cosine or constant")
  decay_steps = max(1, total_steps - warmup)
  return train.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay_steps) / decay_steps))


class TorchRun:
  """The PyTorch reference: a ResNet in the CIFAR layout, SGD as `train_state.make_optimizer` builds it."""

  def __init__(self, config: ml_collections.ConfigDict, dataset, mean: np.ndarray, std: np.ndarray):
    if config.model.name not in ("resnet18", "resnet50"):
      raise errors.ConfigError(f"model.name={config.model.name!r}: the PyTorch reference has resnet18 and resnet50")
    torch = torch_module()
    torch.manual_seed(config.seed)
    self.model = torch_reference.ResNet(config.model.name, dataset.num_classes, "cifar", config.model.stem,
                                        config.model.width_multiplier, dataset.image_shape[-1])
    train = config.train
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=train.momentum,
                               nesterov=train.nesterov and train.momentum > 0, weight_decay=train.weight_decay)
    self.mean = mean
    self.std = std

  def step(self, images: np.ndarray, labels: np.ndarray, learning_rate: float) -> tuple[float, float]:
    """One train step on uint8 NHWC images; (loss, accuracy) before the update."""
    torch = torch_module()
    self.model.train()
    for group in self.opt.param_groups:
      group["lr"] = learning_rate
    logits = self.model(torch_reference.to_nchw(images, self.mean, self.std))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels.astype(np.int64)))
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    self.opt.step()
    accuracy = (logits.argmax(1).detach().numpy() == labels).mean()
    return float(loss.detach()), float(accuracy)

  def evaluate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 512) -> dict:
    """Eval-mode accuracy and loss, computed from the logits as the JAX side's are (`inference.accuracy_and_loss`)."""
    torch = torch_module()
    self.model.eval()
    with torch.no_grad():
      logits = torch.cat([self.model(torch_reference.to_nchw(images[i:i + batch_size], self.mean, self.std))
                          for i in range(0, len(labels), batch_size)])
    accuracy, loss = inference.accuracy_and_loss(logits.numpy(), labels)
    return {"accuracy": accuracy, "loss": loss}


  def flax_variables(self, template) -> dict:
    return torch_convert.flax_variables(self.model.state_dict(), template, "cifar")

  def flax_momentum(self, template) -> dict:
    """SGD's momentum buffers as a Flax params tree (zeros before the first step)."""
    momentum = {}
    for name, p in self.model.named_parameters():
      buffer = self.opt.state.get(p, {}).get("momentum_buffer")
      momentum[name] = np.zeros(tuple(p.shape), np.float32) if buffer is None else buffer
    return torch_convert.flax_variables({**self.model.state_dict(), **momentum}, template, "cifar")["params"]


@dataclasses.dataclass
class Curves:
  """Per-step train losses of both sides, evaluations at the end of each logged epoch and, when synchronised, the
  largest parameter difference after each step relative to the largest parameter."""
  jax_loss: list = dataclasses.field(default_factory=list)
  torch_loss: list = dataclasses.field(default_factory=list)
  param_difference: list = dataclasses.field(default_factory=list)
  evals: list = dataclasses.field(default_factory=list)


def jax_context(config: ml_collections.ConfigDict, workdir: str) -> context_lib.Context:
  """The pipeline's context for `config` with PyTorch's padding; nothing is read from or written to `workdir`."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.padding = "torch"
  dataset = load_dataset(config.data)
  splits = splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), config.data.num_train, config.seed)
  return context_lib.build(config, RunLayout(workdir), dataset, splits)


def synchronised_state(ctx, torch_run: TorchRun, mask, step: int, variables: dict | None = None):
  """The JAX train state equal to PyTorch's before `step`: parameters, batch statistics, momentum and step count.
  `variables`: PyTorch's, already converted."""
  variables = torch_run.flax_variables(ctx.variable_shapes) if variables is None else variables
  state = ctx.start_state(jax.device_put(variables, ctx.replicated), mask, step)
  momentum = jax.device_put(torch_run.flax_momentum(ctx.variable_shapes), ctx.replicated)
  count = jax.device_put(np.int32(step), ctx.replicated)  # as the step returns it: no second compilation
  return state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, trace=momentum, count=count))


def _relative_difference(params, torch_params) -> float:
  params = jax.device_get(params)
  largest = max(float(np.abs(p).max()) for p in jax.tree.leaves(torch_params))
  return max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(torch_params))
             ) / largest


def run(config: ml_collections.ConfigDict, workdir: str, num_steps: int = -1, eval_every_epochs: float = 5.0,
        synchronise: bool = False, log=lambda record: None) -> Curves:
  """Trains both sides for `num_steps` (-1: the config's whole run), evaluating both every `eval_every_epochs`
  and at the end; `log` receives one record per step and per evaluation. `synchronise`: see the module doc."""
  ctx = jax_context(config, workdir)
  torch_run = TorchRun(config, ctx.dataset, ctx.data.mean, ctx.data.std)
  mask = ctx.dense_mask()
  state = synchronised_state(ctx, torch_run, mask, 0)  # PyTorch's w0, no momentum yet
  jax_step, loop = ctx.train_step(), ctx.loop("parity")
  total = ctx.total_steps if num_steps < 0 else min(num_steps, ctx.total_steps)
  eval_every = max(1, int(round(eval_every_epochs * ctx.steps_per_epoch)))
  members, labels = ctx.data.host_images, ctx.data.host_labels
  curves = Curves()
  meter = progress.Meter("parity", total, 0, loop.batch_size)
  for step, inputs in zip(range(total), train_lib.step_inputs(loop, ctx.data, ctx.mesh, 0)):
    idx = train_lib.batch_indices(loop.seed, step, len(labels), loop.batch_size, loop.steps_per_epoch)
    key = jax.random.fold_in(jax.random.PRNGKey(loop.seed), step)  # the key train.train_step draws from
    images = np.asarray(augment.augment(key, members[idx], loop.augment))
    lr = torch_learning_rate(ctx.config.train, step, ctx.total_steps, ctx.steps_per_epoch)
    torch_loss, torch_acc = torch_run.step(images, labels[idx], lr)
    state, metrics = jax_step(state, inputs)
    jax_loss = float(metrics["loss"])
    curves.jax_loss.append(jax_loss)
    curves.torch_loss.append(torch_loss)
    record = {"phase": "train", "step": step + 1, "jax_loss": jax_loss, "torch_loss": torch_loss, "lr": lr}
    if synchronise:
      torch_variables = torch_run.flax_variables(ctx.variable_shapes)
      record["param_difference"] = _relative_difference(state.params, torch_variables["params"])
      curves.param_difference.append(record["param_difference"])
      state = synchronised_state(ctx, torch_run, mask, step + 1, torch_variables)
    log(record)
    do_eval = (step + 1) % eval_every == 0 or step + 1 == total
    if (step + 1) % loop.log_every_steps == 0 or do_eval:
      meter.update(step + 1, jax_loss, torch_acc)
    if do_eval:
      curves.evals.append(_evaluate(ctx, state, torch_run, step + 1))
      log({"phase": "eval", **curves.evals[-1]})
      meter.skip_time()
  return curves


def _evaluate(ctx, state, torch_run: TorchRun, step: int) -> dict:
  start = time.perf_counter()
  jax_eval = loop_lib.evaluate(ctx.logits_fn, state, ctx.data, ctx.mesh, ctx.config.attacks.batch_size)
  torch_test = torch_run.evaluate(ctx.data.test_images, ctx.data.test_labels)
  torch_train = torch_run.evaluate(ctx.data.host_images, ctx.data.host_labels)
  return {"step": step, "epoch": step / ctx.steps_per_epoch, "seconds": time.perf_counter() - start,
          **{f"jax_{k}": float(v) for k, v in jax_eval.items()},
          **{f"torch_test_{k}": v for k, v in torch_test.items()},
          **{f"torch_train_{k}": v for k, v in torch_train.items()}}
