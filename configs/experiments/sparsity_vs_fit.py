"""Sparsity or fit? Leakage along training of dense, tickets (50 / 80 / 90 %) and random-prune controls, each a zoo of
reference models kept every epoch and attacked leave-one-out there (experiments/fit_curves.py), compared at matched
train loss and at matched held-out accuracy over model pairs; the narrow dense control of each sparsity is a run of
its own (`:narrow<percent>`, lottery/narrow.py: the width whose dense model has the ticket's kept weights), with the
same members and zoo membership; the privacy-utility frontier.

  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default --workdir=runs/fit_digits
  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default:narrow80 --workdir=runs/fit_digits_n80
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/sparsity_vs_fit.py:cifar10_resnet18:subset --workdir=runs/fit_cifar10
  python -m launch.report --workdir=runs/fit_digits,runs/fit_digits_n80 --out=docs --report_name=sparsity_vs_fit.md \\
      --preamble=docs/sparsity_vs_fit_preamble.md
Measured results, commands, commits and wall times: docs/sparsity_vs_fit.md (no numbers are quoted here).
"""
from mialth_jax import errors
from mialth_jax.experiments import paper
from mialth_jax.lottery import narrow

NARROW = "narrow"


def get_config(arg: str | None = None):
  arg, _, control = (arg or "").rpartition(":") if (arg or "").split(":")[-1].startswith(NARROW) else (arg, "", "")
  config = paper.experiment("sparsity_vs_fit", arg)
  if not control:
    return config
  try:
    sparsity = int(control[len(NARROW):]) / 100
  except ValueError:
    raise errors.ConfigError(f"sparsity_vs_fit.py:...:{control}: expected narrow<percent>, e.g. narrow80") from None
  if sparsity not in config.lottery.sparsities:
    raise errors.ConfigError(f"sparsity_vs_fit.py:...:{control}: {sparsity} is not one of the experiment's "
                             f"sparsities {tuple(config.lottery.sparsities)}")
  config = narrow.narrow_config(config, sparsity)
  config.lottery.sparsities, config.lottery.controls = (), ()  # the control run: its dense model and dense zoo only
  return config
