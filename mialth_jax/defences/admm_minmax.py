"""MIA-Pruning & Min-Max (lottery.controls `admm_minmax`): ADMM's W-phase on the Min-Max objective, then the hard prune
and the masked fine-tuning on it, one model per sparsity of `defences.sparsities` and lambda of
`defences.minmax.combined_lambdas` (admm_minmax_train_s80_l1 -> admm_minmax_hard_s80_l1, not trained, and
admm_minmax_s80_l1). h starts fresh at each phase, without a warm-up (the dense model it starts from was the warm-up).
"""
from mialth_jax.defences import admm, minmax, phase
from mialth_jax.lottery import recipes


@recipes.RECIPES.register("admm_minmax_train")
class AdmmMinMaxTrain(admm.AdmmTrain):
  """ADMM's W-phase on the Min-Max objective (planned by `admm_minmax`)."""
  title = "ADMM + Min-Max W-phase, before hard pruning"

  def state(self, ctx, spec):
    return {**super().state(ctx, spec), "minmax": minmax.game_state(ctx, spec, self.first_step(ctx, spec))}


@recipes.RECIPES.register("admm_minmax_hard")
class AdmmMinMaxHard(admm.AdmmHard):
  """The ADMM-on-Min-Max weights hard-pruned, not trained (planned by `admm_minmax`)."""
  title = "ADMM + Min-Max, hard-pruned, before fine-tuning"


@recipes.RECIPES.register("admm_minmax")
class AdmmMinMax(admm.Admm):
  """The ADMM-on-Min-Max weights hard-pruned, then fine-tuned on the Min-Max objective."""
  title = "ADMM + Min-Max"

  def plan(self, config, planned):
    rule = config.defences.rule
    return [spec for s in phase.sparsities(config) for lam in config.defences.minmax.combined_lambdas
            for spec in admm.phases("admm_minmax", s, rule, f"_l{lam:g}", (("lambda", float(lam)),))]

  def state(self, ctx, spec):
    return {**super().state(ctx, spec), "minmax": minmax.game_state(ctx, spec, self.first_step(ctx, spec))}
