"""Per-example signals of a target (white-box or label-only), computed by one jitted, mesh-sharded program and cached.

A `Signal` is a hashable description (its kind and options) of a statistic of one example, e.g. the total-variation
proxy at eps = 4/255. `compute(signal, target, ids)` evaluates it on `ids` like confidence extraction
(inference.predict_logits): batches padded to a multiple of the device count and sharded along the mesh's data axis,
the padding dropped after gathering, every id in its order. Inside the program the statistic is `jax.vmap`ped over the
examples and every random draw comes from a key folded from the example's global id, so a value depends on neither
the batch nor the device count. Values are cached per target and signal in
`confidences/<label>.signals/<kind>-<hash of the options>.npz` (ids sorted, the options kept as JSON), next to the
target's cached outputs, so attack-train, attack-test and every attack reading the same signal share one computation.
"""
import dataclasses
import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mialth_jax import inference
from mialth_jax.attacks import adversarial, label_only
from mialth_jax.attacks.inputs import AttackError
from mialth_jax.utils import hosts, io

# kind -> (statistic of one example, whether it sees the logits (white-box) or only the predicted label)
STATISTICS = {
    "tv": (adversarial.tv_signal, "logits"),
    "grad_norm": (adversarial.grad_norm_signal, "logits"),
    "min_eps": (adversarial.min_eps_signal, "logits"),
    "hsj_distance": (label_only.hsj_distance, "label"),
    "augmentation": (label_only.augmentation_score, "label"),
}


@dataclasses.dataclass(frozen=True)
class Signal:
  """One per-example statistic: `kind` (a STATISTICS key), its options as sorted (name, value) pairs, and the seed
  of its random draws (PGD random starts, HopSkipJump)."""
  kind: str
  options: tuple
  seed: int = 0

  @classmethod
  def make(cls, kind: str, seed: int = 0, **options) -> "Signal":
    if kind not in STATISTICS:
      raise AttackError(f"unknown signal {kind!r}; known: {', '.join(STATISTICS)}")
    return cls(kind, tuple(sorted(options.items())), int(seed))

  def describe(self) -> str:
    """The signal as JSON: what its cache file holds and what its name hashes."""
    return json.dumps({"kind": self.kind, "seed": self.seed, **dict(self.options)}, sort_keys=True)

  @property
  def file_name(self) -> str:
    return f"{self.kind}-{hashlib.sha1(self.describe().encode()).hexdigest()[:12]}.npz"

  @property
  def static_options(self) -> tuple:
    """The options that shape the program (norms, step counts, flags); the float ones (eps, step fractions) are
    passed as traced scalars, so an eps sweep compiles once."""
    return tuple((k, v) for k, v in self.options if not _is_float(v))

  @property
  def float_options(self) -> tuple:
    return tuple((k, v) for k, v in self.options if _is_float(v))


def _is_float(value) -> bool:
  return isinstance(value, float)


def signal_fn(signal: Signal, model, mean: np.ndarray, std: np.ndarray, mesh: Mesh):
  """jit(variables, uint8 images [B, H, W, C], labels [B], ids [B], floats, seed) -> float32 [B], replicated for
  gathering; `floats` are the values of signal.float_options, in order.

  Memoised like inference.make_logits_fn: every batch, every target sharing a network and every signal differing only
  in its float options or seed compile once.
  """
  return _signal_fn(signal.kind, signal.static_options, tuple(k for k, _ in signal.float_options), model,
                    tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()), np.shape(mean), mesh)


@functools.lru_cache(maxsize=32)
def _signal_fn(kind: str, static_options: tuple, float_names: tuple, model, mean: tuple, std: tuple, shape: tuple,
               mesh: Mesh):
  mean, std = np.reshape(np.asarray(mean, np.float32), shape), np.reshape(np.asarray(std, np.float32), shape)
  statistic, access = STATISTICS[kind]

  @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P()))
  def batch_fn(variables, images, labels, ids, floats, seed):
    base_key = jax.random.key(seed, impl="threefry2x32")  # the same bits whatever JAX's default PRNG
    logits_fn = adversarial.pixel_logits_fn(model, variables, mean, std)
    oracle = logits_fn if access == "logits" else lambda xs: jnp.argmax(logits_fn(xs), axis=-1).astype(jnp.int32)
    one = functools.partial(statistic, oracle, **dict(static_options), **dict(zip(float_names, floats)))
    keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(ids)
    return jax.vmap(one)(images.astype(jnp.float32) / 255.0, labels, keys)
  return batch_fn


class _ById:
  """`fn(ids)` indexable by a batch's ids, as `inference.map_batches` reads its sources."""

  def __init__(self, fn):
    self.fn = fn

  def __getitem__(self, ids):
    return self.fn(ids)


def evaluate(signal: Signal, target, ids: np.ndarray, batch_size: int) -> np.ndarray:
  """float32 [len(ids)]: the signal on `target`'s examples `ids`, in order, over the target's mesh (not cached);
  each process reads only its own devices' examples, as confidence extraction does."""
  fn = signal_fn(signal, target.model, target.mean, target.std, target.mesh)
  floats = tuple(np.float32(v) for _, v in signal.float_options)
  sources = (target.source, _ById(target.source.labels), _ById(lambda batch_ids: batch_ids.astype(np.int32)))
  return inference.map_batches(lambda *batches: fn(target.variables, *batches, floats, np.int32(signal.seed)),
                               sources, ids, batch_size, target.mesh, np.zeros(0, np.float32))


def cache_path(target, signal: Signal) -> str:
  """Where `signal` of `target` is cached: beside the target's cached outputs."""
  return os.path.join(os.path.splitext(target.cache_path)[0] + ".signals", signal.file_name)


def compute(signal: Signal, target, ids: np.ndarray, batch_size: int = 128) -> np.ndarray:
  """float64 [len(ids)]: the signal on `ids` (in that order); only ids not in the cache are computed."""
  ids = np.asarray(ids, np.int64)
  path = cache_path(target, signal)
  cached = io.read_npz(path) if os.path.exists(path) else {
      "ids": np.zeros(0, np.int64), "values": np.zeros(0, np.float32), "signal": np.asarray(signal.describe())}
  if str(cached["signal"]) != signal.describe():
    raise AttackError(f"{path}: caches another signal ({cached['signal']}); move it away")
  missing = ids[~np.isin(ids, cached["ids"])]
  if len(missing):
    values = evaluate(signal, target, missing, batch_size)
    if not np.isfinite(values).all():
      raise AttackError(f"signal {signal.kind} on {target.label}: {int((~np.isfinite(values)).sum())} of "
                        f"{len(values)} values are NaN or Inf")
    all_ids = np.concatenate([cached["ids"], missing])
    order = np.argsort(all_ids, kind="stable")
    cached = {"ids": all_ids[order], "values": np.concatenate([cached["values"], values])[order],
              "signal": np.asarray(signal.describe())}
    hosts.on_process_zero(lambda: io.write_npz(path, **cached))  # every process then reads what process 0 wrote
  return cached["values"][np.searchsorted(cached["ids"], ids)].astype(np.float64)
