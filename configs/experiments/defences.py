"""Pruning as a defence (Wang et al., IJCAI 2021) against adversarial regularisation (Nasr et al., CCS 2018), on one
privacy-utility chart: dense, lottery tickets, prune-and-fine-tune, ADMM pruning, Min-Max (a lambda sweep) and
ADMM + Min-Max, each attacked by adaptive attackers (paper protocol: attacks trained on the defended model's own
outputs; shadow protocol: shadows trained with the same defence). docs/defences.md holds the method and results.

  python -m launch.main --config=configs/experiments/defences.py:default --workdir=runs/defences_digits   # CI-sized
  python -m launch.main --config=configs/experiments/defences.py:cifar10_resnet18:subset \
      --workdir=runs/defences_c10_subset --cpu_devices=8                           # CPU, 62 min on 2 shared cores
  python -m launch.main --config=configs/experiments/defences.py:cifar100_resnet18:subset \
      --workdir=runs/defences_c100_subset --cpu_devices=8 --config.attacks.protocols="('paper',)"   # CPU, 54 min
  python -m launch.main --config=configs/experiments/defences.py:cifar10_resnet18 \
      --workdir=runs/defences_c10 --config.data.data_dir=DIR                               # full CIFAR-10, GPU
  python -m launch.report --workdir=runs/defences_c10_subset,runs/defences_c100_subset,runs/defences_digits \
      --out=docs --report_name=defences.md --preamble=docs/defences_preamble.md                # docs/defences.md

digits (default): ResNet-18 x1/4, 600 members (of the other 298 train images, 149 are the Min-Max reference set),
15 epochs; tickets, prune-and-fine-tune, ADMM and ADMM + Min-Max (lambda 1) at 50 / 90 %, Min-Max lambda 1 and 3;
the experiment sets lottery.rule = defences.rule (layerwise) so all three ways of pruning keep the same per-layer
counts. Measured (22 min on the shared 2-core CPU under load, 11.5 min of CPU): dense test acc 0.968, strongest
adaptive attack AUC 0.581 [0.537, 0.627]; no defence changes that AUC detectably (differences -0.020..+0.012, every
interval holds 0); at 90 % the cost is -5.2 (prune-and-fine-tune), -3.9 (ADMM), -3.6 (ADMM + Min-Max), -2.1 (ticket)
points of test accuracy; Min-Max changes neither accuracy nor leakage; the paper's claims (13.6 / 10 points lower
attack accuracy) do not show: ADMM is at most 0.2 [-3.0, 3.5] / 1.3 [-1.3, 4.0] points below dense / Min-Max.
CIFAR subsets (`:subset`): ResNet-18 x1/8, no augmentation, 8 epochs, 5,000 members; tickets, prune-and-fine-tune,
ADMM and ADMM + Min-Max (lambda 1) at 50 / 90 %, Min-Max lambda 1 and 3; the reference set is 2,500 unused train
images, the attacks' non-members the test split plus the other 2,500. Measured (docs/defences.md): dense strongest
adaptive AUC 0.766 (CIFAR-10) / 0.666 (CIFAR-100); at 90 % every pruning lowers it (ADMM -0.208 / -0.109, prune-and-
fine-tune -0.220 / -0.111, ticket -0.140 / -0.088), at 50 % every pruning raises it (+0.04..+0.10); Min-Max moves it
by at most 0.014; ADMM at 90 % is 16.3 / 8.2 points of attack accuracy below dense (paper: up to 13.6).
Full CIFAR (tfds, GPU, not run): 25,000 members (Nasr et al.'s split), 160 epochs, sparsities 50-95 %,
lambda 0.5, 1, 2, 3, 6 (ADMM + Min-Max: 1, 3).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("defences", arg)
