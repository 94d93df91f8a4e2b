"""Figure 3: attack accuracy vs number of attack samples (paper protocol; 1k/2k/4k/all on the CIFAR
subsets, 2k-20k on full CIFAR, 20k/60k/100k on ImageNet; 200/400/800/all on digits, whose pools hold 898 members
and 899 non-members).

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; only new results are computed:
  python -m launch.main --config=configs/experiments/fig3_attack_vs_samples.py:cifar10_resnet18:subset --workdir=runs/cifar10_r18_subset
  python -m launch.main --config=configs/experiments/fig3_attack_vs_samples.py:default --workdir=runs/default      # digits, minutes
  python -m launch.report --workdir=runs/cifar10_r18_subset
Full CIFAR / ImageNet: use cifar10_resnet18 (etc.) without ':subset' and the tfds data_dir (see that config).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("fig3_attack_vs_samples", arg)
