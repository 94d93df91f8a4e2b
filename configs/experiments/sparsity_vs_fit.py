"""Sparsity or fit? Leakage along training of dense, tickets (50 / 80 / 90 %) and random-prune controls, each a zoo of
reference models kept every epoch and attacked leave-one-out there (experiments/fit_curves.py), compared at matched
train loss and at matched held-out accuracy over model pairs; the narrow dense control of each sparsity is a run of
its own (`:narrow<percent>`, lottery/narrow.py: the width whose dense model has the ticket's kept weights), with the
same members and zoo membership, and so is dense at another weight decay (`:wd<value>`, e.g. `:wd0.005`) for the
privacy-utility frontier.

  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default --workdir=runs/fit_digits
  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default:narrow80 --workdir=runs/fit_digits_n80
  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default:wd0.005 --workdir=runs/fit_digits_wd
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/sparsity_vs_fit.py:cifar10_resnet18:subset --workdir=runs/fit_cifar10
  python -m launch.report --workdir=runs/fit_digits,runs/fit_digits_n80 --out=docs --report_name=sparsity_vs_fit.md \\
      --preamble=docs/sparsity_vs_fit_preamble.md
Measured results, commands, commits and wall times: docs/sparsity_vs_fit.md (no numbers are quoted here).
"""
from mialth_jax import errors
from mialth_jax.experiments import paper
from mialth_jax.lottery import narrow

NARROW, WEIGHT_DECAY = "narrow", "wd"


def get_config(arg: str | None = None):
  arg = arg or ""
  last = arg.split(":")[-1]
  control = last if last.startswith((NARROW, WEIGHT_DECAY)) else ""
  config = paper.experiment("sparsity_vs_fit", arg[:-len(control) - 1] if control else arg)
  if not control:
    return config
  if control.startswith(NARROW):
    config = narrow.narrow_config(config, _sparsity(config, control))
  else:
    config.train.weight_decay = _number(control, WEIGHT_DECAY)
  config.lottery.sparsities, config.lottery.controls = (), ()  # a control run: its dense model and dense zoo only
  return config


def _number(control: str, prefix: str) -> float:
  try:
    return float(control[len(prefix):])
  except ValueError:
    raise errors.ConfigError(f"sparsity_vs_fit.py:...:{control}: expected {prefix}<number>, e.g. narrow80 or "
                             "wd0.005") from None


def _sparsity(config, control: str) -> float:
  sparsity = _number(control, NARROW) / 100
  if sparsity not in config.lottery.sparsities:
    raise errors.ConfigError(f"sparsity_vs_fit.py:...:{control}: {sparsity} is not one of the experiment's "
                             f"sparsities {tuple(config.lottery.sparsities)}")
  return sparsity
