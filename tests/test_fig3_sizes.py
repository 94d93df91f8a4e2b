"""Figure 3's attack-set sizes on the embedded default fit its member and non-member pools (a size the pools cannot
fill stops the documented `fig3_attack_vs_samples.py:default` command)."""
import numpy as np

from configs.experiments import fig3_attack_vs_samples
from mialth_jax import data
from mialth_jax.attacks import attack_sets
from mialth_jax.data import splits as splits_lib


def test_every_default_size_is_drawn_from_the_default_runs_pools():
  config = fig3_attack_vs_samples.get_config("default")
  dataset = data.load_dataset(config.data)
  splits = splits_lib.draw(config, dataset)
  members, nonmembers = len(splits.members), len(np.unique(splits.test))
  resolved = [attack_sets.resolve_size(size, members, nonmembers) for size in config.attacks.sizes]
  assert resolved == sorted(set(resolved)) and resolved[-1] == 2 * min(members, nonmembers)
  assert len(resolved) == 4
