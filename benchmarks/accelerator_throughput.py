"""Training throughput on the devices present: CIFAR ResNet-18 and ImageNet ResNet-50, bf16, MFU, data-parallel scaling.

  python benchmarks/accelerator_throughput.py          # on a GPU or TPU host: both workloads, bf16, 1..N devices
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/accelerator_throughput.py \
      --workloads=resnet18_cifar --dtype=float32 --width=0.125 --batch_per_device=8 --steps=2 --reps=2
                                                        # a CPU check of the script itself (figures mean nothing)

For each workload and each device count k in 1, 2, 4, ..., N (the first k devices of one host): the real masked step
(`train.make_jitted_step`: dense mask, SGD momentum, BatchNorm statistics over the global batch) with
`batch_per_device * k` images per step (weak scaling), on random uint8 images resident on the devices, so the input
pipeline is not measured here (benchmarks/input_pipeline_vs_synthetic.py does that). The device counts are timed
interleaved after warm-up; the figures are medians over repetitions. Printed per count: images/s, TFLOP/s by XLA's
cost analysis of the step and by the issue's convention (2 FLOPs per multiply-add, training = 3x forward), MFU against
the device's peak dense bf16 TFLOP/s (a table of known devices, or --peak_tflops), and scaling efficiency
ips(k) / (k * ips(1)). Targets: one H100 >= 45,000 img/s (ResNet-18 CIFAR) and >= 4,500 img/s (ResNet-50 224),
scaling >= 0.9. Appends one JSON line to benchmarks/results.jsonl.
"""
import dataclasses
import re

import jax
from absl import app, flags

import harness

flags.DEFINE_list("workloads", ["resnet18_cifar", "resnet50_imagenet"], "workloads to time (see WORKLOADS)")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype (parameters stay float32)")
flags.DEFINE_float("width", 1.0, "width multiplier (1.0 for the figures; smaller only to check the script on a CPU)")
flags.DEFINE_integer("batch_per_device", 0, "images per device and step (0: the workload's default)")
flags.DEFINE_list("device_counts", [], "device counts to time (default: 1, 2, 4, ... and all devices)")
flags.DEFINE_integer("steps", 20, "steps per device count and repetition")
flags.DEFINE_integer("reps", 5, "interleaved repetitions")
flags.DEFINE_float("peak_tflops", 0.0, "peak dense TFLOP/s of one device for MFU (0: look the device kind up)")
F = flags.FLAGS

# name: (workload, default images per device, forward GFLOP per image at width 1 by the convention, target
# images/s on one H100). ResNet-50 at 224: 4.09 G multiply-adds forward.
WORKLOADS = {
    "resnet18_cifar": (harness.Workload("resnet18", "cifar", 32, 10), 512, harness.RESNET18_CIFAR_GFLOP, 45_000),
    "resnet50_imagenet": (harness.Workload("resnet50", "imagenet", 224, 1000), 256, 8.18, 4_500),
}
SCALING_TARGET = 0.9
# Peak dense bf16 TFLOP/s per JAX device (a TPU v2/v3 chip is two devices), from the vendors' data sheets.
PEAK_BF16_TFLOPS = (
    (r"H100.*PCIe", 756.0), (r"H100|H200|GH200", 989.0), (r"A100", 312.0), (r"L4\b", 121.0),
    (r"TPU v2", 22.5), (r"TPU v3", 61.5), (r"TPU v4", 275.0), (r"TPU v5 ?lite|TPU v5e", 197.0),
    (r"TPU v5", 459.0), (r"TPU v6 ?lite|TPU v6e", 918.0),
)


def peak_tflops(device_kind: str) -> float | None:
  """Peak dense TFLOP/s of one device: --peak_tflops, else the table's figure for bf16 runs, else None (no MFU)."""
  if F.peak_tflops:
    return F.peak_tflops
  if F.dtype != "bfloat16":   # the table holds bf16 peaks only
    return None
  return next((peak for pattern, peak in PEAK_BF16_TFLOPS if re.search(pattern, device_kind)), None)


def device_counts() -> list[int]:
  """--device_counts, or the powers of two below the device count and the count itself."""
  total = len(jax.devices())
  if F.device_counts:
    counts = sorted({int(k) for k in F.device_counts})
    if counts[0] < 1 or counts[-1] > total:
      raise app.UsageError(f"--device_counts must lie in [1, {total}] (the devices present), got {counts}")
    return counts
  return sorted({2 ** i for i in range(total.bit_length()) if 2 ** i <= total} | {total})


def judge_throughput(name: str, ips: float, target: float, device_kind: str) -> tuple[bool | None, str]:
  """The one-H100 target's verdict, or None where this device is not an H100."""
  if "H100" not in device_kind:
    return None, f"target {target:,} img/s is for one H100; not judged on {device_kind}"
  return ips >= target, f"{name} on one H100: {ips:,.0f} img/s, target >= {target:,}: {harness.verdict(ips, target)}"


def measure(name: str) -> dict:
  """Interleaved images/s of one workload at every device count, with FLOP rates, MFU and scaling."""
  workload, default_batch, convention_gflop, target = WORKLOADS[name]
  workload = dataclasses.replace(workload, width=F.width, dtype=F.dtype)
  per_device = F.batch_per_device or default_batch
  counts = device_counts()
  trainers = {k: harness.JaxTrainer(None, per_device * k, workload=workload, devices=jax.devices()[:k],
                                    num_images=2 * per_device * k) for k in counts}
  xla_gflop = trainers[counts[0]].train_step_cost().get("flops", float("nan")) / (per_device * counts[0]) / 1e9
  wall = harness.time_trainers(trainers, F.steps, F.reps)
  kind = jax.devices()[0].device_kind
  peak = peak_tflops(kind)
  train_gflop = harness.TRAIN_FACTOR * convention_gflop * F.width ** 2
  ips = {k: F.steps * per_device * k / harness.median(wall[k]) for k in counts}
  print(f"\n{name}: {workload.model} {workload.stem} stem, {workload.image_size}x{workload.image_size}, width "
        f"{F.width:g}, {F.dtype}, {per_device} images per device and step, {F.steps} steps x {F.reps} reps; "
        f"FLOPs per trained image: XLA {xla_gflop:.3f} G, convention {train_gflop:.3f} G; peak "
        + (f"{peak:g} TFLOP/s per device" if peak else f"unknown for {F.dtype} here (no MFU; pass --peak_tflops)"))
  rows = []
  for k in counts:
    row = {"devices": k, "global_batch": per_device * k, "images_per_s": ips[k],
           "xla_tflops": ips[k] * xla_gflop / 1e3, "convention_tflops": ips[k] * train_gflop / 1e3,
           "scaling": ips[k] / (k * ips[counts[0]] / counts[0])}
    if peak:
      row["mfu_xla"], row["mfu_convention"] = row["xla_tflops"] / (k * peak), row["convention_tflops"] / (k * peak)
    rows.append(row)
    mfu = f"  MFU {100 * row['mfu_xla']:.1f} % (convention {100 * row['mfu_convention']:.1f} %)" if peak else ""
    print(f"  {k:>3} device(s) {ips[k]:10,.0f} img/s  {row['xla_tflops']:8.3g} TFLOP/s (XLA){mfu}  "
          f"scaling {row['scaling']:.3f}")
  met, line = judge_throughput(name, ips[1], target, kind) if 1 in ips else (None, "1 device not timed")
  print(f"  {line}")
  scaling_met = None
  if len(counts) > 1:
    worst = min(r["scaling"] for r in rows)
    if jax.devices()[0].platform == "cpu":
      print(f"  scaling: worst {worst:.3f}; not judged: simulated CPU devices share the host's cores")
    else:
      scaling_met = worst >= SCALING_TARGET
      print(f"  scaling: worst {worst:.3f}, target >= {SCALING_TARGET}: {harness.verdict(worst, SCALING_TARGET)}")
  return {"workload": name, "model": workload.model, "image_size": workload.image_size, "width": F.width,
          "batch_per_device": per_device, "xla_train_gflop_per_image": xla_gflop,
          "convention_train_gflop_per_image": train_gflop, "peak_tflops_per_device": peak, "rows": rows,
          "target_images_per_s": target, "met": met, "scaling_met": scaling_met}


def main(argv):
  del argv
  unknown = sorted(set(F.workloads) - set(WORKLOADS))
  if unknown:
    raise app.UsageError(f"--workloads: unknown {unknown}; expected some of {', '.join(WORKLOADS)}")
  setting = harness.setting(dtype=F.dtype, width=F.width, steps=F.steps, reps=F.reps,
                            flops="XLA cost analysis; convention 2 FLOPs/MAC, training = 3x forward")
  harness.print_setting(setting)
  results = [measure(name) for name in F.workloads]
  harness.append_result({"benchmark": "accelerator_throughput", **setting, "load_avg_end": harness.load_avg(),
                         "results": results})


if __name__ == "__main__":
  app.run(main)
