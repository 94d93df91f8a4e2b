"""Runs the lottery pipeline (and the attacks) for a config.

  python -m launch.main --config=configs/default.py --workdir=runs/default [--config.train.num_epochs=5]
"""
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mialth_jax import runner
from mialth_jax.utils import logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder (created; resumed if it holds the same run)")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() (TPU pods, multi-host GPU)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logs.quiet_libraries()
  if _MULTIHOST.value:
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices (%s)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
  try:
    runner.run(_CONFIG.value, _WORKDIR.value)
  except runner.USER_ERRORS as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
