"""Confidence extraction: what a trained model reveals about given examples, cached per model in the run folder.

Examples are named by global ids (see data.examples). Logits come from the exact sharded forward pass (`inference.predict_logits`); softmax
confidences and per-example losses are derived from them on the host in float64 and stored as float32.
"""
import os

import jax
import numpy as np

from mialth_jax import inference, run_dir
from mialth_jax.attacks import inputs as inputs_lib
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import checkpoint
from mialth_jax.utils import io


def cache_path(workdir: str, model_name: str) -> str:
  return os.path.join(workdir, "confidences", f"{model_name}.npz")


def model_outputs(ctx, model_name: str, ids: np.ndarray) -> inputs_lib.AttackInputs:
  """AttackInputs of `model_name` for `ids` (in that order); only ids not in the model's cache are extracted.

  The cache holds every id extracted so far, sorted, so attack-train, attack-test and every attack size share one
  forward pass per example.
  """
  path = cache_path(ctx.workdir, model_name)
  source = ExampleSource(ctx.dataset)
  cached = io.read_npz(path) if os.path.exists(path) else {"ids": np.zeros(0, np.int64),
                                                          "logits": np.zeros((0, ctx.dataset.num_classes), np.float32)}
  missing = ids[~np.isin(ids, cached["ids"])]  # in request order, so a first extraction batches as asked
  if len(missing):
    all_ids = np.concatenate([cached["ids"], missing])
    order = np.argsort(all_ids, kind="stable")
    logits = extract_logits(ctx, model_name, source, missing)
    cached = {"ids": all_ids[order], "logits": np.concatenate([cached["logits"], logits])[order]}
  rows = np.searchsorted(cached["ids"], ids)
  # Built (and validated: NaN / Inf are refused) before the cache is written, so a bad extraction is never cached.
  outputs = inputs_lib.AttackInputs.from_logits(cached["logits"][rows], source.labels(ids))
  if len(missing) and jax.process_index() == 0:
    io.write_npz(path, ids=cached["ids"], logits=cached["logits"], labels=source.labels(cached["ids"]))
  return outputs


def extract_logits(ctx, model_name: str, source: ExampleSource, ids: np.ndarray) -> np.ndarray:
  """Logits of a finished model's final checkpoint for `ids`, in order, every example kept."""
  final = os.path.join(run_dir.model_dir(ctx.workdir, model_name), "final")
  if not run_dir.is_finished(ctx.workdir, model_name):
    raise checkpoint.CheckpointError(f"{run_dir.model_dir(ctx.workdir, model_name)}: no finished model there "
                                     "(summary.json missing); train it first")
  variables = checkpoint.restore(final, ctx.abstract_variables())
  logits_fn = inference.make_logits_fn(ctx.model, ctx.data.mean, ctx.data.std, ctx.mesh)
  return inference.predict_logits(logits_fn, variables, source, ids, ctx.config.attacks.batch_size, ctx.mesh)
