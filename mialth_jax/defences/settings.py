"""config.defences: the defaults of the defence recipes and their validation (one line naming the field).

Where the papers are silent these are our choices (docs/defences.md says which): ADMM's rho is far above ADMM-NN's
1e-3 so that the penalty moves the weights within a phase of a few epochs (docs/defences.md compares 0.01, 0.1 and 1
on digits); the Min-Max defaults follow Nasr et al.'s code except h's learning rate (see defences/minmax.py).
"""
import ml_collections

from mialth_jax import errors
from mialth_jax.defences import admm
from mialth_jax.lottery import masks


def defaults() -> ml_collections.ConfigDict:
  defences = ml_collections.ConfigDict()
  defences.sparsities = ()              # of finetune / admm / admm_minmax: a subset of lottery.sparsities (empty: all)
  defences.rule = "layerwise_magnitude"  # layerwise_magnitude (k_i per layer, the spec) | global_magnitude
  defences.finetune = ml_collections.ConfigDict()
  defences.finetune.fraction = 0.5      # masked fine-tuning: the last half of the run's steps and lr schedule
  defences.admm = ml_collections.ConfigDict()
  defences.admm.rounds = 3              # ADMM rounds (Z- and U-steps), splitting the W-phase evenly
  defences.admm.fraction = 0.5          # the W-phase: the last half of the run's steps, from the trained dense model
  defences.admm.rho = 1.0               # initial penalty rho (docs/defences.md: 0.01 barely moves W in a short run)
  defences.admm.rho_growth = 2.0        # rho *= rho_growth after every round
  defences.minmax = ml_collections.ConfigDict()
  defences.minmax.lambdas = (1.0,)      # the minmax models: one per lambda (the code's alpha = 1)
  defences.minmax.combined_lambdas = (1.0,)  # the admm_minmax models: one per sparsity and lambda
  defences.minmax.warmup_fraction = 0.1  # minmax: plain training first (the code: 4 epochs), h untrained
  defences.minmax.reference_size = -1   # reference non-members drawn from the unused training images (-1: half)
  defences.minmax.learning_rate = 1e-3  # h's Adam rate (the code: 1e-5 over 400 epochs)
  return defences


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
