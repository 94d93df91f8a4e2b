"""ResNet-18 lottery tickets on CIFAR10, and membership inference on each (the paper's setup).

  python -m launch.main --config=configs/cifar10_resnet18.py --workdir=runs/cifar10_r18 --config.data.data_dir=DIR
  python -m launch.main --config=configs/cifar10_resnet18.py:subset --workdir=runs/cifar10_r18_subset   # CPU
  python -m launch.main --config=configs/cifar10_resnet18.py:smoke --workdir=runs/cifar10_r18_smoke     # CI-sized

Full (tfds cifar10, prepared as in docs/tfds.md): 50,000 members, 160 epochs, dense + tickets at 50/80/90/95 %.
subset: the real CIFAR10 subset of ../shared/data, 5,000 members, width 1/4, 20 epochs with augmentation; see
docs/reproduction.md for measured results and wall time.
"""
from mialth_jax.experiments import presets


def get_config(arg: str | None = None):
  return presets.image_classification("cifar10", "resnet18", arg)
