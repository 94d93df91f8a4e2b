"""A zoo of S reference models: trained one after another vs in one vectorised program (`lottery.zoo`).

  python benchmarks/shadow_zoo.py [--num_models=16 --width=0.25 --steps=10 --reps=3 --cpu_devices=8]
  python benchmarks/shadow_zoo.py --npz=../shared/data/cifar10_small.npz --num_models=8 --width=0.125 --batch_size=128

Every candidate trains the same S ResNet-18 models (digits 8x8 images, the default run's width and batch) for the same
steps from the same starts. "zoo" runs the one-program step of `lottery.zoo` once per step, models spread over all
devices. "sequential_<k>dev" is what a one-model-per-process user gets on k devices: the package's own jitted step
(`train.make_jitted_step`, compiled once and reused for every model), state replicated and each batch sharded over a
mesh of the first k devices, run once per model and step. "sequential_1dev_own_process" is the same on a process of
its own in which only 1 CPU device exists (--separate_process). Timed interleaved after warm-up. Prints wall and CPU
ms per model and step, names the best sequential setting (the fastest; fewest devices on a tie) and the ratio best
sequential / zoo (goal: >= 2 on this CPU for digits-sized models, >= 5 on a GPU), appends one JSON line to
benchmarks/results.jsonl. Like the launchers, XLA:CPU runs single-threaded Eigen: one device uses at most one core.
"""
from mialth_jax.utils import logs

logs.patient_cpu_collectives()  # the launchers' XLA flags (single-threaded Eigen), before jax is imported

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import harness  # noqa: E402
from mialth_jax import config_lib, inference  # noqa: E402
from mialth_jax.data import load_dataset, splits  # noqa: E402
from mialth_jax.data.examples import ExampleSource  # noqa: E402
from mialth_jax.layout import RunLayout  # noqa: E402
from mialth_jax.lottery import context as context_lib, train, zoo, zoo_pipeline  # noqa: E402

flags.DEFINE_integer("num_models", 16, "S, models in the zoo")
flags.DEFINE_float("width", 0.25, "ResNet-18 width multiplier (the default digits run: 0.25)")
flags.DEFINE_integer("batch_size", 64, "images per model and step")
flags.DEFINE_integer("steps", 10, "steps per candidate and repetition")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_string("npz", "", "a CIFAR subset .npz (../shared/data) instead of digits")
flags.DEFINE_integer("cpu_devices", 8, "XLA devices on a CPU (ignored on GPUs)")
flags.DEFINE_list("sequential_devices", ["1", "2", "all"], "k: sequential training timed on the first k devices")
flags.DEFINE_bool("separate_process", True, "also time sequential training in a process with only 1 CPU device")
flags.DEFINE_bool("worker", False, "internal: be that process (reads a line, trains, prints its times)")
F = flags.FLAGS
TARGET_CPU, TARGET_GPU = 2.0, 5.0


def sequential(ctx, devices, starts, dense, images, labels, positions):
  """Trains the models one after another as a one-model-per-process user on `devices` would."""
  mesh = Mesh(np.asarray(devices), (inference.DATA_AXIS,))
  replicated, by_example = NamedSharding(mesh, P()), NamedSharding(mesh, P(inference.DATA_AXIS))
  images, labels = jax.device_put((images, labels), replicated)
  step = train.make_jitted_step(ctx.model, ctx.tx, ctx.loop(), dataclasses.replace(ctx.data, images=images,
                                                                                    labels=labels), mesh)
  states = [jax.device_put(ctx.start_state(v, dense, 0), replicated) for v in starts]

  def run():
    for s, state in enumerate(states):
      for pos in positions:  # each step's positions put on device in the loop, as train.step_inputs does
        state, metrics = step(state, (images, labels, inference.global_array(pos[s].astype(np.int32), by_example)))
      states[s] = state
    jax.block_until_ready(metrics)
  return run


def own_process():
  """The candidate run by a worker process with 1 CPU device, started now (it compiles while this process does)."""
  proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", "--cpu_devices=1"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def reply(prefix):
    for line in proc.stdout:
      if line.startswith(prefix):
        return line[len(prefix):]
    raise RuntimeError(f"the 1-device worker ended (exit status {proc.wait()})")

  ready = []

  def run():
    ready or ready.append(reply("ready"))  # its compilation done
    proc.stdin.write("run\n")
    proc.stdin.flush()
    return harness.Measured(*json.loads(reply("times ")))
  return run, proc


def main(argv):
  del argv
  if F.cpu_devices:
    jax.config.update("jax_num_cpu_devices", F.cpu_devices)  # before anything starts the backend
  worker = own_process() if F.separate_process and not F.worker and jax.default_backend() == "cpu" else None
  config = config_lib.base()
  config.model.width_multiplier, config.train.batch_size = F.width, F.batch_size
  config.train.num_epochs, config.train.num_steps = -1.0, 10_000
  if F.npz:
    config.data.name, config.data.path = "npz", F.npz
  dataset = load_dataset(config.data)  # the context reads and writes nothing on disk
  ctx = context_lib.build(config, RunLayout(os.devnull), dataset,
                          splits.make_splits(len(dataset.y_train), len(dataset.y_test), -1, 0))
  seeds = zoo.model_seeds(0, F.num_models)
  pool_size = len(ExampleSource(ctx.dataset))
  keep = zoo.random_subsets(F.num_models, pool_size, pool_size // 2, 0)
  batches = zoo.Batches(keep, seeds, F.batch_size, 7)
  dense = ctx.dense_mask()
  starts = [ctx.init_variables(int(s)) for s in seeds]
  images, labels = zoo_pipeline.zoo_pool(ctx)
  positions = [batches.positions(k) for k in range(F.steps)]
  if F.worker:
    run = sequential(ctx, jax.devices(), starts, dense, images, labels, positions)
    run()  # compile
    print("ready", flush=True)
    for _ in sys.stdin:
      start, start_cpu = time.perf_counter(), time.process_time()
      run()
      print("times " + json.dumps([time.perf_counter() - start, time.process_time() - start_cpu]), flush=True)
    return

  setting = harness.setting(num_models=F.num_models, width=F.width, batch_size=F.batch_size, steps=F.steps,
                            reps=F.reps, image="x".join(map(str, dataset.image_shape)))
  harness.print_setting(setting)
  by_model = zoo.models_sharding(ctx.mesh, F.num_models)
  zoo_state = [zoo.start_states(starts, [dense] * F.num_models, ctx.tx, 0, by_model)]
  zoo_step = zoo_pipeline.zoo_step(ctx, F.num_models)

  def run_zoo():
    state = zoo_state[0]
    for pos in positions:
      state, metrics = zoo_step(state, images, labels, inference.global_array(pos, by_model))
    jax.block_until_ready(metrics)
    zoo_state[0] = state

  candidates, devices = {"zoo": run_zoo}, {"zoo": len(jax.devices())}
  for k in sorted({len(jax.devices()) if k == "all" else int(k) for k in F.sequential_devices}):
    if k <= len(jax.devices()) and F.batch_size % k == 0:
      candidates[f"sequential_{k}dev"] = sequential(ctx, jax.devices()[:k], starts, dense, images, labels, positions)
      devices[f"sequential_{k}dev"] = k
  if worker:
    candidates["sequential_1dev_own_process"], devices["sequential_1dev_own_process"] = worker[0], 1
  for run in candidates.values():
    run()  # compile every candidate
  wall, cpu = harness.interleaved(candidates, F.reps)
  if worker:
    worker[1].stdin.close()
    worker[1].wait()
  per_model = {k: harness.median(v) / F.num_models / F.steps for k, v in wall.items()}
  cpu_per_model = {k: harness.median(v) / F.num_models / F.steps for k, v in cpu.items()}
  best = min((k for k in candidates if k != "zoo"), key=lambda k: (per_model[k], devices[k]))
  speedup = harness.ratio(wall, "zoo", best)
  target = TARGET_GPU if jax.devices()[0].platform == "gpu" else TARGET_CPU
  print(f"\n{F.num_models} models, ResNet-18 x{F.width:g}, batch {F.batch_size}, {F.steps} steps x {F.reps} reps, "
        f"{len(jax.devices())} {jax.devices()[0].platform} devices, load {harness.load_avg()}:")
  for name, seconds in per_model.items():
    vs_zoo = "" if name == "zoo" else f", {name} / zoo = {harness.ratio(wall, 'zoo', name):.2f}"
    print(f"  {name:<28} {1000 * seconds:8.2f} ms per model and step "
          f"(CPU {1000 * cpu_per_model[name]:8.2f} ms){vs_zoo}")
  print(f"best sequential ({best}) / zoo = {speedup:.2f}, target >= {target:g}: {harness.verdict(speedup, target)}")
  harness.append_result({"benchmark": "shadow_zoo", "target": target, **setting, "load_avg_end": harness.load_avg(),
                         "ms_per_model_step": {k: 1000 * v for k, v in per_model.items()},
                         "cpu_ms_per_model_step": {k: 1000 * v for k, v in cpu_per_model.items()},
                         "devices": devices, "best_sequential": best, "ratio": speedup,
                         "ratios": {k: harness.ratio(wall, "zoo", k) for k in candidates if k != "zoo"},
                         "met": speedup >= target})


if __name__ == "__main__":
  app.run(main)
