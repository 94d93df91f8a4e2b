"""Leakage against the generalisation gap (issue 16): the same recipe trained for 10 ... 160 epochs, with and without
augmentation, dense and tickets at 50/80/90 %, the paper's attacks at each point; one run folder per point.

  for aug in none cifar; do for e in 10 20 40 80 160; do
    MIALTH_DATA_DIR=../shared/data python -m launch.main \
        --config=configs/experiments/gap_sweep.py:cifar100_resnet18:subset --workdir=runs/gap_c100_${aug}_e$e \
        --config.train.num_epochs=$e --config.data.augment=$aug
  done; done
  python -m launch.report --workdir=$(ls -d runs/gap_c100_* | paste -sd,) --out=runs/gap_c100
The report's "Leakage against the generalisation gap" section draws every model's attack accuracy and AUC against its
train-test gap with the paper's Table 1 as lines, and names the run nearest to the paper's numbers. `subset` trains
ResNet-18 x1/8 on 5,000 members (about 11 min per model for 40 epochs on 2 idle cores, so ~45 min per point; the
whole CPU sweep takes hours per dataset: run it in the background, each point resumes where it stopped).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("gap_sweep", arg)
