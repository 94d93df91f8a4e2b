"""Sparsity or fit? Leakage along training of dense, tickets (50 / 80 / 90 %) and random-prune controls, each a zoo of
reference models kept every epoch and attacked leave-one-out there (experiments/fit_curves.py), compared at matched
train loss and at matched held-out accuracy over model pairs; the privacy-utility frontier.

  python -m launch.main --config=configs/experiments/sparsity_vs_fit.py:default --workdir=runs/fit_digits
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/sparsity_vs_fit.py:cifar10_resnet18:subset --workdir=runs/fit_cifar10
  python -m launch.report --workdir=runs/fit_digits --out=docs --report_name=sparsity_vs_fit.md \\
      --preamble=docs/sparsity_vs_fit_preamble.md
Measured results, commands, commits and wall times: docs/sparsity_vs_fit.md (no numbers are quoted here).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("sparsity_vs_fit", arg)
