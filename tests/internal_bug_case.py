"""A config whose run hits a bug, not a user error: a training recipe (registered here) whose mask raises KeyError.

  python -m launch.main --config=tests/internal_bug_case.py --workdir=/tmp/run    # traceback, exit status 1
"""
from mialth_jax import config_lib
from mialth_jax.lottery import recipes


class BuggyRecipe(recipes.Recipe):

  def plan(self, config, planned):
    return [recipes.ModelSpec("buggy", "buggy")]

  def mask(self, ctx, spec):
    return {}["a key that is not there"]


def get_config(arg: str | None = None):
  del arg
  recipes.RECIPES.register("buggy", BuggyRecipe, replace=True)
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 128
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 2
  config.lottery.sparsities = ()
  config.lottery.controls = ("buggy",)
  return config
