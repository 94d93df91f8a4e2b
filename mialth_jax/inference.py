"""Exact sharded inference: logits for a list of example indices, in order, every example kept.

Batches are padded to a multiple of the device count and sharded along the mesh's data axis (each process reads only
its devices' part); a validity mask drops the padding after the results are gathered. Used for evaluation during
training and for confidence extraction.
"""
import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax.data import augment
from mialth_jax.utils import numerics

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global jax.Array from a host array that every process holds in full (works multi-host)."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def process_local_batch(source, indices: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """The global array `source[indices]` (any `ImageSource`, or a numpy array) sharded along its first axis, of which
  this process reads (and decodes) only the rows that its own devices hold: with N hosts each reads 1/N of a batch.

  Which rows a process holds follows from the sharding alone, so the batch (the data order) does not depend on the
  number of processes. One process reads every row, as `global_array` does.
  """
  slices = sharding.addressable_devices_indices_map((len(indices),)).values()
  rows = np.unique(np.concatenate([np.arange(len(indices))[index[0]] for index in slices]))
  local = np.asarray(source[np.asarray(indices)[rows]])
  return jax.make_array_from_process_local_data(sharding, local, (len(indices), *local.shape[1:]))


def global_array_tree(tree, sharding: NamedSharding):
  """`global_array` over every leaf of a pytree of host arrays."""
  return jax.tree.map(lambda x: global_array(np.asarray(x), sharding), tree)


def padded_batches(indices: np.ndarray, batch_size: int, num_devices: int):
  """Yields (batch_indices padded to `batch_size`, number valid); batch_size is rounded up to the device count."""
  batch_size = -(-batch_size // num_devices) * num_devices
  for start in range(0, len(indices), batch_size):
    chunk = indices[start:start + batch_size]
    pad = batch_size - len(chunk)
    yield np.concatenate([chunk, np.repeat(chunk[:1], pad)]), len(chunk)


def make_logits_fn(model, mean: np.ndarray, std: np.ndarray, mesh: Mesh):
  """jit(variables, uint8 images) -> float32 logits, eval-mode BatchNorm, output replicated for gathering.

  Memoised: every evaluation and every extraction of a run asks for the same function, which then compiles once.
  """
  return _logits_fn(model, tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()), np.shape(mean), mesh)


@functools.lru_cache(maxsize=16)
def _logits_fn(model, mean: tuple, std: tuple, shape: tuple, mesh: Mesh):
  dtype = model.dtype
  mean, std = np.reshape(np.asarray(mean, np.float32), shape), np.reshape(np.asarray(std, np.float32), shape)

  @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P()))
  def logits_fn(variables, images):
    x = augment.normalise(images, mean, std, dtype)
    return model.apply(variables, x, train=False)
  return logits_fn


def map_batches(fn, sources: tuple, indices: np.ndarray, batch_size: int, mesh: Mesh, empty: np.ndarray) -> np.ndarray:
  """fn(*batches) over `indices` in padded batches sharded along the mesh, one batch per source (anything indexable
  by a batch's indices: an `ImageSource`, a numpy array), each process reading only its own devices' rows; the
  outputs' rows in the order of `indices`, padding dropped (`empty` when there are none)."""
  batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
  outputs = []
  for batch_idx, num_valid in padded_batches(np.asarray(indices), batch_size, mesh.size):
    outputs.append((fn(*(process_local_batch(s, batch_idx, batch_sharding) for s in sources)), num_valid))
  return np.concatenate([np.asarray(out)[:n] for out, n in outputs]) if outputs else empty


def predict_logits(logits_fn, variables, images, indices: np.ndarray, batch_size: int, mesh: Mesh) -> np.ndarray:
  """Logits [len(indices), C] for `images[indices]` (any `ImageSource`), in the order of `indices`."""
  return map_batches(functools.partial(logits_fn, variables), (images,), indices, batch_size, mesh,
                     np.zeros((0, 0), np.float32))


def accuracy_and_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """Top-1 accuracy and mean cross-entropy, computed in float64 on the host."""
  log_probs = numerics.log_softmax(logits)
  loss = -log_probs[np.arange(len(labels)), labels].mean()
  return float((logits.argmax(1) == labels).mean()), float(loss)
