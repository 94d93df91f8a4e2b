"""Beyond the paper: LiRA (Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024) on a zoo of reference models, for
the dense model and its tickets, next to the paper's MLP attack and the loss threshold (zoo protocol).

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; the zoo trains once in shadows/:
  python -m launch.main --config=configs/experiments/lira.py:default --workdir=runs/default \
      --config.zoo.sparsities='(0.8,)'                                          # digits, 16 models, CPU
  python -m launch.main --config=configs/experiments/lira.py:cifar10_resnet18:subset --workdir=runs/lira_cifar10
      # its own run: width x1/8, no augmentation, 8 epochs, 8 zoo models (~25 min per zoo on 2 cores)
  python -m launch.report --workdir=runs/default
The zoo has config.zoo.num_models models (16 on CPU configs, 64 for full CIFAR via tfds, 16 for ImageNet), each
trained with the run's recipe on exactly as many random examples of the dataset as the target's members, for the
target's steps; every zoo model is then attacked by the others too (leave-one-out, experiments/zoo_targets.py), which
gives the model-level verdict. zoo.sparsities limits the ticket zoos (each costs as much as the dense zoo);
zoo.reference_counts adds each attack against the number of reference models. Measured results, their commands,
commits and wall times: docs/strong_attacks.md (numbers are quoted there, from generated reports, not here).
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("strong_attacks", arg)
