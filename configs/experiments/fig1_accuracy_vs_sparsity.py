"""Figure 1: test accuracy vs sparsity, with the random-pruning and random-reinitialisation controls
(trains the controls; runs no attack).

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; only new results are computed:
  python -m launch.main --config=configs/experiments/fig1_accuracy_vs_sparsity.py:cifar10_resnet18:subset --workdir=runs/cifar10_r18_subset
  python -m launch.main --config=configs/experiments/fig1_accuracy_vs_sparsity.py:default --workdir=runs/default      # digits, minutes
  python -m launch.report --workdir=runs/cifar10_r18_subset
Full CIFAR / ImageNet: use cifar10_resnet18 (etc.) without ':subset' and the tfds data_dir (see that config).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("fig1_accuracy_vs_sparsity", arg)
