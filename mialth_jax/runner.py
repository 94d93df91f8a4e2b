"""What one launch does: the lottery pipeline, then the membership-inference attacks on every model."""
import contextlib
import os

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from mialth_jax import run_dir
from mialth_jax.attacks import inputs as attack_inputs, protocols, registry
from mialth_jax.data import base as data_base
from mialth_jax.lottery import checkpoint, pipeline, train
from mialth_jax.utils import io

# Errors caused by the user's settings, files or training run: the launcher prints their one-line message, exits 2.
USER_ERRORS = (data_base.DataError, run_dir.RunDirError, checkpoint.CheckpointError, attack_inputs.AttackError,
               train.NonFiniteError, ValueError, FileNotFoundError, PermissionError)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or finishes) every model of the config in `workdir`, then attacks each; returns the attack results."""
  with run_dir.locked(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    if jax.process_count() > 1:  # nobody writes before process 0 holds the lock and swept the killed launch's files
      multihost_utils.sync_global_devices("workdir locked")
    ctx = pipeline.setup(config, workdir)
    check_attacks(ctx)
    if jax.process_index() == 0:
      run_dir.record_config(config, workdir)
    pipeline.run_models(ctx)
    return run_attacks(ctx)


def check_attacks(ctx) -> None:
  """Refuses an unknown attack or an attack set larger than the run's pools before anything is trained."""
  for attack_config in ctx.config.attacks.models.to_dict().values():
    registry.make_attack(dict(attack_config))
  for size in ctx.config.attacks.sizes:
    protocols.resolve_size(ctx, size)


def run_attacks(ctx) -> list[dict]:
  """Every protocol x attack-set size x attack of the config, on every finished model; writes attacks/summary.json."""
  config, workdir = ctx.config, ctx.workdir
  models = run_dir.finished_models(workdir)
  attack_configs = config.attacks.models.to_dict()
  results = []
  for size in config.attacks.sizes:
    size = protocols.resolve_size(ctx, size)
    for protocol in config.attacks.protocols:
      results += protocols.run_protocol(ctx, protocol, models, size, attack_configs).values()
  results.sort(key=lambda r: (r["size"], r["protocol"], r["source"], r["target"], r["attack"]))
  if jax.process_index() == 0:
    io.write_json(os.path.join(workdir, "attacks", "summary.json"), results)
  for r in results:
    if r["source"] == r["target"]:
      logging.info("%-8s n=%-6d %-20s %-14s acc %.3f [%.3f, %.3f]  auc %.3f  adv %.3f  tpr@1%%fpr %.3f", r["protocol"],
                   r["size"], r["target"], r["attack"], r["accuracy"], *r["accuracy_ci"], r["roc_auc"],
                   r["advantage"], r["tpr_at_fpr_0.01"])
  return results
