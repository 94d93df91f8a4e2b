"""Figure 4: transfer matrix, attack learnt on one model's outputs and applied to another. Add the
models of another architecture's run (same data, members and seed) with
--config.attacks.transfer_runs='("runs/cifar10_r50_subset",)'.

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; only new results are computed:
  python -m launch.main --config=configs/experiments/fig4_transfer.py:cifar10_resnet18:subset --workdir=runs/cifar10_r18_subset
  python -m launch.main --config=configs/experiments/fig4_transfer.py:default --workdir=runs/default      # digits, minutes
  python -m launch.report --workdir=runs/cifar10_r18_subset
On a new folder it trains the models first; add --config.attacks.protocols="('paper','transfer')" to get their
Table 1 rows too (docs/resnet50_transfer.md was made so).
Full CIFAR / ImageNet: use cifar10_resnet18 (etc.) without ':subset' and the tfds data_dir (see that config).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("fig4_transfer", arg)
