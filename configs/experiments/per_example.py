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

The privacy onion (experiments/onion.py): `:onion<k>` leaves the k most exposed examples under dense of a finished
run (--config.onion.of) out of every training set, `:onion_control<k>` k random ones; the report compares them:

  python -m launch.main --config=configs/experiments/per_example.py:default:onion50 \
      --config.onion.of=runs/fit_digits --workdir=runs/onion50_digits
  python -m launch.main --config=configs/experiments/per_example.py:default:onion_control50 \
      --config.onion.of=runs/fit_digits --workdir=runs/onion_control50_digits
  python -m launch.report --workdir=runs/onion50_digits,runs/onion_control50_digits --out=runs/onion_digits \
      --sections=onion

Each trains dense, the three tickets and their zoos of 16 (no random-prune controls or fit curves: the comparison
reads neither): on digits about 23 minutes on 2 shared CPU cores, its control 10 (with the first's compilation
cache, --compilation_cache=runs/onion50_digits/.jax_cache).
"""
import re

from mialth_jax import errors
from mialth_jax.experiments import paper

ONION = re.compile(r"(.+):onion(_control)?(\d+)$")


def get_config(arg: str | None = None):
  if not arg:
    raise errors.ConfigError("configs/experiments/per_example.py needs a run config, e.g. per_example.py:default or "
                             "per_example.py:cifar10_resnet18:subset")
  onion = ONION.match(arg)
  config = paper.experiment("sparsity_vs_fit", onion.group(1) if onion else arg)
  config.per_example.record = True
  if config.data.name == "digits":
    config.per_example.fpr = 0.05
  if onion:
    onion_run(config, int(onion.group(3)), "random" if onion.group(2) else "most_exposed")
  return config


def onion_run(config, remove: int, removal: str) -> None:
  """The source's models and zoo membership less `remove` examples; only what the comparison reads is trained and
  attacked: dense and the tickets (no random-prune controls), no models kept along training, LiRA only."""
  config.onion.remove, config.onion.removal = remove, removal
  config.lottery.controls = ()
  config.zoo.curve_every_epochs = 0
  config.attacks.models = {config.per_example.attack: config.attacks.models[config.per_example.attack]}
