"""The train step is compiled once per run (per recipe loss), however many tickets the run trains."""
import pytest

from mialth_jax import config_lib
from mialth_jax.experiments import launch
from mialth_jax.lottery import train


def _config(sparsities):
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 128
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 2
  config.lottery.sparsities = sparsities
  config.lottery.controls = ("random_prune",)
  return config


def _train_step_traces(config, workdir, monkeypatch) -> int:
  """Trains a run and counts how often the train step was traced (each trace precedes one compilation)."""
  traces = []
  real_step = train.train_step

  def counting_step(*args, **kwargs):
    traces.append(1)
    return real_step(*args, **kwargs)
  monkeypatch.setattr(train, "train_step", counting_step)
  launch.train(config, workdir)
  return len(traces)


@pytest.mark.parametrize("sparsities", [(0.5,), (0.5, 0.8, 0.9)])
def test_train_step_compiles_once_per_run(sparsities, tmp_path, monkeypatch):
  # dense + one ticket and one random-prune control per sparsity: 3 or 7 models, one trace.
  assert _train_step_traces(_config(sparsities), str(tmp_path), monkeypatch) == 1
