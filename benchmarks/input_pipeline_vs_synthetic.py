"""The input pipeline vs synthetic data: does the train step wait for the host?

  python benchmarks/input_pipeline_vs_synthetic.py        # on a GPU or TPU host: ResNet-50, 224 crops, bf16
  python benchmarks/input_pipeline_vs_synthetic.py --model=resnet18 --image_size=64 --width=0.25 \
      --dtype=float32 --batch_size=32 --steps=3 --reps=3  # the same question at CPU scale

Four ways to feed the same real train step (`harness.JaxTrainer`: `train.make_jitted_step`, dense mask, ImageNet stem,
batch sharded over every device), timed interleaved after warm-up (medians over repetitions):
  synthetic:      random uint8 images resident on the devices, gathered by index inside the step (no host work; the
                  path CIFAR-sized datasets take);
  host_arrays:    `train.step_inputs` streaming batches of an in-memory uint8 array: host gather, host-to-device copy,
                  two-batch prefetch thread (the cost of streaming itself);
  host_jpeg:      `train.step_inputs` over `tfds_source.CenterCropSource`, the real ImageNet reader, on JPEG records
                  held in memory: PIL decode, resize, center crop on `_DECODE_THREADS` threads, then as above;
  decode_only:    `CenterCropSource` alone, no step: the host pipeline's own rate.
The JPEGs are generated (smooth colour fields plus noise, 500x375, quality 90, ~90 KB: ImageNet's mean is ~110 KB at
about 400x350), so disk and page cache are not measured: a prepared array_record split adds its read time.
Target: streamed / synthetic images/s >= 0.95 (the accelerator never waits on the host). Appends one JSON line to
benchmarks/results.jsonl.
"""
import io
import time

import numpy as np
from absl import app, flags
from PIL import Image

import harness
from mialth_jax.data import tfds_source

flags.DEFINE_string("model", "resnet50", "resnet18, resnet34 or resnet50 (ImageNet stem)")
flags.DEFINE_integer("image_size", 224, "crop size fed to the network")
flags.DEFINE_float("width", 1.0, "width multiplier")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype")
flags.DEFINE_integer("batch_size", 256, "global images per step")
flags.DEFINE_integer("num_jpegs", 0, "distinct JPEG records (0: four batches' worth)")
flags.DEFINE_integer("steps", 20, "steps per candidate and repetition")
flags.DEFINE_integer("reps", 5, "interleaved repetitions")
F = flags.FLAGS
TARGET = 0.95
JPEG_SHAPE, JPEG_QUALITY, JPEG_NOISE = (375, 500), 90, 16


def photo_like_jpeg(rng: np.random.Generator) -> bytes:
  """A JPEG with the size and decode cost of a photo: a bicubic-upsampled coarse colour field plus pixel noise."""
  height, width = JPEG_SHAPE
  coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
  field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
  pixels = np.clip(field + rng.normal(0, JPEG_NOISE, field.shape), 0, 255).astype(np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, "JPEG", quality=JPEG_QUALITY)
  return out.getvalue()


class JpegRecords:
  """In-memory records shaped like a tfds data source with SkipDecoding: `record["image"]` is JPEG bytes."""

  def __init__(self, jpegs: list[bytes]):
    self._records = [{"image": jpeg} for jpeg in jpegs]

  def __len__(self) -> int:
    return len(self._records)

  def __getitems__(self, keys: list[int]) -> list[dict]:
    return [self._records[k] for k in keys]


def steady_state(trainer: harness.JaxTrainer) -> harness.Measured:
  """(wall, CPU) seconds of F.steps steps, after 2 untimed ones: a streamed trainer's prefetch thread read those two
  batches while the other candidates were timed, and they must not count as free."""
  trainer.run(2)
  start, start_cpu = time.perf_counter(), time.process_time()
  trainer.run(F.steps)
  return harness.Measured(time.perf_counter() - start, time.process_time() - start_cpu)


def main(argv):
  del argv
  workload = harness.Workload(F.model, "imagenet", F.image_size, 1000, F.width, F.dtype)
  num_jpegs = F.num_jpegs or 4 * F.batch_size
  rng = np.random.default_rng(0)
  jpegs = [photo_like_jpeg(rng) for _ in range(num_jpegs)]
  labels = rng.integers(0, 1000, num_jpegs).astype(np.int32)
  crops = tfds_source.CenterCropSource(JpegRecords(jpegs), F.image_size)
  arrays = crops[np.arange(num_jpegs)]
  setting = harness.setting(model=F.model, image_size=F.image_size, width=F.width, dtype=F.dtype,
                            batch_size=F.batch_size, decode_threads=tfds_source._DECODE_THREADS,
                            mean_jpeg_kb=round(np.mean([len(j) for j in jpegs]) / 1e3, 1))
  harness.print_setting(setting)
  trainers = {name: harness.JaxTrainer(None, F.batch_size, workload=workload, num_images=num_jpegs)
              for name in ("synthetic", "host_arrays", "host_jpeg")}
  trainers["host_arrays"].stream_from(arrays, labels)
  trainers["host_jpeg"].stream_from(crops, labels)
  batches = [np.arange(s, s + F.batch_size) % num_jpegs for s in range(0, num_jpegs, F.batch_size)]
  candidates = {name: (lambda t=t: steady_state(t)) for name, t in trainers.items()}
  candidates["decode_only"] = lambda: [crops[batches[s % len(batches)]] for s in range(F.steps)]
  for trainer in trainers.values():
    trainer.run(2)   # compile and warm up
  wall, cpu = harness.interleaved(candidates, F.reps)
  ips = {k: F.steps * F.batch_size / harness.median(v) for k, v in wall.items()}
  ratios = {k: harness.ratio(wall, k, "synthetic") for k in ("host_arrays", "host_jpeg")}
  print(f"\n{F.model} ImageNet stem, {F.image_size}x{F.image_size}, width {F.width:g}, {F.dtype}, batch {F.batch_size}, "
        f"{F.steps} steps x {F.reps} interleaved reps, {setting['jax_devices']} device(s):")
  for k, v in ips.items():
    print(f"  {k:<12} {v:9.1f} img/s  ({1e3 * harness.median(cpu[k]) / (F.steps * F.batch_size):.2f} CPU ms/img)")
  for k, r in ratios.items():
    print(f"  ratio {k}/synthetic = {r:.3f}  target >= {TARGET}: {harness.verdict(r, TARGET)}")
  headroom = ips["decode_only"] / ips["synthetic"]
  print(f"  host decode rate / synthetic step rate = {headroom:.2f} (< 1: the host cannot keep up, whatever the "
        f"prefetch; on a CPU-only machine decoding and the step share the same cores)")
  harness.append_result({"benchmark": "input_pipeline_vs_synthetic", "target": TARGET, **setting,
                         "load_avg_end": harness.load_avg(), "steps": F.steps, "reps": F.reps, "images_per_s": ips,
                         "ratios": ratios, "decode_headroom": headroom, "met": min(ratios.values()) >= TARGET})


if __name__ == "__main__":
  app.run(main)
