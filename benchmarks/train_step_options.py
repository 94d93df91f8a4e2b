"""What makes the jitted train step faster on this CPU: XLA flags, host devices, batch size, donation, augmentation.

  python benchmarks/train_step_options.py [--width=0.25 --batch_size=128 --reps=3]

Every candidate is a worker process with its own XLA_FLAGS (flags are read once per process) that builds the real step
(`harness.JaxTrainer`: ResNet-18, CIFAR stem, fp32, dense mask) and then waits; the workers are then timed in turn,
baseline, candidate 1, candidate 2, ..., repeated, so neighbours see the same load. Each candidate's figure is the
median over repetitions of baseline_time / candidate_time per image (> 1: faster than the default). A breakdown of the
default step (forward, forward + backward, whole step) is timed the same way in this process. Appends one JSON line to
benchmarks/results.jsonl.
"""
import functools
import json
import os
import subprocess
import sys
import time

import jax
import optax
from absl import app, flags

import harness
from mialth_jax.data import augment
from mialth_jax.lottery import masks

flags.DEFINE_float("width", 0.25, "width multiplier of ResNet-18")
flags.DEFINE_integer("batch_size", 128, "images per step of the baseline")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_integer("images_per_rep", 384, "images each candidate trains on per repetition")
flags.DEFINE_list("candidates", [], "names of CANDIDATES to time (empty: all); 'default' is always timed")
flags.DEFINE_string("worker", "", "internal: run as the worker for this JSON spec")
F = flags.FLAGS

DEVICES = "--xla_force_host_platform_device_count"
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"
YNN_CONV = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"  # YNNPACK convolutions
# name: (extra XLA_FLAGS, JaxTrainer keyword arguments)
CANDIDATES = {
    "default": ("", {}),
    "eigen_single_thread": (SINGLE_THREAD, {}),
    "onednn": ("--xla_cpu_use_onednn=true", {}),
    "2_devices_eigen_single_thread": (f"{DEVICES}=2 {SINGLE_THREAD}", {}),
    "4_devices": (f"{DEVICES}=4", {}),
    "8_devices": (f"{DEVICES}=8", {}),
    "8_devices_eigen_single_thread": (f"{DEVICES}=8 {SINGLE_THREAD}", {}),
    "ynn_conv": (YNN_CONV, {}),
    "ynn_conv_2_devices": (f"{YNN_CONV} {DEVICES}=2", {}),
    "ynn_conv_8_devices": (f"{YNN_CONV} {DEVICES}=8", {}),
    "8_devices_batch_256": (f"{DEVICES}=8", {"batch_size": 256}),
    "batch_64": ("", {"batch_size": 64}),
    "batch_256": ("", {"batch_size": 256}),
    "no_donation": ("", {"donate": False}),
    "augment_cifar": ("", {"augment": "cifar"}),
}


def worker(spec: dict) -> None:
  """Builds the step, warms it up, then answers each stdin line 'N' with the wall and CPU seconds of N steps."""
  trainer = harness.JaxTrainer(spec["width"], **{"batch_size": spec["batch_size"], **spec["kwargs"]})
  trainer.run(2)
  print(json.dumps({"ready": True, "batch_size": trainer.loop.batch_size, "devices": len(jax.devices())}), flush=True)
  for line in sys.stdin:
    start, start_cpu = time.perf_counter(), time.process_time()
    trainer.run(int(line))
    print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - start_cpu}), flush=True)


class Worker:
  """A worker process for one candidate; `time_images(n)` trains on about n images, returns wall and CPU s/image."""

  def __init__(self, name: str, xla_flags: str, kwargs: dict):
    spec = {"width": F.width, "batch_size": F.batch_size, "kwargs": kwargs}
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip())
    self.name = name
    self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(spec)}"],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
    self.info = self._reply()

  def _reply(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.name} exited with status {self.proc.wait()}")
    return json.loads(line)

  def time_images(self, num_images: int) -> harness.Measured:
    steps = max(1, num_images // self.info["batch_size"])
    self.proc.stdin.write(f"{steps}\n")
    self.proc.stdin.flush()
    reply = self._reply()
    return harness.Measured(reply["wall"] / (steps * self.info["batch_size"]),
                            reply["cpu"] / (steps * self.info["batch_size"]))

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


def breakdown(reps: int) -> dict:
  """Seconds per step of the default step's parts: train-mode forward + loss, + backward, + optimiser and masks.

  Everything the parts read is a jit argument, as in the real step (a captured mask could be folded away), and the
  forward returns the new BatchNorm statistics, so XLA cannot skip computing them.
  """
  trainer = harness.JaxTrainer(F.width, F.batch_size)
  images, labels, idx = trainer.next_inputs(0)
  state, model, tx = trainer.state, trainer.model, trainer.tx
  x, y = augment.normalise(images[idx], trainer.data.mean, trainer.data.std), labels[idx]

  def forward(params, batch_stats, x, y):
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                  mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

  def forward_backward(params, batch_stats, x, y):
    return jax.grad(forward, has_aux=True)(params, batch_stats, x, y)

  def whole_step(params, batch_stats, opt_state, mask, x, y):
    grads, new_stats = forward_backward(params, batch_stats, x, y)
    updates, opt_state = tx.update(masks.apply_mask(grads, mask), opt_state, params)
    return masks.apply_mask(optax.apply_updates(params, updates), mask), new_stats, opt_state
  common = (state.params, state.batch_stats)
  parts = {"forward": functools.partial(jax.jit(forward), *common, x, y),
           "forward_backward": functools.partial(jax.jit(forward_backward), *common, x, y),
           "whole_step": functools.partial(jax.jit(whole_step), *common, state.opt_state, state.mask, x, y)}
  for fn in parts.values():
    jax.block_until_ready(fn())
  times, _ = harness.interleaved({k: (lambda f=f: jax.block_until_ready(f())) for k, f in parts.items()}, reps)
  return {k: harness.median(v) for k, v in times.items()}


def main(argv):
  del argv
  if F.worker:
    return worker(json.loads(F.worker))
  setting = harness.setting(width=F.width, batch_size=F.batch_size, dtype="float32", image="32x32x3")
  harness.print_setting(setting)
  started = time.perf_counter()
  chosen = {n: c for n, c in CANDIDATES.items() if n == "default" or not F.candidates or n in F.candidates}
  workers = {name: Worker(name, *spec) for name, spec in chosen.items()}
  print(f"{len(workers)} workers built and warmed up in {time.perf_counter() - started:.0f} s")
  wall, cpu = harness.interleaved({n: functools.partial(w.time_images, F.images_per_rep)
                                   for n, w in workers.items()}, F.reps)
  for w in workers.values():
    w.close()
  print(f"\nResNet-18 width {F.width:g}, fp32, {F.reps} interleaved reps of ~{F.images_per_rep} images each:")
  result = {}
  for name, (xla_flags, kwargs) in chosen.items():
    speedup, cpu_saving = harness.ratio(wall, name, "default"), harness.ratio(cpu, name, "default")
    ips, cpu_ms = 1 / harness.median(wall[name]), 1e3 * harness.median(cpu[name])
    result[name] = {"xla_flags": xla_flags, "kwargs": kwargs, "images_per_s": ips, "speedup_vs_default": speedup,
                    "cpu_ms_per_image": cpu_ms, "cpu_efficiency_vs_default": cpu_saving}
    print(f"  {name:<30} {ips:6.1f} img/s  wall x{speedup:.2f}  CPU {cpu_ms:5.1f} ms/img (x{cpu_saving:.2f})  "
          f"{xla_flags} {kwargs or ''}")
  parts = breakdown(F.reps)
  forward_gflop = F.batch_size * harness.convention_gflop(F.width)
  backward = parts["forward_backward"] - parts["forward"]
  print("breakdown of the default step (s/step, medians): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
  print(f"  forward {forward_gflop / parts['forward']:.0f} GFLOP/s, "
        f"backward {2 * forward_gflop / backward:.0f} GFLOP/s (convention: backward = 2x forward FLOPs; "
        f"measured backward / forward time = {backward / parts['forward']:.2f}), optimiser + masks "
        f"{100 * (1 - parts['forward_backward'] / parts['whole_step']):.0f} % of the step")
  harness.append_result({"benchmark": "train_step_options", **setting, "load_avg_end": harness.load_avg(),
                         "candidates": result, "breakdown_s": parts})


if __name__ == "__main__":
  app.run(main)
