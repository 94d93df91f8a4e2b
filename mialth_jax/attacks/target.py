"""A target: a trained model as an attack sees it. Attacks ask it for outputs on example ids, never for files.

Examples are named by global ids (see data.examples). `outputs(ids)` gives logits, softmax, loss and labels as
`AttackInputs`, from the exact sharded forward pass (`inference.predict_logits`, eval-mode BatchNorm), cached in one
npz per model: the cache holds every id extracted so far, sorted, so attack-train, attack-test and every attack size
share one forward pass per example. The network itself (`model`, `load_variables`, normalisation) is kept too, for
attacks that need more than outputs (input gradients, adversarial examples).
"""
import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from mialth_jax import inference
from mialth_jax.attacks import inputs as inputs_lib
from mialth_jax.data import augment
from mialth_jax.data.examples import ExampleSource
from mialth_jax.utils import hosts, io


@dataclasses.dataclass
class Target:
  """One attacked model. `label` names it in results ("dense", or "<run>/dense" for another run's model)."""
  label: str
  cache_path: str                       # where its outputs are cached (always inside the attacking run's folder)
  source: ExampleSource                 # images and labels by global id
  model: object                         # the Flax module
  load_variables: Callable[[], dict]    # -> {params, batch_stats}, restored on first use
  mean: np.ndarray                      # the normalisation the model was trained with (uint8 images in [0, 255])
  std: np.ndarray
  mesh: jax.sharding.Mesh
  batch_size: int = 512
  _variables: dict | None = dataclasses.field(default=None, repr=False)

  @property
  def variables(self) -> dict:
    if self._variables is None:
      self._variables = self.load_variables()
    return self._variables

  def logits(self, ids: np.ndarray) -> np.ndarray:
    """Logits for `ids`, in order, every example kept (not cached)."""
    logits_fn = inference.make_logits_fn(self.model, self.mean, self.std, self.mesh)
    return inference.predict_logits(logits_fn, self.variables, self.source, ids, self.batch_size, self.mesh)

  def query_logits(self, ids: np.ndarray, queries: tuple[str, ...]) -> np.ndarray:
    """float32 [M, A, C]: logits of each example under each test-time query (augment.QUERIES: identity, flip);
    the identity query is the cached one."""
    logits_fn = inference.make_logits_fn(self.model, self.mean, self.std, self.mesh)
    return np.stack([self.outputs(ids).logits if query == "identity" else inference.predict_logits(
        logits_fn, self.variables, _Queried(self.source, query), ids, self.batch_size, self.mesh)
        for query in queries], axis=1)

  def outputs(self, ids: np.ndarray) -> inputs_lib.AttackInputs:
    """AttackInputs for `ids` (in that order); only ids not in the cache are extracted."""
    ids = np.asarray(ids)
    cached = io.read_npz(self.cache_path) if os.path.exists(self.cache_path) else {
        "ids": np.zeros(0, np.int64), "logits": np.zeros((0, self.model.num_classes), np.float32)}
    missing = ids[~np.isin(ids, cached["ids"])]  # in request order, so a first extraction batches as asked
    if len(missing):
      all_ids = np.concatenate([cached["ids"], missing])
      order = np.argsort(all_ids, kind="stable")
      cached = {"ids": all_ids[order], "logits": np.concatenate([cached["logits"], self.logits(missing)])[order]}
    rows = np.searchsorted(cached["ids"], ids)
    # Built (and validated: NaN / Inf are refused) before the cache is written, so a bad extraction is never cached.
    outputs = inputs_lib.AttackInputs.from_logits(cached["logits"][rows], self.source.labels(ids))
    if len(missing):  # every process then reads the cache that process 0 wrote
      hosts.on_process_zero(lambda: io.write_npz(self.cache_path, ids=cached["ids"], logits=cached["logits"],
                                                 labels=self.source.labels(cached["ids"])))
    return outputs


class _Queried:
  """Images of a source under one test-time query (e.g. mirrored)."""

  def __init__(self, source: ExampleSource, query: str):
    self.source = source
    self.transform = augment.QUERIES[query]

  def __getitem__(self, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(self.transform(self.source[ids]))
