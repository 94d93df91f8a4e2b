"""The defences' settings and projection without training: the jitted ADMM projection is the tickets' magnitude rule,
and every bad defences setting is refused by validation in one line naming the field (before anything is written: the
launcher prints it as its one `error:` line, tests/test_bad_input.py)."""
import os
import sys

import jax
import numpy as np
import pytest

from mialth_jax import config_lib, errors
from mialth_jax.defences import admm, phase
from mialth_jax.lottery import masks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import defences_case  # noqa: E402


def test_the_jitted_projection_is_the_tickets_magnitude_rule():
  rng = np.random.default_rng(0)
  params = {"a": {"kernel": rng.normal(size=(3, 3, 4, 8)).astype(np.float32)},
            "b": {"kernel": np.round(rng.normal(size=(16, 10)), 1).astype(np.float32), "bias": np.ones(10, np.float32)}}
  mask = masks.dense_mask(params, masks.prunable_predicate(r"kernel$"))
  counts = {"layerwise_magnitude": [round(0.7 * 288), round(0.7 * 160)], "global_magnitude": round(0.7 * 448)}
  for rule in phase.RULES:
    state = admm.init_state(params, mask, 0.7, rule, rho=0.0, growth=1.0, round_steps=1, first_step=0)
    assert np.asarray(state["pruned"]).tolist() == counts[rule]
    expected = masks.prunable_leaves(masks.prune(params, mask, 0.7, rule), mask)
    kept = jax.jit(masks.keep_largest)([np.abs(w) for w in masks.prunable_leaves(params, mask)], state["pruned"])
    assert all(np.array_equal(k, e) for k, e in zip(kept, expected)), rule  # ties (rounded b) broken alike
    assert all(np.array_equal(z, np.where(e, w, 0)) for z, e, w in
               zip(state["z"], expected, masks.prunable_leaves(params, mask)))  # Z0 = Proj(W0)


def test_admm_defaults_to_the_specs_rho_schedule_and_takes_rho_1_by_flags():
  config = defences_case.get_config()
  assert (config.defences.admm.rho, config.defences.admm.rho_growth) == (1e-3, 1.5)  # spec section 3
  config.defences.admm.rho, config.defences.admm.rho_growth = 1.0, 2.0  # the documented option
  config_lib.validate(config)


@pytest.mark.parametrize("field,value,expected", [
    ("minmax.lambdas", (1.0, -0.5), "defences.minmax.lambdas=(1.0, -0.5): expected lambdas >= 0"),
    ("admm.rho", -1e-3, "defences.admm.rho=-0.001: expected a penalty >= 0"),
    ("admm.rho_growth", 0.5, "defences.admm.rho_growth=0.5: expected a factor >= 1"),
    ("admm.rounds", 0, "defences.admm.rounds=0: expected an integer >= 1"),
    ("sparsities", (0.7,), "defences.sparsities=(0.7,): expected a subset of lottery.sparsities (0.8,)"),
    ("sparsities", (1.5,), "defences.sparsities: 1.5 is outside [0, 1)"),
    ("finetune.fraction", 0.0, "defences.finetune.fraction=0.0: expected a share of the run in (0, 1]"),
    ("rule", "random", "defences.rule='random': expected one of layerwise_magnitude, global_magnitude"),
])
def test_bad_settings_are_refused_in_one_line_naming_the_field(field, value, expected):
  config = defences_case.get_config()
  section, _, key = field.rpartition(".")
  (config.defences[section] if section else config.defences)[key] = value
  with pytest.raises(errors.ConfigError) as e:
    config_lib.validate(config)
  assert str(e.value).startswith(expected) and "\n" not in str(e.value)

