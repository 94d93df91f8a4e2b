"""Trains one recipe with mialth_jax's step and with a PyTorch reference step from the same w0, batches and
augmentation draws, and writes both curves side by side (mialth_jax/experiments/torch_parity.py; docs/reproduction.md).

  pip install -e '.[torch]'
  python -m launch.torch_parity --config=configs/cifar10_resnet18.py:subset --workdir=runs/parity_steps \
      --steps=50 --synchronise                                   # each step from the same state: the step itself
  python -m launch.torch_parity --config=configs/cifar10_resnet18.py:subset --workdir=runs/parity_c10 \
      --config.train.num_epochs=25                               # two whole runs, free-running

Writes <workdir>/parity.jsonl (per step: both losses and the learning rate; per evaluation: both sides' test and
train accuracy and loss) and <workdir>/parity.json (the summary). A workdir that already holds parity.json is left
alone (one line on stderr, exit status 2); a bad flag, setting or file also ends with one line and status 2.
"""
import os
import sys
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from mialth_jax import errors
from mialth_jax.utils import io, logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "run config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (parity.json, parity.jsonl)")
_STEPS = flags.DEFINE_integer("steps", -1, "train steps (-1: the config's whole run)")
_SYNCHRONISE = flags.DEFINE_bool("synchronise", False, "set the JAX state to PyTorch's before every step")
_EVAL_EVERY = flags.DEFINE_float("eval_every_epochs", 5.0, "evaluate both sides every this many epochs and at the end",
                                 lower_bound=0.01)
flags.mark_flags_as_required(["config", "workdir"])
FIRST_STEPS = 50  # the steps whose losses the summary compares


def summary(curves, config, seconds: float) -> dict:
  """The losses of the first steps compared, and both sides' last evaluation."""
  first = [abs(a - b) for a, b in zip(curves.jax_loss[:FIRST_STEPS], curves.torch_loss[:FIRST_STEPS])]
  result = {"config": config.to_dict(), "steps": len(curves.jax_loss), "wall_seconds": seconds,
            f"max_loss_difference_first_{FIRST_STEPS}_steps": max(first),
            "loss_difference_per_step": first, "final_eval": curves.evals[-1]}
  if curves.param_difference:
    result["max_param_difference_relative"] = max(curves.param_difference)
    result["median_param_difference_relative"] = float(np.median(curves.param_difference))
  return result


def main(argv):
  del argv
  logs.quiet_libraries()
  out = os.path.join(_WORKDIR.value, "parity.json")
  try:
    if os.path.exists(out):
      raise errors.ConfigError(f"--workdir={_WORKDIR.value} already holds a finished comparison (parity.json); "
                               "use a new --workdir")
    try:
      from mialth_jax.experiments import torch_parity as parity  # pylint: disable=import-outside-toplevel
      parity.torch_module()  # torch is imported by the parity code on first use: its absence named here
    except ModuleNotFoundError as e:
      raise errors.ConfigError(f"launch.torch_parity needs {e.name}: pip install -e '.[torch]'") from e
    os.makedirs(_WORKDIR.value, exist_ok=True)
    metrics = io.MetricsLog(os.path.join(_WORKDIR.value, "parity.jsonl"))
    metrics.truncate_after(0)
    start = time.perf_counter()
    curves = parity.run(_CONFIG.value, _WORKDIR.value, _STEPS.value, _EVAL_EVERY.value, _SYNCHRONISE.value,
                        log=metrics)
    result = summary(curves, _CONFIG.value, time.perf_counter() - start)
    io.write_json(out, result)
    logging.info("first %d steps: largest loss difference %.3g; final: JAX test accuracy %.4f, PyTorch %.4f",
                 FIRST_STEPS, result[f"max_loss_difference_first_{FIRST_STEPS}_steps"],
                 result["final_eval"]["jax_test_accuracy"], result["final_eval"]["torch_test_accuracy"])
  except errors.UserError as e:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
