"""Per-host input: what each process of a job reads and decodes, 1 process x 8 devices vs 2 processes x 4 devices.

  python benchmarks/per_host_input.py                         # 64x64 crops, batch 64, 4 steps (CPU-sized)
  python benchmarks/per_host_input.py --image_size=224 --batch_size=256 --steps=20

The real streamed path of an ImageNet run: `train.step_inputs` over `tfds_source.CenterCropSource` (PIL decode, resize,
center crop) on generated photo-like JPEG records held in memory (input_pipeline_vs_synthetic's), then one
extraction pass (`inference.process_local_batch`, what evaluation and the attacks' confidence extraction read) over
every record. Each job runs as real processes on localhost (2 x 4 through `hosts.initialize`, the launcher's code);
the records count the JPEG bytes handed out and the images decoded, per process. Target: with 2 processes each
decodes half the images the single process decodes (share 0.5; its bytes are about half, as its JPEGs' sizes fall),
and every global batch is the same array (its checksum) whatever the number of processes. Appends one JSON line to
benchmarks/results.jsonl.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P

import harness
import input_pipeline_vs_synthetic as jpeg_input  # defines --image_size, --batch_size, --num_jpegs, --steps

_WORKER = flags.DEFINE_string("worker", None, "internal: PORT:PROCESSES:PROCESS_ID:OUT of one worker process")
F = flags.FLAGS
JOBS = (1, 2)  # processes per job; each job has 8 CPU devices in all
TARGET = 0.5   # bytes and images per process of the 2-process job / those of the 1-process job


class CountingRecords(jpeg_input.JpegRecords):
  """JPEG records that count what they hand out: each is decoded once by CenterCropSource."""

  def __init__(self, jpegs: list[bytes]):
    super().__init__(jpegs)
    self.images, self.bytes = 0, 0

  def __getitems__(self, keys: list[int]) -> list[dict]:
    records = super().__getitems__(keys)
    self.images += len(records)
    self.bytes += sum(len(r["image"]) for r in records)
    return records


def _worker(port: int, processes: int, process_id: int, out: str) -> None:
  """One process of a job: reads F.steps streamed train batches and one extraction pass; writes its counts."""
  jax.config.update("jax_num_cpu_devices", 8 // processes)
  from mialth_jax import inference
  from mialth_jax.data import tfds_source
  from mialth_jax.lottery import train
  from mialth_jax.utils import hosts
  if processes > 1:
    hosts.initialize(f"localhost:{port}", processes, process_id, timeout_s=120)
  rng = np.random.default_rng(0)
  num_jpegs = F.num_jpegs or 4 * F.batch_size
  jpegs = [jpeg_input.photo_like_jpeg(rng) for _ in range(num_jpegs)]
  records = CountingRecords(jpegs)
  crops = tfds_source.CenterCropSource(records, F.image_size)
  mesh = inference.make_mesh()
  data = train.TrainData(images=None, labels=None, host_images=crops, host_labels=np.arange(num_jpegs, dtype=np.int32),
                         test_images=None, test_labels=None, mean=None, std=None)
  loop = train.LoopConfig(name="bench", seed=0, total_steps=F.steps, steps_per_epoch=num_jpegs // F.batch_size,
                          batch_size=F.batch_size, augment="none", eval_every_steps=F.steps, log_every_steps=1,
                          checkpoint_every_steps=0)
  # Integer sums wrap modulo 2**32 in any order: the checksum of a batch does not depend on how it was reduced.
  weights = 1 + jnp.arange(F.batch_size, dtype=jnp.uint32)[:, None, None, None]
  checksum = jax.jit(lambda x: (x.astype(jnp.uint32) * weights).sum(dtype=jnp.uint32),
                     out_shardings=NamedSharding(mesh, P()))
  start = time.perf_counter()
  sums = [int(checksum(images)) for images, _ in train.step_inputs(loop, data, mesh, 0)]
  train_counts = {"images": records.images, "bytes": records.bytes, "seconds": time.perf_counter() - start}
  batch_sharding = NamedSharding(mesh, P(inference.DATA_AXIS))
  for ids, _ in inference.padded_batches(np.arange(num_jpegs), F.batch_size, mesh.size):
    jax.block_until_ready(inference.process_local_batch(crops, ids, batch_sharding))
  with open(out, "w") as f:
    json.dump({"train": train_counts, "extraction": {"images": records.images - train_counts["images"],
                                                     "bytes": records.bytes - train_counts["bytes"]},
               "checksums": sums, "jpeg_kb": np.mean([len(j) for j in jpegs]) / 1e3}, f)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _job(processes: int, folder: str) -> list[dict]:
  """Runs one job as `processes` worker processes; returns each process's counts."""
  port, outs = _free_port(), [os.path.join(folder, f"{processes}_{i}.json") for i in range(processes)]
  passed = [f"--{name}={F[name].value}" for name in ("image_size", "batch_size", "num_jpegs", "steps")]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--worker={port}:{processes}:{i}:{outs[i]}",
                             *passed], env=env) for i in range(processes)]
  if [p.wait() for p in procs] != [0] * processes:
    raise SystemExit(f"a worker of the {processes}-process job failed")
  return [json.load(open(out)) for out in outs]


def main(argv):
  del argv
  if _WORKER.value:
    port, processes, process_id, out = _WORKER.value.split(":", 3)
    _worker(int(port), int(processes), int(process_id), out)
    return
  setting = harness.setting(image_size=F.image_size, batch_size=F.batch_size, steps=F.steps,
                            num_jpegs=F.num_jpegs or 4 * F.batch_size, devices_per_job=8)
  harness.print_setting(setting)
  with tempfile.TemporaryDirectory() as folder:
    jobs = {processes: _job(processes, folder) for processes in JOBS}
  print(f"\nper process, {F.steps} train steps of {F.batch_size} + one extraction pass over "
        f"{setting['num_jpegs']} records ({jobs[1][0]['jpeg_kb']:.0f} KB JPEGs, {F.image_size}x{F.image_size} crops):")
  per_host = {}
  for processes, counts in jobs.items():
    for i, c in enumerate(counts):
      per_host[f"{processes}x{8 // processes}_p{i}"] = {part: {k: c[part][k] for k in ("images", "bytes")}
                                                        for part in ("train", "extraction")}
      print(f"  {processes} x {8 // processes} devices, process {i}: train {c['train']['images']:5d} images "
            f"{c['train']['bytes'] / 1e6:7.2f} MB ({c['train']['seconds']:.1f} s)   extraction "
            f"{c['extraction']['images']:5d} images {c['extraction']['bytes'] / 1e6:7.2f} MB")
  single = jobs[1][0]
  shares = {f"{part}_{unit}": max(c[part][unit] / single[part][unit] for c in jobs[2])
            for part in ("train", "extraction") for unit in ("images", "bytes")}
  images_share = max(shares["train_images"], shares["extraction_images"])
  same_batches = all(c["checksums"] == single["checksums"] for c in jobs[2])
  print("  largest share of a process of the 2-process job, of what the single process read: "
        + ", ".join(f"{k} {v:.3f}" for k, v in shares.items()))
  print(f"  images: target {TARGET}: {harness.verdict(images_share, TARGET, higher_is_better=False)} (bytes follow the "
        "sizes of the JPEGs that fall to each process)")
  print(f"  every global batch the same array (checksum) for 1 and 2 processes: {same_batches}")
  harness.append_result({"benchmark": "per_host_input", "target": TARGET, **setting, "load_avg_end": harness.load_avg(),
                         "per_host": per_host, "shares": shares, "same_batches": same_batches,
                         "met": images_share <= TARGET and same_batches})


if __name__ == "__main__":
  flags.FLAGS.set_default("image_size", 64)
  flags.FLAGS.set_default("batch_size", 64)
  flags.FLAGS.set_default("steps", 4)
  app.run(main)
