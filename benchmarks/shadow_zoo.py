"""A zoo of S reference models: trained one after another vs in one vectorised program (`lottery.zoo`).

  python benchmarks/shadow_zoo.py [--num_models=16 --width=0.25 --steps=10 --reps=3 --cpu_devices=8]
  python benchmarks/shadow_zoo.py --npz=../shared/data/cifar10_small.npz --num_models=8 --width=0.125 --batch_size=128

Both candidates train the same S ResNet-18 models (digits 8x8 images, the default run's width and batch) for the same
steps from the same starts: "sequential" runs the package's jitted train step once per model and step (one compiled
step reused by every model: the best a one-model-per-process tool gets in one process), "zoo" runs the one-program step
of `lottery.zoo` once per step, models spread over the devices. Timed interleaved after warm-up. Prints seconds per
model and step, the ratio sequential / zoo (goal: >= 2 on this CPU for digits-sized models, >= 5 on a GPU), appends
one JSON line to benchmarks/results.jsonl.
"""
import functools
import os

import jax
import numpy as np
from absl import app, flags

import harness
from mialth_jax import config_lib, inference
from mialth_jax.data import load_dataset, splits
from mialth_jax.data.examples import ExampleSource
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import context as context_lib, train, zoo, zoo_pipeline

flags.DEFINE_integer("num_models", 16, "S, models in the zoo")
flags.DEFINE_float("width", 0.25, "ResNet-18 width multiplier (the default digits run: 0.25)")
flags.DEFINE_integer("batch_size", 64, "images per model and step")
flags.DEFINE_integer("steps", 10, "steps per candidate and repetition")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_string("npz", "", "a CIFAR subset .npz (../shared/data) instead of digits")
flags.DEFINE_integer("cpu_devices", 8, "XLA devices on a CPU (ignored on GPUs)")
F = flags.FLAGS
TARGET_CPU, TARGET_GPU = 2.0, 5.0


def main(argv):
  del argv
  if F.cpu_devices:
    jax.config.update("jax_num_cpu_devices", F.cpu_devices)  # before anything starts the backend
  config = config_lib.base()
  config.model.width_multiplier, config.train.batch_size = F.width, F.batch_size
  config.train.num_epochs, config.train.num_steps = -1.0, 10_000
  if F.npz:
    config.data.name, config.data.path = "npz", F.npz
  dataset = load_dataset(config.data)  # the context reads and writes nothing on disk
  ctx = context_lib.build(config, RunLayout(os.devnull), dataset,
                          splits.make_splits(len(dataset.y_train), len(dataset.y_test), -1, 0))
  setting = harness.setting(num_models=F.num_models, width=F.width, batch_size=F.batch_size, image="x".join(map(str, dataset.image_shape)))
  harness.print_setting(setting)
  seeds = zoo.model_seeds(0, F.num_models)
  pool_size = len(ExampleSource(ctx.dataset))
  keep = zoo.random_subsets(F.num_models, pool_size, pool_size // 2, 0)
  batches = zoo.Batches(keep, seeds, F.batch_size, 7)
  dense = ctx.dense_mask()
  starts = [ctx.init_variables(int(s)) for s in seeds]
  images, labels = zoo_pipeline.zoo_pool(ctx)
  by_model = zoo.models_sharding(ctx.mesh, F.num_models)
  zoo_state = [zoo.start_states(starts, [dense] * F.num_models, ctx.tx, 0, by_model)]
  zoo_step = zoo_pipeline.zoo_step(ctx, F.num_models)
  single = jax.jit(functools.partial(train.train_step, model=ctx.model, tx=ctx.tx, seed=0, augment_kind="none",
                                     mean=ctx.data.mean, std=ctx.data.std), donate_argnums=0)
  alone = [ctx.start_state(v, jax.tree.map(np.asarray, dense), 0) for v in starts]
  positions = [batches.positions(k) for k in range(F.steps)]

  def run_zoo():
    state = zoo_state[0]
    for pos in positions:
      state, metrics = zoo_step(state, images, labels, inference.global_array(pos, by_model))
    jax.block_until_ready(metrics)
    zoo_state[0] = state

  def run_sequential():
    for s in range(F.num_models):
      state = alone[s]
      for pos in positions:
        state, metrics = single(state, images[pos[s]], labels[pos[s]])
      alone[s] = state
    jax.block_until_ready(metrics)

  run_zoo()
  run_sequential()  # compile both
  wall, _ = harness.interleaved({"zoo": run_zoo, "sequential": run_sequential}, F.reps)
  per_model = {k: harness.median(v) / F.num_models / F.steps for k, v in wall.items()}
  speedup = harness.ratio(wall, "zoo", "sequential")
  target = TARGET_GPU if jax.devices()[0].platform == "gpu" else TARGET_CPU
  print(f"\n{F.num_models} models, ResNet-18 x{F.width:g}, batch {F.batch_size}, {F.steps} steps x {F.reps} reps, "
        f"{len(jax.devices())} {jax.devices()[0].platform} devices:")
  for name, seconds in per_model.items():
    print(f"  {name:<11} {1000 * seconds:8.2f} ms per model and step "
          f"({F.batch_size / seconds:7.0f} img/s per model-stream)")
  print(f"sequential / zoo = {speedup:.2f}, target >= {target:g}: {harness.verdict(speedup, target)}")
  harness.append_result({"benchmark": "shadow_zoo", "target": target, **setting, "load_avg_end": harness.load_avg(),
                         "ms_per_model_step": {k: 1000 * v for k, v in per_model.items()}, "ratio": speedup,
                         "met": speedup >= target})


if __name__ == "__main__":
  app.run(main)
