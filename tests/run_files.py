"""Reading a run folder back in tests: its artefacts, its Orbax checkpoints, its JSON without wall times."""
import os

import jax
import orbax.checkpoint as ocp


NOT_RESULTS = ("events.out.tfevents.", "launches.jsonl")  # TensorBoard copies of metrics.jsonl; who ran it, when


def artefacts(workdir) -> dict:
  """{relative path: kind}: Orbax checkpoint folders as a whole (periodic states included), other files by suffix;
  not the files that name a launch (TensorBoard event files, launches.jsonl), which differ between equal runs."""
  found = {}
  for root, dirs, files in os.walk(workdir):
    rel = os.path.relpath(root, workdir)
    if "_CHECKPOINT_METADATA" in files:
      found[rel], dirs[:] = "checkpoint", []
      continue
    found.update({os.path.normpath(os.path.join(rel, f)): os.path.splitext(f)[1] for f in files
                  if f != ".lock" and not f.startswith(NOT_RESULTS)})
  return found


def read_checkpoint(path):
  """Every leaf of an Orbax checkpoint as numpy, read onto one device whatever topology saved it (independently of
  the pipeline's restore)."""
  if os.path.isdir(os.path.join(path, "default")):  # a CheckpointManager step holds its state in an item folder
    path = os.path.join(path, "default")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.metadata(os.path.abspath(path)).item_metadata.tree
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), stored)
    return jax.device_get(checkpointer.restore(os.path.abspath(path), target))


def without_wall_time(value):
  """A JSON value with every "wall_seconds" field dropped (the one thing two equal runs may differ in)."""
  if isinstance(value, dict):
    return {k: without_wall_time(v) for k, v in value.items() if k != "wall_seconds"}
  if isinstance(value, list):
    return [without_wall_time(v) for v in value]
  return value
