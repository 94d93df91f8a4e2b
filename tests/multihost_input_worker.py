"""One process of a 2-process job that reads streamed batches (started by tests/test_multihost.py, not collected).

  python tests/multihost_input_worker.py PORT PROCESS_ID NUM_PROCESSES OUT.json
Each process has 4 CPU devices and joins through `hosts.initialize` (the launcher's code). It reads 3 streamed train
batches of 16 (`train.step_inputs`) and one padded extraction batch of 13 (`inference.process_local_batch`) from a
source that records which examples it was asked for, and checks every assembled global array against the whole
batch read on the host; OUT.json holds the examples it read and whether every global array was right.
"""
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from mialth_jax import inference  # noqa: E402
from mialth_jax.lottery import train  # noqa: E402
from mialth_jax.utils import hosts  # noqa: E402

IMAGES = np.arange(40 * 2 * 2 * 1, dtype=np.uint8).reshape(40, 2, 2, 1)


class RecordingSource:
  """40 tiny images; remembers the ids of every read, in order."""

  def __init__(self):
    self.reads = []

  def __len__(self) -> int:
    return len(IMAGES)

  def __getitem__(self, ids: np.ndarray) -> np.ndarray:
    self.reads.append(np.asarray(ids).tolist())
    return IMAGES[ids]


def main(port: str, process_id: str, num_processes: str, out: str) -> None:
  hosts.initialize(f"localhost:{port}", int(num_processes), int(process_id), timeout_s=120)
  mesh = inference.make_mesh()
  source = RecordingSource()
  data = train.TrainData(images=None, labels=None, host_images=source, host_labels=np.arange(40, dtype=np.int32),
                         test_images=None, test_labels=None, mean=None, std=None)
  loop = train.LoopConfig(name="input", seed=3, total_steps=3, steps_per_epoch=2, batch_size=16, augment="none",
                          eval_every_steps=3, log_every_steps=1, checkpoint_every_steps=0)
  right = []
  for step, (images, labels) in enumerate(train.step_inputs(loop, data, mesh, 0)):
    idx = train.batch_indices(loop.seed, step, 40, 16, 2)
    right.append(bool(np.array_equal(multihost_utils.process_allgather(images, tiled=True), IMAGES[idx])
                      and np.array_equal(multihost_utils.process_allgather(labels, tiled=True), idx)))
  ids, _ = next(inference.padded_batches(np.arange(27, 40), 13, mesh.size))
  batch = inference.process_local_batch(source, ids, NamedSharding(mesh, P(inference.DATA_AXIS)))
  right.append(bool(np.array_equal(multihost_utils.process_allgather(batch, tiled=True), IMAGES[ids])))
  with open(out, "w") as f:
    json.dump({"reads": source.reads, "right": right}, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
