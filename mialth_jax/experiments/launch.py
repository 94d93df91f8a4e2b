"""What one launch does: validate, train every model the recipes plan, then run every protocol on every model."""
import contextlib

import jax
import ml_collections
from absl import logging

from mialth_jax import config_lib, run_dir
from mialth_jax.attacks import registry
from mialth_jax.experiments import attack_runs, retrain as retrain_lib, verdict
from mialth_jax.experiments.protocols import PROTOCOLS
from mialth_jax.lottery import pipeline
from mialth_jax.utils import hosts, io, provenance


@contextlib.contextmanager
def _locked_setup(config: ml_collections.ConfigDict, workdir: str):
  """Validates, takes the workdir's lock and yields the run's context.

  In a multi-process job process 0 holds the lock (and sweeps what a killed launch left) before anyone writes; if it
  cannot, every process stops with its message, so a second job on the workdir is refused on all its processes.
  """
  config_lib.validate(config)
  with contextlib.ExitStack() as lock:
    hosts.decided_by_process_zero(lambda: lock.enter_context(run_dir.locked(workdir)), run_dir.RunDirError)
    yield pipeline.setup(config, workdir)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or finishes) every model of the config in `workdir`; returns {model name: summary}."""
  with _locked_setup(config, workdir) as ctx:
    return pipeline.run_models(ctx)


def run(config: ml_collections.ConfigDict, workdir: str, retrain: tuple[str, ...] = ()) -> list[dict]:
  """Trains (or finishes) every model of the config in `workdir`, then attacks each; returns the attack results.

  `retrain`: models (or w0) made again after their files are set aside (experiments/retrain.py).
  """
  with _locked_setup(config, workdir) as ctx:
    sizes = attack_sizes(ctx)
    expected = retrain_lib.set_aside(ctx, retrain)
    if jax.process_index() == 0:
      run_dir.record_config(config, workdir)
    provenance.record(workdir)
    pipeline.run_models(ctx)
    retrain_lib.check(ctx.layout, expected)
    results = run_attacks(ctx, sizes)
    if jax.process_index() == 0:  # process 0 wrote the per-example scores the verdict reads
      verdict.announce(workdir)
    return results


def attack_sizes(ctx) -> list[int]:
  """The config's attack-set sizes resolved against the run's pools (-1: the largest balanced set), and every attack
  built once: an unknown attack or an oversize attack set is refused before anything is trained."""
  for attack_config in ctx.config.attacks.models.to_dict().values():
    registry.make_attack(dict(attack_config))
  return [attack_runs.resolve_size(ctx, size) for size in ctx.config.attacks.sizes]


def run_attacks(ctx, sizes: list[int]) -> list[dict]:
  """Every protocol x attack-set size x attack of the config, on every finished model; writes attacks/summary.json."""
  models = ctx.layout.finished_models()
  attack_configs = ctx.config.attacks.models.to_dict()
  results = []
  for size in sizes if ctx.config.attacks.protocols else ():  # no protocol: no attack split is drawn either
    attack_run = attack_runs.AttackRun(ctx, size)
    for protocol in ctx.config.attacks.protocols:
      results += PROTOCOLS.lookup(protocol, "attacks.protocols")().run(attack_run, models, attack_configs).values()
  results.sort(key=lambda r: (r["size"], r["protocol"], r["source"], r["target"], r["attack"]))
  if jax.process_index() == 0:
    io.write_json(ctx.layout.attacks_summary, results)
  for r in results:  # metrics are on the attack-test part of the attack set; "source -> target" where they differ
    model = r["target"] if r["source"] == r["target"] else f"{r['source']} -> {r['target']}"
    accuracy = (f"acc {r['accuracy']:.3f} [{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]" if "accuracy" in r
                else "score-only (no decision rule)")
    logging.info("%-8s attack set n%d, %d attack-test examples: %-28s %-14s %s  auc %.3f  adv %.3f  tpr@1%%fpr %.3f",
                 r["protocol"], r["size"], r["num_members"] + r["num_nonmembers"], model, r["attack"], accuracy,
                 r["roc_auc"], r["advantage"],
                 r["tpr_at_fpr_0.01"])
  return results
