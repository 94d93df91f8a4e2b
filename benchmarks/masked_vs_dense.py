"""What the lottery mask costs in the train step: an 80 %-sparse mask vs an all-ones mask vs no mask at all.

  python benchmarks/masked_vs_dense.py [--width=0.25 --batch_size=128 --reps=7]

All three run the real step (`train.make_jitted_step`, ResNet-18 CIFAR stem, fp32, random uint8 images on device):
  s80:   the 80 % global-magnitude mask of a ticket (where() on every prunable gradient and parameter);
  dense: the all-ones bool mask of the dense model (the same work as s80: masks are applied, not exploited);
  none:  a scalar True on every leaf, which XLA folds away: the step with no mask.
Timed interleaved after warm-up; ratios are medians of per-repetition ratios. Target: masked/dense images/s >= 0.97
(s80 vs dense, and dense vs none). XLA's cost analysis shows the extra FLOPs and bytes of the mask. Appends one JSON
line to benchmarks/results.jsonl.
"""
from absl import app, flags

import harness

flags.DEFINE_float("width", 0.25, "width multiplier of ResNet-18")
flags.DEFINE_integer("batch_size", 128, "images per step")
flags.DEFINE_integer("reps", 7, "interleaved repetitions")
flags.DEFINE_integer("steps", 3, "steps per candidate and repetition")
F = flags.FLAGS
TARGET = 0.97
MASKS = ("s80", "dense", "none")


def main(argv):
  del argv
  setting = harness.setting(width=F.width, batch_size=F.batch_size, dtype="float32", image="32x32x3")
  harness.print_setting(setting)
  trainers = {kind: harness.JaxTrainer(F.width, F.batch_size, mask=kind) for kind in MASKS}
  costs = {kind: t.train_step_cost() for kind, t in trainers.items()}
  wall = harness.time_trainers(trainers, F.steps, F.reps)
  print(f"\nResNet-18 width {F.width:g}, batch {F.batch_size}, fp32, {F.steps} steps x {F.reps} interleaved reps:")
  for kind in MASKS:
    print(f"  mask {kind:<6} {F.steps * F.batch_size / harness.median(wall[kind]):7.1f} img/s   XLA cost analysis: "
          f"{costs[kind].get('flops', 0) / 1e9:.3f} GFLOP, {costs[kind].get('bytes accessed', 0) / 1e6:.0f} MB "
          "accessed per step")
  ratios = {"s80/dense": harness.ratio(wall, "s80", "dense"), "dense/none": harness.ratio(wall, "dense", "none"),
            "s80/none": harness.ratio(wall, "s80", "none")}
  for name, value in ratios.items():
    print(f"  ratio {name:<10} = {value:.3f}  target >= {TARGET}: {harness.verdict(value, TARGET)}")
  extra = {k: costs[k].get("bytes accessed", 0) - costs["none"].get("bytes accessed", 0) for k in ("s80", "dense")}
  print(f"  XLA's bytes accessed, masked - unmasked: dense {extra['dense'] / 1e6:+.1f} MB, "
        f"s80 {extra['s80'] / 1e6:+.1f} MB of {costs['none'].get('bytes accessed', 0) / 1e6:.0f} MB per step "
        "(the where() fuses into the update)")
  harness.append_result({"benchmark": "masked_vs_dense", "target": TARGET, **setting,
                         "load_avg_end": harness.load_avg(), "steps": F.steps, "reps": F.reps,
                         "images_per_s": {k: F.steps * F.batch_size / harness.median(v) for k, v in wall.items()},
                         "ratios": ratios, "met": min(ratios["s80/dense"], ratios["dense/none"]) >= TARGET,
                         "xla_cost": {k: {"flops": c.get("flops"), "bytes_accessed": c.get("bytes accessed")}
                                      for k, c in costs.items()}})


if __name__ == "__main__":
  app.run(main)
