"""Which examples pruning exposes (issue 29): per-example exposure, memorisation, pruning-identified exemplars and
disparate impact of dense, tickets (50 / 80 / 90 %) and random-prune controls, read from the zoo's leave-one-out scores
(experiments/per_example.py; nothing is trained beyond the sparsity-vs-fit experiment's models and zoos, so a run
folder of configs/experiments/sparsity_vs_fit.py is reused as it is and only analysed).

  python -m launch.main --config=configs/experiments/per_example.py:default --workdir=runs/fit_digits
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/per_example.py:cifar10_resnet18:subset --workdir=runs/fit_cifar10
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/per_example.py:cifar100_resnet18:subset --workdir=runs/fit_cifar100
  python -m launch.report --workdir=runs/fit_cifar10,runs/fit_cifar100 --out=docs --report_name=per_example.md \\
      --sections=per_example

Any zoo run with leave-one-out LiRA scores is analysed by the report's per_example section as it is (e.g. the
strong-attacks runs of configs/experiments/lira.py); --config.per_example.record=True keeps the analysis in its run
folder too. The digits pool leaves each zoo model about 430 scored non-members, too few for 10 expected false
positives at 1 % FPR, so `default` catches at 5 %. No numbers are quoted here.
"""
from mialth_jax import errors
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  if not arg:
    raise errors.ConfigError("configs/experiments/per_example.py needs a run config, e.g. per_example.py:default or "
                             "per_example.py:cifar10_resnet18:subset")
  config = paper.experiment("sparsity_vs_fit", arg)
  config.per_example.record = True
  if config.data.name == "digits":
    config.per_example.fpr = 0.05
  return config
