"""Beyond the paper: LiRA (Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024) on a zoo of reference models, for
the dense model and its tickets, next to the paper's MLP attack and the loss threshold (zoo protocol).

Runs on the workdir of a finished (or to-be-finished) run and reuses its models; the zoo trains once in shadows/:
  python -m launch.main --config=configs/experiments/lira.py:default --workdir=runs/default \
      --config.zoo.sparsities='(0.8,)'                                          # digits, 16 models, CPU
  python -m launch.main --config=configs/experiments/lira.py:cifar10_resnet18:subset --workdir=runs/lira_cifar10
      # its own run: width x1/8, no augmentation, 8 epochs, 8 zoo models (~25 min per zoo on 2 cores)
  python -m launch.report --workdir=runs/default
The zoo has config.zoo.num_models models (16 on CPU configs, 64 for full CIFAR via tfds, 16 for ImageNet), each
trained with the run's recipe on as many random examples of the dataset as the target's members; zoo.sparsities
limits the ticket zoos (each costs as much as the dense zoo). docs/strong_attacks.md holds measured results and
their commands. Measured on the shared 2-core CPU: `default` (digits, 16 models, 80 % ticket) LiRA-online fixed
variance AUC 0.576 / TPR @ 1 % FPR 0.040 on dense vs the loss threshold's 0.542 / 0.004; `cifar10_resnet18:subset`
(8 models per kind, 25-31 min a zoo) dense 0.760 / 0.077 vs loss 0.750 / 0.012, the 50 % ticket above dense (+0.055
AUC), the 90 % below (-0.094); `cifar100_resnet18:subset --config.zoo.num_models=4 --cpu_devices=4` RMIA dense
0.681 / 0.044 vs loss 0.638 / 0.021.
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("strong_attacks", arg)
