"""train.stop_at: a model stops at the first evaluation that reaches the target fit, for every recipe, and a run
killed after a checkpoint and relaunched stops at the same step with the same weights."""
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mialth_jax import config_lib, errors
from mialth_jax.experiments import launch
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import stop_at
from mialth_jax.utils import io

TARGET = 0.6


def config():
  c = config_lib.base()
  c.model.width_multiplier = 0.0625
  c.data.num_train = 512
  c.train.batch_size = 64
  c.train.num_epochs, c.train.num_steps = -1.0, 80   # 8 steps per epoch: 10 epochs
  c.train.eval_every_epochs = 0.5                    # an evaluation every 4 steps
  c.train.log_every_steps = 4
  c.train.stop_at = f"train_accuracy>={TARGET}"
  c.checkpoint_every_steps = 4
  c.lottery.sparsities = (0.8,)
  c.attacks.protocols = ()
  return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("stop_at") / "run")
  launch.train(config(), workdir)
  return workdir


def _evaluations(workdir: str, name: str) -> list[dict]:
  return [r for r in io.read_jsonl(RunLayout(workdir).metrics(name)) if r["phase"] == "eval"]


@pytest.mark.parametrize("name", ["dense", "ticket_s80"])
def test_each_model_stops_at_the_first_evaluation_that_reaches_the_target(run, name):
  evaluations = _evaluations(run, name)
  reached = [e["step"] for e in evaluations if e["train_accuracy"] >= TARGET]
  summary = io.read_json(RunLayout(run).summary(name))
  assert reached and reached[0] == evaluations[-1]["step"] == summary["steps"] == summary["stopped_at"] < 80
  assert all(e["train_accuracy"] < TARGET for e in evaluations[:-1])  # no earlier evaluation reached it
  trained = [r["step"] for r in io.read_jsonl(RunLayout(run).metrics(name)) if r["phase"] == "train"]
  assert max(trained) == summary["steps"]  # not one step past the stop


def test_a_run_killed_after_a_checkpoint_stops_at_the_same_step_with_the_same_weights(run, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(run, copy)
  layout = RunLayout(copy)
  stopped = io.read_json(layout.summary("dense"))["steps"]
  kept = sorted(int(d) for d in os.listdir(layout.checkpoints("dense")) if d.isdigit())
  assert kept and kept[-1] < stopped  # the last periodic checkpoint precedes the stop
  # Killed after dense's last periodic checkpoint, before its final weights and summary (and the ticket) existed.
  shutil.rmtree(layout.model_dir("ticket_s80"))
  shutil.rmtree(layout.final("dense"))
  os.remove(layout.summary("dense"))
  launch.train(config(), copy)
  assert io.read_json(layout.summary("dense"))["steps"] == stopped
  for name in ("dense", "ticket_s80"):
    again, first = (_read(RunLayout(w).final(name)) for w in (copy, run))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(first)):
      np.testing.assert_array_equal(a, b)


def _read(path: str):
  """A checkpoint read with no target tree (independently of the pipeline's restore)."""
  with ocp.StandardCheckpointer() as c:
    return jax.device_get(c.restore(os.path.abspath(path)))


@pytest.mark.parametrize("text", ["train_accuracy>0.9", "accuracy>=0.9", "train_loss<=x", "train_loss == 1"])
def test_a_bad_stop_at_is_one_error_naming_the_field(text):
  with pytest.raises(errors.ConfigError, match=r"^train\.stop_at="):
    stop_at.parse(text)


def test_parsed_targets_compare_as_written():
  assert stop_at.parse("") is None
  target = stop_at.parse(" train_loss <= 0.25 ")
  assert target.met({"train_loss": 0.25}) and not target.met({"train_loss": 0.2501})
  assert str(target) == "train_loss<=0.25"
