"""The config of the zoo kill / resume tests: a tiny run whose zoo of 8 models checkpoints every 4 steps; `:curve`
checkpoints every 7 steps and keeps a curve point every epoch (14 steps: one point, at a checkpoint's step).

  python -m launch.main --config=tests/zoo_resume_case.py --workdir=/tmp/run
  python -m launch.main --config=tests/zoo_resume_case.py:curve --workdir=/tmp/run
"""
from mialth_jax import config_lib


def get_config(arg: str | None = None):
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = -1  # 898 members: each zoo model trains on half the data, every example IN for 4 models
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 16
  config.train.log_every_steps = 1
  config.lottery.sparsities = (0.8,)
  config.checkpoint_every_steps = 4
  config.zoo.num_models = 8
  config.attacks.protocols = ("zoo",)
  config.attacks.models = {"lira": {"type": "lira"}}
  config.attacks.sizes = (200,)
  config.attacks.num_bootstrap = 100
  if arg == "curve":
    config.checkpoint_every_steps = 7
    config.zoo.curve_every_epochs = 1
    config.zoo.curve_attack = "lira"
  return config
