"""Figure 3's attack-set sizes on the embedded default fit its member and non-member pools (a size the pools cannot
fill stops the documented `fig3_attack_vs_samples.py:default` command)."""
import types

from configs.experiments import fig3_attack_vs_samples
from mialth_jax import data
from mialth_jax.data import splits as splits_lib
from mialth_jax.experiments import attack_runs


def test_every_default_size_is_drawn_from_the_default_runs_pools():
  config = fig3_attack_vs_samples.get_config("default")
  dataset = data.load_dataset(config.data)
  ctx = types.SimpleNamespace(config=config, dataset=dataset, splits=splits_lib.draw(config, dataset))
  largest = 2 * min(len(ctx.splits.members), len(attack_runs.nonmember_pool(ctx)))
  resolved = [attack_runs.resolve_size(ctx, size) for size in config.attacks.sizes]  # raises where a pool is short
  assert resolved == sorted(set(resolved)) and len(resolved) == 4 and resolved[-1] == largest
