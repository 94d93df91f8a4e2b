"""A zoo of S reference models trained in one jitted program: the models axis is sharded over the mesh.

Each model trains on its own seeded random subset of a population pool, exactly as large as the target's member set
(`random_subsets`; half of the pool when the target trained on half), for the target's number of steps: every example
is IN for floor or ceil of S * m / N models (the membership matrix `keep [S, N]`) and OUT for the rest: what LiRA and
RMIA calibrate against.
Parameters, batch statistics, optimiser states and masks are stacked on a leading models axis, split over the
devices; every model gathers its own batch from the device-resident pool inside the step. Each model's init, data
order and batches are those of a sequential run with its seed (`tests/test_zoo.py` checks the two agree to float
tolerance); augmentation
draws are the zoo's (one seed for all models at a step).

The train step is the package's (`train.train_step`, masked, with the recipe's loss), applied to each device's models
(`make_zoo_step`: vmapped on accelerators, unrolled on CPUs).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import inference
from mialth_jax.data import augment
from mialth_jax.lottery import masks
from mialth_jax.lottery import train as train_lib
from mialth_jax.lottery import train_state as state_lib


def random_subsets(num_models: int, pool_size: int, subset_size: int, seed: int) -> np.ndarray:
  """keep [S, N]: model s trains on exactly `subset_size` seeded random examples of the pool (the target's member
  count: LiRA's reference models must train like the target), and every example is a member of floor or ceil of
  S * subset_size / N models (LiRA's balanced construction; online LiRA needs IN and OUT models for an example).

  Each example first joins its count of models drawn at random (the counts floor or ceil, the ceil ones drawn at
  random, so the total is S * subset_size); then, while a model holds more examples than `subset_size`, one of its
  examples that a model holding fewer lacks is moved to that model (a random such example and pair): column counts
  are kept and every row reaches `subset_size` exactly. subset_size = N / 2 gives random halves.
  """
  if not 0 < subset_size <= pool_size or num_models < 1:
    raise ValueError(f"random_subsets: need 0 < subset_size <= pool_size and num_models >= 1, got {subset_size}, "
                     f"{pool_size}, {num_models}")
  rng = np.random.default_rng([seed, 0x201])
  total = num_models * subset_size
  counts = np.full(pool_size, total // pool_size)
  counts[rng.permutation(pool_size)[:total % pool_size]] += 1
  keep = rng.random((num_models, pool_size)).argsort(axis=0) < counts
  sizes = keep.sum(axis=1)
  while (sizes > subset_size).any():  # each move lowers the rows' excess by one
    src = rng.choice(np.flatnonzero(sizes > subset_size))
    dst = rng.choice(np.flatnonzero(sizes < subset_size))
    moved = rng.choice(np.flatnonzero(keep[src] & ~keep[dst]))
    keep[src, moved], keep[dst, moved] = False, True
    sizes[src], sizes[dst] = sizes[src] - 1, sizes[dst] + 1
  return keep


ZOO_SEED_OFFSET = 2000  # zoo seeds differ from the target's (seed) and the single shadow's (seed + 1000)


def augment_seed(seed: int) -> int:
  """The zoo's augmentation seed (one for all its models at a step)."""
  return seed + ZOO_SEED_OFFSET


def model_seeds(seed: int, num_models: int) -> np.ndarray:
  """The seed of each zoo model (its init and data order)."""
  return seed + ZOO_SEED_OFFSET + 1 + np.arange(num_models)


def models_sharding(mesh: Mesh, num_models: int) -> NamedSharding:
  """Models spread over the mesh when they divide evenly (8 devices, 16 models: 2 each), else replicated."""
  return NamedSharding(mesh, P(inference.DATA_AXIS) if num_models % mesh.size == 0 else P())


def stack(trees: list):
  """One pytree whose leaves stack the given trees' leaves on a new leading models axis."""
  return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(x) for x in leaves]), *trees)


def unstack(tree, index: int):
  """Model `index` of a stacked pytree, as numpy."""
  return jax.tree.map(lambda x: np.asarray(x[index]), tree)


@dataclasses.dataclass(frozen=True)
class Batches:
  """Each model's batches: the pool positions of model s at a step are those a sequential run of s would draw."""
  keep: np.ndarray          # bool [S, N]
  seeds: np.ndarray         # int [S]
  batch_size: int
  steps_per_epoch: int

  def positions(self, step: int) -> np.ndarray:
    """int32 [S, B] pool positions of every model's batch at `step`."""
    rows = []
    for keep, seed in zip(self.keep, self.seeds):
      members = np.flatnonzero(keep)
      rows.append(members[train_lib.batch_indices(int(seed), step, len(members), self.batch_size,
                                                  self.steps_per_epoch)])
    return np.stack(rows).astype(np.int32)


def make_zoo_step(model, tx, seed: int, augment_kind: str, mean, std, mesh: Mesh, num_models: int,
                  loss_fn=train_lib.cross_entropy):
  """jit(states, pool images, pool labels, positions [S, B]) -> (states, metrics [S]); states donated.

  The models axis is split over the devices (`shard_map`); each device steps its own models, with `vmap` on
  accelerators (small convolutions batched into one) and one after another on CPUs, where XLA runs a vmapped
  (grouped) convolution slower than the plain one. On CPUs the per-device loop is unrolled, not a `lax.map`: XLA:CPU
  runs a ResNet step inside a while loop several times slower than the same step outside one (32x32 CIFAR, 2 models
  on a device: 4.2 s vs 0.47 s a step), so compilation grows with the models per device (16 models on 8 devices: 2).
  """
  single = functools.partial(train_lib.train_step, model=model, tx=tx, seed=seed, augment_kind=augment_kind,
                             mean=mean, std=std, loss_fn=loss_fn)

  def one(state, images, labels, pos):
    return single(state, images[pos], labels[pos])

  def local(states, images, labels, positions):
    if mesh.devices.flat[0].platform != "cpu":
      return jax.vmap(one, in_axes=(0, None, None, 0))(states, images, labels, positions)
    stepped = [one(jax.tree.map(lambda x: x[i], states), images, labels, positions[i])  # noqa: B023
               for i in range(positions.shape[0])]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *stepped)
  by_model = models_sharding(mesh, num_models)
  replicated = NamedSharding(mesh, P())
  step = jax.shard_map(local, mesh=mesh, in_specs=(by_model.spec, P(), P(), by_model.spec),
                       out_specs=(by_model.spec, by_model.spec), check_vma=False)
  return jax.jit(step, donate_argnums=0, in_shardings=(by_model, replicated, replicated, by_model),
                 out_shardings=(by_model, by_model))


def start_states(variables: list[dict], model_masks: list[dict], tx, first_step: int,
                 sharding: NamedSharding) -> state_lib.TrainState:
  """The stacked train state of S models, placed with `sharding`: each model's start masked by its mask."""
  return jax.device_put(stack([state_lib.create_state(masks.apply_mask(v["params"], m), v["batch_stats"],
                                       jax.tree.map(jnp.asarray, m), tx, first_step)
                for v, m in zip(variables, model_masks)]), sharding)


@functools.lru_cache(maxsize=8)
def _zoo_logits_fn(model, mean: tuple, std: tuple, shape: tuple, queries: tuple, mesh: Mesh):
  mean, std = np.reshape(np.asarray(mean, np.float32), shape), np.reshape(np.asarray(std, np.float32), shape)

  def per_model(variables, images):
    x = augment.normalise(images, mean, std, model.dtype)
    return jnp.stack([model.apply(variables, augment.QUERIES[q](x), train=False) for q in queries], axis=1)
  return jax.jit(jax.vmap(per_model, in_axes=(0, None)), out_shardings=NamedSharding(mesh, P()))


def zoo_logits(model, variables, images: np.ndarray, mean, std, mesh: Mesh, queries: tuple[str, ...],
               batch_size: int = 512) -> np.ndarray:
  """float32 [S, N, A, C]: every model's eval-mode logits on every image under each query (identity, flip).

  On CPUs each model is evaluated on its own, its batches split over the devices as for a target: XLA:CPU runs the
  models-vmapped convolutions of 32x32 images so slowly (a CIFAR-subset zoo of 8 did not finish in 30 minutes) that
  the one-program form pays only on accelerators.
  """
  if mesh.devices.flat[0].platform == "cpu":
    return _zoo_logits_per_model(model, variables, images, mean, std, mesh, queries, batch_size)
  fn = _zoo_logits_fn(model, tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()), np.shape(mean),
                      tuple(queries), mesh)
  out = [np.asarray(fn(variables, images[start:start + batch_size]))
         for start in range(0, len(images), batch_size)]
  return np.concatenate(out, axis=1)


def _zoo_logits_per_model(model, variables, images: np.ndarray, mean, std, mesh: Mesh, queries: tuple[str, ...],
                          batch_size: int) -> np.ndarray:
  logits_fn = inference.make_logits_fn(model, mean, std, mesh)
  positions = np.arange(len(images))
  replicated = NamedSharding(mesh, P())
  queried = [augment.QUERIES[q](images) for q in queries]
  per_model = []
  for s in range(jax.tree.leaves(variables)[0].shape[0]):
    model_variables = jax.device_put(unstack(variables, s), replicated)
    per_model.append(np.stack([inference.predict_logits(logits_fn, model_variables, x, positions, batch_size, mesh)
                               for x in queried], axis=1))
  return np.stack(per_model)
