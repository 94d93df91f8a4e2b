"""Validation of config.defences (defaults in config_lib.base()): one line naming the bad field.

Where the papers are silent these are our choices (docs/defences.md says which): ADMM's rho is far above ADMM-NN's
1e-3 so that the penalty moves the weights within a phase of a few epochs (docs/defences.md compares 0.01, 0.1 and 1
on digits); the Min-Max defaults follow Nasr et al.'s code except h's learning rate (see defences/minmax.py).
"""
import ml_collections

from mialth_jax import errors
from mialth_jax.defences import admm
from mialth_jax.lottery import masks


def _check(ok: bool, field: str, value, expected: str) -> None:
  if not ok:
    raise errors.ConfigError(f"defences.{field}={value!r}: expected {expected}")


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config: ml_collections.ConfigDict) -> None:
  """Every defences field, checked before anything is trained (configs without the section train no defence)."""
  if "defences" not in config:
    return
  d = config.defences
  for s in d.sparsities:
    masks.check_sparsity(s, "defences.sparsities")
    _check(s in config.lottery.sparsities, "sparsities", tuple(d.sparsities),
           f"a subset of lottery.sparsities {tuple(config.lottery.sparsities)} (defences compare at equal sparsity)")
  _check(d.rule in admm.RULES, "rule", d.rule, f"one of {', '.join(admm.RULES)}")
  for section in ("finetune", "admm"):
    fraction = d[section].fraction
    _check(_number(fraction) and 0 < fraction <= 1, f"{section}.fraction", fraction, "a share of the run in (0, 1]")
  _check(isinstance(d.admm.rounds, int) and d.admm.rounds >= 1, "admm.rounds", d.admm.rounds, "an integer >= 1")
  _check(_number(d.admm.rho) and d.admm.rho >= 0, "admm.rho", d.admm.rho, "a penalty >= 0")
  _check(_number(d.admm.rho_growth) and d.admm.rho_growth >= 1, "admm.rho_growth", d.admm.rho_growth,
         "a factor >= 1 (rho never shrinks)")
  m = d.minmax
  for field in ("lambdas", "combined_lambdas"):
    values = tuple(m[field])
    _check(all(_number(v) and v >= 0 for v in values), f"minmax.{field}", values, "lambdas >= 0")
    _check(len(set(values)) == len(values), f"minmax.{field}", values, "distinct lambdas")
  _check(_number(m.warmup_fraction) and 0 <= m.warmup_fraction < 1, "minmax.warmup_fraction", m.warmup_fraction,
         "a share of the run in [0, 1)")
  _check(isinstance(m.reference_size, int) and (m.reference_size == -1 or m.reference_size >= 1),
         "minmax.reference_size", m.reference_size, "-1 (half the unused training images) or a count >= 1")
  _check(_number(m.learning_rate) and m.learning_rate > 0, "minmax.learning_rate", m.learning_rate, "a rate > 0")
  if any(k in config.lottery.controls for k in ("minmax", "admm_minmax")) and config.data.num_train == -1:
    raise errors.ConfigError("defences.minmax: data.num_train=-1 leaves no unused training images for the reference "
                             "set; set data.num_train below the size of the train split")
