"""Table 1: attack accuracy and precision, dense vs the 80 % ticket, with the paper's MLP attack, our Optax MLP
and threshold attacks, paper and shadow-model protocols.

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; only new results are computed:
  python -m launch.main --config=configs/experiments/table1.py:cifar10_resnet18:subset --workdir=runs/cifar10_r18_subset
  python -m launch.main --config=configs/experiments/table1.py:default --workdir=runs/default      # digits, minutes
  python -m launch.report --workdir=runs/cifar10_r18_subset
Full CIFAR / ImageNet: use cifar10_resnet18 (etc.) without ':subset' and the tfds data_dir (see that config).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("table1", arg)
