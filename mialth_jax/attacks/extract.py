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
  """AttackInputs of `model_name` for `ids` (in that order), from the cache or a sharded forward pass."""
  path = cache_path(ctx.workdir, model_name)
  source = ExampleSource(ctx.dataset)
  if os.path.exists(path):
    cached = io.read_npz(path)
    if np.array_equal(cached["ids"], ids):
      return inputs_lib.AttackInputs.from_logits(cached["logits"], cached["labels"])
  logits = extract_logits(ctx, model_name, source, ids)
  labels = source.labels(ids)
  result = inputs_lib.AttackInputs.from_logits(logits, labels)  # validates: NaN/Inf are refused here
  if jax.process_index() == 0:
    io.write_npz(path, ids=ids, logits=logits, labels=labels, probs=result.probs, loss=result.loss)
  return result


def extract_logits(ctx, model_name: str, source: ExampleSource, ids: np.ndarray) -> np.ndarray:
  """Logits of a finished model's final checkpoint for `ids`, in order, every example kept."""
  final = os.path.join(run_dir.model_dir(ctx.workdir, model_name), "final")
  if not run_dir.is_finished(ctx.workdir, model_name):
    raise checkpoint.CheckpointError(f"{run_dir.model_dir(ctx.workdir, model_name)}: no finished model there "
                                     "(summary.json missing); train it first")
  variables = checkpoint.restore(final, ctx.abstract_variables())
  logits_fn = inference.make_logits_fn(ctx.model, ctx.data.mean, ctx.data.std, ctx.mesh)
  return inference.predict_logits(logits_fn, variables, source, ids, ctx.config.attacks.batch_size, ctx.mesh)
