"""Compares attack settings on a finished zoo, every zoo model a target (leave-one-out): nothing is trained.

  python -m launch.compare_zoo_attacks --workdir=runs/lira_digits --kind=dense --grid=rmia --out=rmia_digits.md

For each setting: the mean and sd of the AUC over the zoo targets, and the AUC and TPR at 1 % / 0.1 % FPR of the
ROC pooled over the targets (exact intervals; "-" where the non-members give fewer than 10 expected false
positives). --grid=rmia measures RMIA's signal (softmax, soft-margin, taylor-soft-margin), temperature (1, 2) and
gamma (1, 2), online and offline, beside LiRA online / offline / fixed variance: the measurement behind RMIA's
defaults (docs/strong_attacks.md). --attacks takes a JSON object of attack configs instead.
"""
import json
import os
import sys
import time

from absl import app, flags

from mialth_jax import errors, plugins
from mialth_jax.experiments import targets, zoo as zoo_protocol, zoo_settings
from mialth_jax.utils import io

_WORKDIR = flags.DEFINE_string("workdir", None, "run folder whose shadows/ holds a finished zoo")
_KIND = flags.DEFINE_string("kind", "dense", "zoo kind: shadows/<kind>/ (dense, ticket_s80, ...)")
_GRID = flags.DEFINE_enum("grid", "rmia", ["rmia"], "the predefined grid of settings")
_ATTACKS = flags.DEFINE_string("attacks", None, "a JSON object {name: attack config} to compare instead of --grid")
_OUT = flags.DEFINE_string("out", None, "also write the table (Markdown) here")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  plugins.load()
  try:
    ctx = targets.open_run(_WORKDIR.value, "--workdir")
    if not os.path.exists(ctx.layout.zoo(_KIND.value, "logits.npy")):
      raise errors.UserError(f"--kind={_KIND.value}: no finished zoo of that kind in {_WORKDIR.value} "
                             f"({ctx.layout.zoo(_KIND.value, 'logits.npy')} missing)")
    configs = json.loads(_ATTACKS.value) if _ATTACKS.value else zoo_settings.rmia_grid()
    reference = zoo_protocol.reference_outputs(ctx, _KIND.value)
    started = time.time()
    rows = zoo_settings.measure(reference, configs)
  except json.JSONDecodeError as e:
    print(f"error: --attacks: not a JSON object of attack configs ({e})", file=sys.stderr)
    return 2
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  text = zoo_settings.table(rows, reference, _KIND.value, _WORKDIR.value, time.time() - started,
                            f"python -m launch.compare_zoo_attacks {' '.join(sys.argv[1:])}")
  print(text)
  if _OUT.value:
    io.write_text(_OUT.value, text)
  return 0


if __name__ == "__main__":
  app.run(main)
