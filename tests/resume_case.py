"""The config of the kill / resume and bad-input tests: a tiny run with periodic checkpoints and cheap attacks.

  python -m launch.main --config=tests/resume_case.py --workdir=/tmp/run

Dense trains 24 steps (4 per epoch), evaluating and checkpointing every 4; the ticket rewinds to step 10 (late
rewinding) and retrains steps 10..24. Two cheap attacks run under the paper and transfer protocols, 12 results in
all. `:unknown_attack` names an attack type that does not exist (attack configs cannot be overridden by flags);
`:keep` also keeps every model's weights every epoch (train.keep_every_epochs = 1: steps 4, 8, ..., 20).
"""
from mialth_jax import config_lib


def get_config(arg: str | None = None):
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256
  config.train.batch_size = 64
  config.train.num_epochs, config.train.num_steps = -1.0, 24
  config.train.learning_rate = 0.05
  config.train.eval_every_epochs = 1.0
  config.train.log_every_steps = 1
  config.lottery.sparsities = (0.8,)
  config.lottery.rewind_step = 10
  config.checkpoint_every_steps = 4
  config.attacks.protocols = ("paper", "transfer")
  config.attacks.models = {"loss": {"type": "threshold_loss"}, "logreg": {"type": "sklearn_logreg"}}
  config.attacks.num_bootstrap = 100
  if arg == "keep":
    config.train.keep_every_epochs = 1
  if arg == "unknown_attack":
    config.attacks.models = {"loss": {"type": "threshold_los"}}
  return config
