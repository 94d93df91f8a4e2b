"""Shared pieces of the benchmarks: the setting, interleaved timing, verdicts, results, and the real JAX train step.

On a shared machine absolute times drift with the load, so every benchmark times its candidates interleaved (A B A B
..., each repetition runs every candidate once) and reports medians of per-repetition ratios: two neighbours in time
see nearly the same load.
"""
import dataclasses
import functools
import itertools
import os
import platform
import statistics
import time
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import config_lib, inference
from mialth_jax.lottery import masks, train, train_state
from mialth_jax.models import resnet
from mialth_jax.utils import io

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl")
# The FLOP convention: CIFAR ResNet-18 forward = 1.11 GFLOP per image (2 FLOPs per multiply-add), training
# = 3x forward; width w scales it by w**2 (the stem and head, under 1 % of it, are counted the same way).
RESNET18_CIFAR_GFLOP = 1.11
TRAIN_FACTOR = 3
MEAN, STD = 0.47, 0.25  # per-channel normalisation of the random images (any fixed values do)


def setting(**extra) -> dict:
  """Hardware, software, threading and load; printed and stored with every result."""
  return {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
          "load_avg": load_avg(), "jax": jax.__version__,
          "jax_devices": len(jax.devices()), "jax_platform": jax.devices()[0].platform,
          "device_kind": jax.devices()[0].device_kind,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "python": platform.python_version(), **extra}


def load_avg() -> list[float]:
  """1, 5 and 15 minute load averages."""
  return [round(x, 2) for x in os.getloadavg()]


def _cpu_name() -> str:
  with open("/proc/cpuinfo") as f:
    names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  return names[0] if names else platform.machine()


def print_setting(s: dict) -> None:
  """The setting, load average included: above the usable core count, other jobs share the machine and absolute
  times drift (ratios of interleaved candidates much less)."""
  print("setting: " + ", ".join(f"{k}={v}" for k, v in s.items()))


class Measured(NamedTuple):
  """What a candidate that times itself (in another process, or only part of its work) returns to `interleaved`."""
  wall: float
  cpu: float


def time_trainers(trainers: dict, steps: int, reps: int) -> dict:
  """Wall seconds of `steps` steps of each `JaxTrainer`, interleaved over `reps` repetitions, after two steps of each
  that compile and warm it up."""
  for trainer in trainers.values():
    trainer.run(2)
  wall, _ = interleaved({k: (lambda t=t: t.run(steps)) for k, t in trainers.items()}, reps)
  return wall


def interleaved(candidates: dict, reps: int) -> tuple[dict, dict]:
  """(wall seconds, CPU seconds) lists of each callable, run once per repetition in turn (A B A B ...).

  A callable that times itself returns a `Measured`; any other result is ignored and the call itself is timed.
  CPU seconds count every thread of the process: on a loaded machine a candidate with more threads gets a larger share
  of the cores, so its wall time can drop without any saving in work.
  """
  wall, cpu = {name: [] for name in candidates}, {name: [] for name in candidates}
  for _ in range(reps):
    for name, fn in candidates.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      measured = fn()
      if not isinstance(measured, Measured):
        measured = (time.perf_counter() - start, time.process_time() - start_cpu)
      wall[name].append(measured[0])
      cpu[name].append(measured[1])
  return wall, cpu


def ratio(times: dict, num: str, den: str) -> float:
  """Median over repetitions of times[den] / times[num]: the speed of `num` relative to `den` (> 1: num is faster)."""
  return statistics.median(d / n for n, d in zip(times[num], times[den]))


def median(xs) -> float:
  return statistics.median(xs)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
  """'met', or 'NOT met (short by N %)' ('over by N %' where lower is better)."""
  if value >= target if higher_is_better else value <= target:
    return "met"
  miss = abs(target - value) / target
  return f"NOT met ({'short' if higher_is_better else 'over'} by {100 * miss:.0f} %)"


def append_result(result: dict, path: str = RESULTS) -> None:
  io.append_jsonl(path, result)
  print(f"appended to {path}")


def convention_gflop(width: float) -> float:
  """Forward GFLOP per image of CIFAR ResNet-18 at `width` under the issue's convention."""
  return RESNET18_CIFAR_GFLOP * width ** 2


@dataclasses.dataclass(frozen=True)
class Workload:
  """A ResNet trained on random uint8 images of one size (CIFAR-sized by default)."""
  model: str = "resnet18"
  stem: str = "cifar"
  image_size: int = 32
  num_classes: int = 10
  width: float = 1.0
  dtype: str = "float32"
  norm: str = "batch"

  def create_model(self):
    return resnet.create_model(self.model, self.num_classes, self.stem, self.width, self.dtype, norm=self.norm)


class JaxTrainer:
  """The real masked train step (`train.make_jitted_step`) on device-resident random uint8 images.

  `workload` (default: CIFAR ResNet-18 at `width`, fp32) says what is trained; `devices` (default: all) are the mesh
  the batch is sharded over; `batch_size` is the global batch. `extra` (the train state's step-hook slots) and
  `batch_selection` (`LoopConfig.batch_selection`) give a recipe's own step, e.g. DP-SGD's.
  """

  def __init__(self, width: float, batch_size: int, *, mask: str = "dense", augment: str = "none",
               num_images: int = 1024, donate: bool = True, seed: int = 0, workload: Workload | None = None,
               devices=None, extra=None, batch_selection=None):
    self.workload = workload or Workload(width=width)
    self.model = self.workload.create_model()
    self.mesh = Mesh(np.asarray(devices if devices is not None else jax.devices()), (inference.DATA_AXIS,))
    replicated = NamedSharding(self.mesh, P())
    config = config_lib.base().train
    self.tx = train_state.make_optimizer(config, 10_000, num_images // batch_size)
    variables = init_variables(self.model, seed, self.workload.image_size)
    self.mask = make_mask(variables["params"], mask, seed)
    state = train_state.create_state(variables["params"], variables.get("batch_stats", {}), self.mask, self.tx,
                                     extra=extra)
    # Every leaf replicated, as the step's outputs are: otherwise its second call compiles again.
    self.state = jax.device_put(state, replicated)
    self.data = random_train_data(num_images, replicated, seed, self.workload)
    self.loop = train.LoopConfig("bench", seed, 10_000, num_images // batch_size, batch_size, augment, 10_000,
                                 10_000, 0, batch_selection=batch_selection)
    self.step = train.make_jitted_step(self.model, self.tx, self.loop, self.data, self.mesh, donate)
    inputs = list(itertools.islice(train.step_inputs(self.loop, self.data, self.mesh, 0), self.loop.steps_per_epoch))
    self.next_inputs = lambda step: inputs[step % len(inputs)]

  def stream_from(self, source, labels: np.ndarray) -> None:
    """Feeds the step from a host `ImageSource` instead of device-resident images: the ImageNet path, where
    `train.step_inputs` reads each batch on a background thread two steps ahead and shards it over the mesh."""
    self.data = dataclasses.replace(self.data, images=None, labels=None, host_images=source, host_labels=labels)
    self.loop = dataclasses.replace(self.loop, total_steps=2 ** 40, steps_per_epoch=len(labels) // self.loop.batch_size)
    self.step = train.make_jitted_step(self.model, self.tx, self.loop, self.data, self.mesh)
    stream = train.step_inputs(self.loop, self.data, self.mesh, 0)
    self.next_inputs = lambda step: next(stream)

  def run(self, num_steps: int) -> None:
    """`num_steps` steps, blocking on the last one's outputs."""
    for step in range(num_steps):
      self.state, metrics = self.step(self.state, self.next_inputs(step))
    jax.block_until_ready((self.state, metrics))

  def train_step_cost(self) -> dict:
    """XLA's cost analysis of one train step (without the batch gather), on one device with the whole batch."""
    size = self.workload.image_size
    images = jax.ShapeDtypeStruct((self.loop.batch_size, size, size, 3), np.uint8)
    labels = jax.ShapeDtypeStruct((self.loop.batch_size,), np.int32)
    step = functools.partial(train.train_step, model=self.model, tx=self.tx, seed=0, augment_kind=self.loop.augment,
                             mean=self.data.mean, std=self.data.std)
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self.state)
    return jax.jit(step).lower(state, images, labels).compile().cost_analysis() or {}


def init_variables(model, seed: int, image_size: int = 32) -> dict:
  """model.init compiled without XLA's backend optimisations: 2 s instead of 8-15 s, and it runs once."""
  init = jax.jit(lambda k: model.init(k, np.zeros((1, image_size, image_size, 3), np.uint8)))
  return init.lower(jax.random.PRNGKey(seed)).compile({"xla_backend_optimization_level": 0})(jax.random.PRNGKey(seed))


def make_mask(params, kind: str, seed: int = 0):
  """dense: all-ones bool mask; s80: 80 % global-magnitude sparse; none: a scalar True on every leaf (no-op mask)."""
  if kind == "none":
    return jax.tree.map(lambda _: np.ones((), bool), params)
  lottery = config_lib.base().lottery
  dense = masks.dense_mask(params, masks.prunable_predicate(lottery.prunable, lottery.keep_first_conv,
                                                            lottery.keep_classifier))
  if kind == "dense":
    return dense
  if kind == "s80":
    return masks.prune(jax.device_get(params), dense, 0.8, "global_magnitude", seed)
  raise ValueError(f"mask {kind!r} is unknown; expected dense, s80 or none")


def random_train_data(num_images: int, sharding: NamedSharding, seed: int,
                      workload: Workload = Workload()) -> train.TrainData:
  """Random uint8 images and labels of the workload's size, resident on device like the CIFAR members."""
  rng = np.random.default_rng(seed)
  size = workload.image_size
  images = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
  labels = rng.integers(0, workload.num_classes, num_images).astype(np.int32)
  return train.TrainData(images=inference.global_array(images, sharding),
                         labels=inference.global_array(labels, sharding), host_images=images, host_labels=labels,
                         test_images=images[:256], test_labels=labels[:256], mean=np.full(3, MEAN, np.float32),
                         std=np.full(3, STD, np.float32))
