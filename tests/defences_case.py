"""The config of tests/test_defences.py: digits, a tiny ResNet, 12 steps; a ticket, prune-and-fine-tune and ADMM at
80 %, Min-Max at lambda 0 and 1; two cheap attacks under the paper protocol. (ADMM + Min-Max, one more compiled step,
is traced by the tests, not trained: the digits experiment trains it.)

  python -m launch.main --config=tests/defences_case.py --workdir=/tmp/run

The ticket takes the defences' rule (layerwise, as configs/experiments/defences.py sets it), so its mask is dense's
one-shot magnitude mask that ADMM's is counted against. The ADMM W-phase takes steps 6..12 in 2 rounds of 3 (round
ends at steps 9 and 12), at the spec's rho (1e-3, x1.5 per round); admm_hard_s80 is its end hard-pruned (no steps),
admm_s80 the same fine-tuned. `:admm` plans only dense, the ticket and the ADMM models, checkpoints every 2 steps and
attacks nothing: the kill -9 test stops it after the step-8 checkpoint, inside ADMM's first round.
"""
from mialth_jax import config_lib


def get_config(arg: str | None = None):
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 256          # 642 unused train images: 321 are the Min-Max reference set
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 12
  config.train.learning_rate = 0.05
  config.train.eval_every_epochs = 3.0  # 4 steps per epoch: evaluated at the end only
  config.train.log_every_steps = 1
  config.lottery.sparsities = (0.8,)
  config.lottery.rule = config.defences.rule
  config.lottery.controls = ("finetune", "admm", "minmax")
  config.defences.admm.rounds = 2
  config.defences.minmax.lambdas = (0.0, 1.0)
  config.defences.minmax.warmup_fraction = 0.25
  config.attacks.nonmembers = "test+unused_train"
  config.attacks.sizes = (400,)
  config.attacks.models = {"loss": {"type": "threshold_loss"}, "confidence": {"type": "threshold_confidence"}}
  config.attacks.num_bootstrap = 100
  if arg == "admm":
    config.lottery.controls = ("admm",)
    config.attacks.protocols = ()
    config.checkpoint_every_steps = 2
  return config
