"""Our jitted masked train step vs a PyTorch eager step: CIFAR-stem ResNet-18, 32x32x3, on the CPU or the GPU.

  pip install -e '.[torch]'   # a CPU wheel, e.g. torch==2.13.0 (a CUDA build on a GPU host)
  python benchmarks/train_step_vs_torch.py [--widths=1.0,0.25 --batch_size=128 --reps=3]   # ~4 min on 2 busy cores
  python benchmarks/train_step_vs_torch.py --widths=1.0 --batch_size=512 --dtype=bfloat16   # on a GPU host

JAX: `train.make_jitted_step` (gather from device-resident uint8 members, normalise, forward, backward, mask the
gradient, SGD momentum 0.9 Nesterov + weight decay 5e-4, mask the parameters), a dense mask, every JAX device (the
1 real CPU device with XLA's default threading here). PyTorch: the same architecture and optimiser in eager mode (no
mask), torch.set_num_threads(2), NCHW and channels_last, on the GPU when JAX runs on one (bf16: autocast). The two are
timed interleaved (JAX, PyTorch, JAX, ...) after warm-up; the ratio is the median of the per-repetition ratios.
Target: JAX/PyTorch images/s >= 0.6 on a CPU, >= 1.0 on a GPU. Appends one JSON line to benchmarks/results.jsonl.
benchmarks/train_step_options.py measures what makes the JAX step faster (XLA flags, devices, batch, donation).
"""
import torch
from absl import app, flags

import harness
import torch_resnet

flags.DEFINE_list("widths", ["1.0", "0.25"], "width multipliers of ResNet-18")
flags.DEFINE_integer("batch_size", 128, "images per step")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_integer("threads", 2, "torch.set_num_threads")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype (bf16: JAX model dtype, torch autocast)")
flags.DEFINE_integer("steps", 0, "steps per candidate and repetition (0: 1 at width >= 0.5 and 3 below on a CPU, 50 "
                     "on a GPU)")
F = flags.FLAGS
CPU_TARGET, GPU_TARGET = 0.6, 1.0


def steps_per_rep(width: float) -> int:
  """--steps, else about 3-6 seconds of work per candidate and repetition on 2 cores, or 50 steps on a GPU."""
  if F.steps:
    return F.steps
  if torch_resnet.torch_device() == "cuda":
    return 50
  return 1 if width >= 0.5 else 3


def compare(width: float) -> dict:
  """Interleaved images/s of JAX, PyTorch NCHW and PyTorch channels_last at one width."""
  jax_trainer = harness.JaxTrainer(None, F.batch_size, workload=harness.Workload(width=width, dtype=F.dtype))
  cost = jax_trainer.train_step_cost()
  torch_options = dict(device=torch_resnet.torch_device(), dtype=F.dtype)
  candidates = {"jax": jax_trainer,
                "torch": torch_resnet.TorchTrainer(width, F.batch_size, **torch_options),
                "torch_channels_last": torch_resnet.TorchTrainer(width, F.batch_size, channels_last=True,
                                                                 **torch_options)}
  for trainer in candidates.values():
    trainer.run(2)  # compile and warm up
  n = steps_per_rep(width)
  times, cpu = harness.interleaved({k: (lambda t=t: t.run(n)) for k, t in candidates.items()}, F.reps)
  ips = {k: n * F.batch_size / harness.median(v) for k, v in times.items()}
  ratio = harness.ratio(times, "jax", "torch")
  ratio_cl = harness.ratio(times, "jax", "torch_channels_last")
  cpu_ratio = harness.ratio(cpu, "jax", "torch")
  target = GPU_TARGET if torch_resnet.torch_device() == "cuda" else CPU_TARGET
  gflop = harness.convention_gflop(width)
  xla_train_gflop = cost.get("flops", float("nan")) / F.batch_size / 1e9
  print(f"\nResNet-18 width {width:g} ({round(64 * width)} channels), batch {F.batch_size}, {F.dtype}, "
        f"{n} step(s) x {F.reps} interleaved reps:")
  for k, v in ips.items():
    print(f"  {k:<20} {v:7.1f} img/s  ({F.batch_size / v:.3f} s/step, {v * harness.TRAIN_FACTOR * gflop:.1f} GFLOP/s "
          f"by the convention, {1e3 * harness.median(cpu[k]) / (n * F.batch_size):.1f} CPU ms/img)")
  print(f"  FLOPs: convention {gflop:.4f} GFLOP forward/image x {harness.TRAIN_FACTOR} = "
        f"{harness.TRAIN_FACTOR * gflop:.3f} GFLOP/image trained; XLA cost analysis of the step "
        f"{xla_train_gflop:.3f} GFLOP/image")
  print(f"  ratio JAX/PyTorch (NCHW) = {ratio:.2f}  target >= {target}: {harness.verdict(ratio, target)}")
  print(f"  ratio JAX/PyTorch (channels_last) = {ratio_cl:.2f}  target >= {target}: "
        f"{harness.verdict(ratio_cl, target)}")
  print(f"  CPU time per image PyTorch (NCHW) / JAX = {cpu_ratio:.2f} (the same comparison free of the load's "
        "share of the cores)")
  return {"width": width, "images_per_s": ips, "ratio": ratio, "ratio_channels_last": ratio_cl, "cpu_ratio": cpu_ratio,
          "target": target, "met": ratio >= target and ratio_cl >= target, "convention_gflop_forward": gflop,
          "xla_train_gflop_per_image": xla_train_gflop, "times_s": times, "cpu_s": cpu}


def main(argv):
  del argv
  torch.set_num_threads(F.threads)
  setting = harness.setting(torch=torch.__version__, torch_threads=torch.get_num_threads(), batch_size=F.batch_size,
                            torch_device=torch_resnet.torch_device(), dtype=F.dtype, image="32x32x3",
                            flops="1.11 GFLOP fwd/image x3 for training, x width^2")
  harness.print_setting(setting)
  results = [compare(float(w)) for w in F.widths]
  harness.append_result({"benchmark": "train_step_vs_torch", **setting,
                         "load_avg_end": harness.load_avg(),
                         "results": results})


if __name__ == "__main__":
  app.run(main)
