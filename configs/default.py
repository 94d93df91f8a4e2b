"""The embedded default: ResNet-18 (width 1/4) on scikit-learn's digits, dense + one-shot tickets + attacks.

  python -m launch.main --config=configs/default.py --workdir=runs/default

Needs no download. Expected on a 2-core CPU (about 2 minutes): dense test accuracy ~0.97, tickets at 50/80/90 %
sparsity within a point of it; the attacks on 8x8 digits stay near chance (accuracy 0.5-0.6), as the paper's CIFAR-10
numbers do.
"""
from mialth_jax import config_lib, errors


def get_config(arg: str | None = None):
  if arg not in (None, "smoke"):  # a typo must not run the full default
    raise errors.ConfigError(f"config variant {arg!r} is unknown; expected none or 'smoke'")
  config = config_lib.base()
  config.model.width_multiplier = 0.25
  config.train.batch_size = 64
  config.train.num_epochs = 15.0
  config.train.learning_rate = 0.05
  config.train.log_every_steps = 20
  config.train.eval_every_epochs = 5.0
  if arg == "smoke":
    config.model.width_multiplier = 0.125
    config.train.num_epochs = -1.0
    config.train.num_steps = 4
    config.train.eval_every_epochs = 1.0
    config.lottery.sparsities = (0.8,)
  return config
