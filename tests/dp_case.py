"""The config of tests/test_dp_sgd_run.py: digits, a tiny GroupNorm ResNet, 6 steps; dense, a DP model at target
epsilon 4 and its DP ticket at 50 %, attacked by the loss threshold under the paper protocol.

  python -m launch.main --config=tests/dp_case.py --workdir=/tmp/run
"""
from mialth_jax import config_lib


def get_config(arg: str | None = None):
  del arg
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.model.norm = "group"
  config.data.num_train = 256
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 32, -1.0, 6
  config.train.learning_rate = 0.05
  config.train.eval_every_epochs = 1.0
  config.train.log_every_steps = 1
  config.lottery.sparsities = ()
  config.lottery.controls = ("dp", "dp_ticket")
  config.defences.dp_sgd.epsilons = (4.0,)
  config.defences.dp_sgd.ticket_sparsities = (0.5,)
  config.attacks.models = {"loss": {"type": "threshold_loss"}}
  config.attacks.num_bootstrap = 100
  return config
