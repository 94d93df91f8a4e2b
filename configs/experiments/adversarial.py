"""Membership inference via adversarial examples (Kadoche et al. 2022, reconstructed) and label-only attacks
(HopSkipJump boundary distance, augmentation robustness), on the dense model, every ticket and two defences of ours
(output smoothing, input-gradient-norm penalty), next to the output-based attacks (adversarial protocol).

Runs on the workdir of a finished (or to-be-finished) run and reuses its models (the same as configs/experiments/lira.py
trains); it adds the input_gradient_penalty model and the attacks:
  python -m launch.main --config=configs/experiments/adversarial.py:default --workdir=runs/adversarial_default
  MIALTH_DATA_DIR=/work/shared/data python -m launch.main \
      --config=configs/experiments/adversarial.py:cifar10_resnet18:subset --workdir=runs/lira_cifar10
  MIALTH_DATA_DIR=/work/shared/data python -m launch.main \
      --config=configs/experiments/adversarial.py:cifar100_resnet18:subset --workdir=runs/lira_cifar100
  python -m launch.report --workdir=runs/adversarial_default
On CIFAR subsets every attack sees 1,000 attack-train and 1,000 attack-test examples (adversarial.num_examples);
docs/adversarial.md holds measured results, wall times and the choices where the paper is silent.
"""
from mialth_jax.experiments import paper


def get_config(arg: str | None = None):
  return paper.experiment("adversarial", arg)
