"""Pruning as a defence (Wang et al., IJCAI 2021) against adversarial regularisation (Nasr et al., CCS 2018), on one
privacy-utility chart: dense, lottery tickets, prune-and-fine-tune, ADMM pruning, Min-Max (a lambda sweep) and
ADMM + Min-Max, each attacked by adaptive attackers (paper protocol: attacks trained on the defended model's own
outputs; shadow protocol: shadows trained with the same defence). docs/defences.md holds the method and results.

  python -m launch.main --config=configs/experiments/defences.py:default --workdir=runs/defences_digits   # 4.2 min
  for seed in 0 1 2; do                          # CPU, 17-25 min each on 2 shared cores: the headline's 3 seeds
    python -m launch.main --config=configs/experiments/defences.py:cifar10_resnet18:subset \
        --workdir=runs/defences_c10_subset_seed$seed --cpu_devices=4 --config.seed=$seed
  done
  python -m launch.main --config=configs/experiments/defences.py:cifar100_resnet18:subset \
      --workdir=runs/defences_c100_subset --cpu_devices=4 --config.attacks.protocols="('paper',)"   # CPU, 40 min
  python -m launch.main --config=configs/experiments/defences.py:cifar10_resnet18 \
      --workdir=runs/defences_c10 --config.data.data_dir=DIR                               # full CIFAR-10, GPU
  python -m launch.report --workdir=runs/defences_c10_subset_seed0,runs/defences_c10_subset_seed1,\
runs/defences_c10_subset_seed2,runs/defences_c100_subset,runs/defences_digits,runs/defences_digits_rho1 \
      --out=docs --report_name=defences.md --preamble=docs/defences_preamble.md                # docs/defences.md

The report judges the paper's claims at matched test accuracy in each run and, for the three CIFAR-10 seeds (runs
that differ only in `seed`), over seeds: the mean difference with a t interval over the runs. ADMM runs at the spec's
rho (1e-3, x1.5 per round); `--config.defences.admm.rho=1.0 --config.defences.admm.rho_growth=2.0` gives the
earlier schedule, which keeps dense's magnitude mask (a run folder keeps the settings it was started with: a new
schedule needs a new --workdir; the report above reads it from runs/defences_digits_rho1, the default run with
these two flags).

digits (default): ResNet-18 x1/4, 600 members (of the other 298 train images, 149 are the Min-Max reference set),
15 epochs; tickets, prune-and-fine-tune, ADMM and ADMM + Min-Max (lambda 1) at 50 / 90 % (each also hard-pruned and
attacked before its fine-tuning), Min-Max lambda 1 and 3;
the experiment sets lottery.rule = defences.rule (layerwise) so all three ways of pruning keep the same per-layer
counts. Its results (from a generated report, with the commit that made them): docs/defences.md.
CIFAR subsets (`:subset`): ResNet-18 x1/8, no augmentation, 8 epochs, 5,000 members; tickets, prune-and-fine-tune,
ADMM and ADMM + Min-Max (lambda 1) at 50 / 90 %, Min-Max lambda 1 and 3; the reference set is 2,500 unused train
images, the attacks' non-members the test split plus the other 2,500. Results: docs/defences.md.
Full CIFAR (tfds, GPU, not run): 25,000 members (Nasr et al.'s split), 160 epochs, sparsities 50-95 %,
lambda 0.5, 1, 2, 3, 6 (ADMM + Min-Max: 1, 3).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("defences", arg)
