"""Runs the lottery pipeline (and the attacks) for a config.

  python -m launch.main --config=configs/default.py --workdir=runs/default [--config.train.num_epochs=5] [--restart]

A bad flag, setting or file, a full disk, or a diverging run (the project's `errors.UserError`s) ends the launch with
one line `error: ...` on stderr and exit status 2; anything else is a bug and shows its traceback (exit status 1).
A relaunch of the same command resumes a killed run.
"""
import os
import re
import sys
from typing import NoReturn

import jax
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from mialth_jax import errors, run_dir
from mialth_jax.experiments import launch
from mialth_jax.utils import logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder (created; resumed if it holds the same run)")
_RESTART = flags.DEFINE_bool("restart", False, "if --workdir holds a run with a different config, move it aside to "
                             "<workdir>.old-<time> and start over (a run of the same config is resumed)")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() (TPU pods, multi-host GPU)")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "on a CPU, run as this many XLA devices (0: JAX's default, one): each runs its share of the "
    "batch on its own thread; 8 trains CIFAR-sized networks 1.4-1.8x faster on 2 cores (docs/performance.md), "
    "results then differ from a one-device run in the last bits. Ignored on GPUs and TPUs", lower_bound=0)
flags.mark_flags_as_required(["config", "workdir"])


def fail(message) -> NoReturn:
  """Prints `error: message` as one line and exits with status 2."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(2)


def _last_line(error: Exception) -> str:
  """The informative end of a multi-line library message (config_flags appends tracebacks)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _override_naming(argv: list[str], field: str) -> str:
  """The --config.* override that names `field`, for an unknown-field error."""
  names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  return next((n for n in names if field in n.split(".")), "--config")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag, config file or config override reported by `fail`."""
  try:
    args = flags.FLAGS(argv)
    _CONFIG.value.keys()  # config_flags defers a config file's load error until the config is used
    return args
  except flags.Error as e:
    fail(_last_line(e))
  except (AttributeError, KeyError) as e:
    # ml_collections nests the missing key's repr, maybe with a hint: '\'trian\'\nDid you mean "train" ...?'
    field = re.search(r"(\w+)", str(e)).group(1)
    hint = re.search(r'Did you mean "(\w+)"', str(e))
    fail(f"{_override_naming(argv, field)}: the config has no field {field!r}"
         + (f"; did you mean {hint.group(1)!r}?" if hint else ""))
  except (OSError, SyntaxError) as e:
    fail(f"--config: cannot load the config file ({_last_line(e)})")


def main(argv):
  del argv
  logs.quiet_libraries()
  # Tickets share their dense model's train step: with a persistent cache it compiles once per machine, not per model.
  jax.config.update("jax_compilation_cache_dir", os.environ.get(
      "JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mialth_jax", "jax_cache")))
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)   # before anything starts the backend
  if _MULTIHOST.value:
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices (%s)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
  try:
    if _RESTART.value and jax.process_index() == 0:
      moved = run_dir.restart(_CONFIG.value, _WORKDIR.value)
      if moved:
        logging.warning("--restart: moved the run with a different config to %s", moved)
    if _RESTART.value and jax.process_count() > 1:
      multihost_utils.sync_global_devices("restart")
    launch.run(_CONFIG.value, _WORKDIR.value)
  except errors.UserError as e:
    fail(e)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
