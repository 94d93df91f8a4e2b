"""What DP-SGD costs in the train step: per-example clipped and noised gradients against the plain step.

  python benchmarks/dp_step.py [--width=0.25 --batch_size=128 --reps=5 --steps=3]          # this CPU
  JAX_PLATFORMS=cuda python benchmarks/dp_step.py --reps=20 --steps=20                     # a GPU (jax[cuda12])

Three candidates run the real step (`train.make_jitted_step`: ResNet-18, CIFAR stem, width 1/4, fp32, 128 random
uint8 32x32 images per step, resident on device):
  dp           GroupNorm; the `dp_sgd` step hook (jax_privacy.clipped_grad per example, the gaussian_privatizer's
               noise) on Poisson batches of 1,024 images at rate 1/8 truncated and padded to 128 rows
               (defences/dp_budget.py), so every step computes 128 per-example gradients;
  plain_group  GroupNorm, the plain step on the epoch shuffles: the same model, the fair baseline;
  plain_batch  BatchNorm, the plain step: the default model, what non-private runs train.
Timed interleaved after warm-up; ratios are medians of per-repetition ratios of step times. Goal: dp / plain_group
<= 3. A DP run's steps hold defences.dp_sgd.max_batch_size rows, more than the expected batch (the automatic size
for 128 expected of 5,000 members is printed), and cost that many rows' work. XLA's cost analysis gives each step's
FLOPs. Appends one JSON line to benchmarks/results.jsonl.
"""
import numpy as np
from absl import app, flags
from scipy import stats

import harness
from mialth_jax.defences import dp_budget

flags.DEFINE_float("width", 0.25, "width multiplier of ResNet-18")
flags.DEFINE_integer("batch_size", 128, "images per step (the DP step's rows)")
flags.DEFINE_integer("reps", 5, "interleaved repetitions")
flags.DEFINE_integer("steps", 3, "steps per candidate and repetition")
F = flags.FLAGS
GOAL = 3.0
NUM_IMAGES = 1024
SUBSET_MEMBERS = 5000  # the CIFAR-10 subset run's members, for the size of a DP run's steps


def dp_trainer() -> harness.JaxTrainer:
  """The DP step: GroupNorm ResNet, the dp_sgd hook's slot, Poisson batches padded to batch_size rows."""
  sampling = dp_budget.Sampling(NUM_IMAGES, F.batch_size / NUM_IMAGES, F.batch_size)
  extra = {"dp_sgd": {"clip_norm": np.float32(1.0), "noise_multiplier": np.float32(1.0),
                      "expected_batch_size": np.float32(F.batch_size)}}
  return harness.JaxTrainer(F.width, F.batch_size, num_images=NUM_IMAGES, extra=extra,
                            workload=harness.Workload(width=F.width, norm="group"),
                            batch_selection=dp_budget.PoissonBatches(0, sampling, F.batch_size))


def main(argv):
  del argv
  setting = harness.setting(width=F.width, batch_size=F.batch_size, dtype="float32", image="32x32x3")
  harness.print_setting(setting)
  trainers = {"dp": dp_trainer(),
              "plain_group": harness.JaxTrainer(F.width, F.batch_size, num_images=NUM_IMAGES,
                                                workload=harness.Workload(width=F.width, norm="group")),
              "plain_batch": harness.JaxTrainer(F.width, F.batch_size, num_images=NUM_IMAGES)}
  costs = {name: t.train_step_cost() for name, t in trainers.items()}
  wall = harness.time_trainers(trainers, F.steps, F.reps)
  print(f"\nResNet-18 width {F.width:g}, batch {F.batch_size}, fp32, {F.steps} steps x {F.reps} interleaved reps:")
  for name in trainers:
    print(f"  {name:<12} {F.steps * F.batch_size / harness.median(wall[name]):7.1f} img/s   "
          f"{harness.median(wall[name]) / F.steps * 1e3:8.1f} ms/step   XLA cost analysis: "
          f"{costs[name].get('flops', 0) / 1e9:.3f} GFLOP per step")
  ratios = {"dp/plain_group": harness.ratio(wall, "plain_group", "dp"),
            "dp/plain_batch": harness.ratio(wall, "plain_batch", "dp"),
            "plain_group/plain_batch": harness.ratio(wall, "plain_batch", "plain_group")}
  for name, value in ratios.items():
    goal = f"  goal <= {GOAL}: {harness.verdict(value, GOAL, higher_is_better=False)}"
    print(f"  step time {name:<24} = {value:.2f}x{goal if name == 'dp/plain_group' else ''}")
  rows = max(F.batch_size, int(stats.binom.isf(dp_budget.TRUNCATION_PROBABILITY, SUBSET_MEMBERS,
                                               F.batch_size / SUBSET_MEMBERS)))
  print(f"  a DP run with {F.batch_size} expected of {SUBSET_MEMBERS} members steps on {rows} rows (automatic "
        f"max_batch_size): about {rows / F.batch_size:.2f}x this DP step's work")
  harness.append_result({"benchmark": "dp_step", "goal": GOAL, **setting, "load_avg_end": harness.load_avg(),
                         "steps": F.steps, "reps": F.reps,
                         "images_per_s": {k: F.steps * F.batch_size / harness.median(v) for k, v in wall.items()},
                         "ratios": ratios, "met": ratios["dp/plain_group"] <= GOAL,
                         "xla_flops": {k: c.get("flops") for k, c in costs.items()}})


if __name__ == "__main__":
  app.run(main)
