"""DP-SGD, the defence with a guarantee (defences/dp_sgd.py), beside dense, lottery tickets and ADMM pruning on one
privacy-utility chart: DP models at target epsilons (delta 1e-5, below 1 / members), each with a DP lottery ticket
(pruned from it, rewound to w0, trained privately: its epsilon composes both trainings), attacked by the paper
protocol's attacks (trained on each model's own outputs). Every model of the run uses GroupNorm (model.norm=group,
16 groups or as many as a layer's channels allow), BatchNorm mixing the examples of a batch, so that DP and non-DP
models differ only in how they train. docs/dp_and_auditing.md holds the method and results.

  python -m launch.main --config=configs/experiments/dp.py:default --workdir=runs/dp_digits        # CI-sized
  MIALTH_DATA_DIR=../shared/data python -m launch.main --config=configs/experiments/dp.py:cifar10_resnet18:subset \
      --workdir=runs/dp_c10_subset --cpu_devices=4

digits (default): ResNet-18 x1/4, 600 members, 15 epochs at batch 64; tickets and ADMM at 50 / 90 %, DP at epsilon 1
and 8, DP tickets at 50 %.
CIFAR-10 subset (`:subset`): ResNet-18 x1/8, no augmentation, 8 epochs at batch 128, 5,000 members (the defences
experiment's subset models); tickets and ADMM at 50 / 90 %, DP at epsilon 1, 4 and 8, DP tickets at 50 %.
DP models train with the run's optimiser (SGD, momentum 0.9, cosine schedule), whose learning rate all models share;
`clip_norm` sets the size of their steps (learning rate x clip norm, the gradients being clipped means): 5, from a
trial of clip 1 and 5 on digits only (DP models alone; not tuned on CIFAR). Measured results, commands,
commits and wall times: docs/dp_and_auditing.md.
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  config = paper.experiment("defences", arg)
  config.model.norm = "group"
  config.lottery.controls = ("admm", "dp", "dp_ticket")
  config.attacks.protocols = ("paper",)
  dp = config.defences.dp_sgd
  dp.epsilons = (1.0, 8.0) if config.data.name == "digits" else (1.0, 4.0, 8.0)
  dp.ticket_sparsities = (0.5,)
  dp.clip_norm = 5.0
  return config
