"""Compares attack settings on a finished zoo, every zoo model a target (leave-one-out): nothing is trained.

  python -m launch.compare_zoo_attacks --workdir=runs/lira_digits --kind=dense --grid=rmia --out=rmia_digits.md

For each setting: the mean and sd of the AUC over the zoo targets, and the AUC and TPR at 1 % / 0.1 % FPR of the
ROC pooled over the targets (exact intervals; "-" where the non-members give fewer than 10 expected false
positives). --grid=rmia measures RMIA's signal (softmax, soft-margin, taylor-soft-margin), temperature (1, 2) and
gamma (1, 2), online and offline, beside LiRA online / offline / fixed variance: the measurement behind RMIA's
defaults (docs/strong_attacks.md). --attacks takes a JSON object of attack configs instead.
"""
import itertools
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from mialth_jax import errors, plugins
from mialth_jax.attacks import stats
from mialth_jax.experiments import targets, zoo as zoo_protocol, zoo_targets
from mialth_jax.utils import io

_WORKDIR = flags.DEFINE_string("workdir", None, "run folder whose shadows/ holds a finished zoo")
_KIND = flags.DEFINE_string("kind", "dense", "zoo kind: shadows/<kind>/ (dense, ticket_s80, ...)")
_GRID = flags.DEFINE_enum("grid", "rmia", ["rmia"], "the predefined grid of settings")
_ATTACKS = flags.DEFINE_string("attacks", None, "a JSON object {name: attack config} to compare instead of --grid")
_OUT = flags.DEFINE_string("out", None, "also write the table (Markdown) here")
flags.mark_flags_as_required(["workdir"])


def rmia_grid() -> dict:
  """RMIA's signals x temperatures x gammas, online and offline (a tuned), and LiRA's three variants."""
  grid = {"lira": {"type": "lira"}, "lira_offline": {"type": "lira", "online": False},
          "lira_fixed_var": {"type": "lira", "fixed_variance": True}}
  for signal, temperature, gamma, online in itertools.product(("softmax", "soft-margin", "taylor-soft-margin"),
                                                              (1.0, 2.0), (1.0, 2.0), (True, False)):
    name = f"rmia_{'online' if online else 'offline'}_{signal}_t{temperature:g}_g{gamma:g}"
    grid[name] = {"type": "rmia", "online": online, "signal": signal, "temperature": temperature, "gamma": gamma}
  return grid


def measure(reference, configs: dict) -> list[dict]:
  rows = []
  for name, config in configs.items():
    started = time.time()
    targets, settings = zoo_targets.leave_one_out(reference, config)
    summary = zoo_targets.summarise(targets)
    aucs = [m["roc_auc"] for m in summary["per_target"].values()]
    chosen = sorted({json.dumps(s, sort_keys=True) for s in settings if s})
    rows.append({"attack": name, "config": config, "auc_mean": float(np.mean(aucs)), "auc_sd": float(np.std(aucs, ddof=1)),
                 "pooled": summary["pooled"], "chosen": chosen, "seconds": time.time() - started})
    print(f"{name}: AUC {rows[-1]['auc_mean']:.3f} ({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
  return sorted(rows, key=lambda r: -r["auc_mean"])


def table(rows: list[dict], reference, kind: str) -> str:
  lines = [f"{reference.num_models} {kind} zoo models, each attacked by the others on all {len(reference.ids)} pool "
           "examples:", "", "| attack | AUC over targets (mean ± sd) | pooled AUC | pooled TPR @ 1 % FPR | "
           "pooled TPR @ 0.1 % FPR | chosen by the fits |", "| --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(f"| {r['attack']} | {r['auc_mean']:.3f} ± {r['auc_sd']:.3f} | {r['pooled']['roc_auc']:.3f} | "
                 f"{stats.format_tpr(r['pooled']['tpr_at_fpr_0.01'])} | "
                 f"{stats.format_tpr(r['pooled']['tpr_at_fpr_0.001'])} | {'; '.join(r['chosen']) or '-'} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  plugins.load()
  try:
    ctx = targets.open_run(_WORKDIR.value, "--workdir")
    if not os.path.exists(ctx.layout.zoo(_KIND.value, "logits.npy")):
      raise errors.UserError(f"--kind={_KIND.value}: no finished zoo of that kind in {_WORKDIR.value} "
                             f"({ctx.layout.zoo(_KIND.value, 'logits.npy')} missing)")
    configs = json.loads(_ATTACKS.value) if _ATTACKS.value else rmia_grid()
    reference = zoo_protocol.reference_outputs(ctx, _KIND.value)
    rows = measure(reference, configs)
  except json.JSONDecodeError as e:
    print(f"error: --attacks: not a JSON object of attack configs ({e})", file=sys.stderr)
    return 2
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  text = table(rows, reference, _KIND.value)
  print(text)
  if _OUT.value:
    io.write_text(_OUT.value, text)
  return 0


if __name__ == "__main__":
  app.run(main)
