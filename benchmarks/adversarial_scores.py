"""The PGD total-variation score (attacks/adversarial.py): batched in one jitted, mesh-sharded program
(attacks/adversarial_signals.py) vs a per-example loop of the same jitted function, and 8 simulated devices vs 1.

  python benchmarks/adversarial_scores.py [--width=0.25 --examples=256 --batch_size=128 --steps=10 --reps=3]

The workload is the digits default's network (ResNet-18 x1/4, 8x8x1 images; --image_size=32 for CIFAR-sized random
images) in eval mode, PGD l_inf eps = 4/255, `steps` steps, scoring 0.5 ||p(x_adv) - p(x)||_1. Candidates, timed
interleaved after a warm-up that compiles each: "batched_8dev" (`adversarial_signals.evaluate` over a mesh of the
8 simulated CPU devices), "batched_1dev" (the same over one device) and "loop" (one jitted call per example on one
device, the shape of a per-example attack loop such as ART's). Prints examples per second of each and the ratios
batched / loop and 8 devices / 1; appends one JSON line to benchmarks/results.jsonl.
"""
import functools

import jax
import numpy as np
from absl import app, flags
from jax.sharding import Mesh

import harness
from mialth_jax import inference
from mialth_jax.attacks import adversarial, adversarial_signals, target as target_lib
from mialth_jax.data import base, digits
from mialth_jax.data.examples import ExampleSource

flags.DEFINE_float("width", 0.25, "ResNet-18 width multiplier (the digits default: 0.25)")
flags.DEFINE_integer("image_size", 8, "8: digits; 32: random CIFAR-sized images")
flags.DEFINE_integer("examples", 256, "examples scored per batched candidate and repetition")
flags.DEFINE_integer("loop_examples", 32, "examples scored one by one per repetition of the loop")
flags.DEFINE_integer("batch_size", 128, "examples per sharded batch")
flags.DEFINE_integer("steps", 10, "PGD steps")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_integer("cpu_devices", 8, "XLA devices on a CPU (ignored on GPUs)")
F = flags.FLAGS
EPS = 4 / 255


def dataset() -> base.Dataset:
  if F.image_size == 8:
    return digits.load()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2 * F.examples, F.image_size, F.image_size, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 2 * F.examples).astype(np.int32)
  return base.Dataset(name="random", x_train=images[:F.examples], y_train=labels[:F.examples],
                      x_test=images[F.examples:], y_test=labels[F.examples:], num_classes=10,
                      image_shape=images.shape[1:], class_names=tuple(map(str, range(10))))


def main(argv):
  del argv
  if F.cpu_devices:
    jax.config.update("jax_num_cpu_devices", F.cpu_devices)  # before anything starts the backend
  data = dataset()
  workload = harness.Workload(width=F.width, image_size=F.image_size)
  model = workload.create_model()
  x = data.x_train[:1].astype(np.float32)
  variables = jax.jit(lambda k: model.init(k, np.zeros_like(x, np.uint8)))(jax.random.PRNGKey(0))
  variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
  mean, std = np.full(x.shape[-1], harness.MEAN, np.float32), np.full(x.shape[-1], harness.STD, np.float32)
  meshes = {"8dev": inference.make_mesh(), "1dev": Mesh(np.asarray(jax.devices()[:1]), (inference.DATA_AXIS,))}
  targets = {name: target_lib.Target(label=name, cache_path="", source=ExampleSource(data), model=model,
                                     load_variables=lambda m=mesh: jax.device_put(variables, jax.sharding.NamedSharding(
                                         m, jax.sharding.PartitionSpec())), mean=mean, std=std, mesh=mesh)
             for name, mesh in meshes.items()}
  signal = adversarial_signals.Signal.make("tv", eps=EPS, norm="linf", steps=F.steps, step_fraction=0.25,
                                           random_start=False, output="tv", per_eps=False)
  ids = np.arange(F.examples) % len(data.y_train)
  logits_fn = adversarial.pixel_logits_fn(model, variables, mean, std)
  one = jax.jit(functools.partial(adversarial.tv_signal, logits_fn, key=None, eps=EPS, norm="linf", steps=F.steps,
                                  step_fraction=0.25, random_start=False, output="tv", per_eps=False))
  source = ExampleSource(data)

  def loop():
    for i in ids[:F.loop_examples]:
      jax.block_until_ready(one(source[[i]][0].astype(np.float32) / 255.0, source.labels([i])[0]))

  candidates = {f"batched_{n}": functools.partial(adversarial_signals.evaluate, signal, t, ids, F.batch_size)
                for n, t in targets.items()}
  candidates["loop"] = loop
  for fn in candidates.values():
    fn()  # compile
  setting = harness.setting(width=F.width, image=f"{F.image_size}x{F.image_size}", examples=F.examples,
                            loop_examples=F.loop_examples, batch_size=F.batch_size, steps=F.steps, eps=EPS)
  harness.print_setting(setting)
  wall, _ = harness.interleaved(candidates, F.reps)
  count = {name: F.loop_examples if name == "loop" else F.examples for name in wall}
  rate = {name: count[name] / harness.median(t) for name, t in wall.items()}
  per_example = {name: [t / count[name] for t in ts] for name, ts in wall.items()}
  ratios = {"batched_8dev_vs_loop": harness.ratio(per_example, "batched_8dev", "loop"),
            "batched_1dev_vs_loop": harness.ratio(per_example, "batched_1dev", "loop"),
            "8dev_vs_1dev": harness.ratio(per_example, "batched_8dev", "batched_1dev")}
  for name, r in rate.items():
    print(f"{name:>13}: {r:8.1f} examples/s (PGD-{F.steps} TV score)")
  for name, r in ratios.items():
    print(f"{name}: {r:.2f}x")
  harness.append_result({"benchmark": "adversarial_scores", **setting, "examples_per_s": rate, "ratios": ratios,
                         "load_avg_end": harness.load_avg()})


if __name__ == "__main__":
  app.run(main)
