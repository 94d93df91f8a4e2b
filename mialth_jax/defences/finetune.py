"""Prune-and-fine-tune (lottery.controls `finetune`): the trained dense model pruned by magnitude to each of
`defences.sparsities`, then fine-tuned with the mask held, from its trained weights (no rewind), over the last
`defences.finetune.fraction` of the run's steps and learning-rate schedule. Models: finetune_s80, ...
"""
from mialth_jax.defences import phase
from mialth_jax.lottery import recipes
from mialth_jax.utils import config_sections

ModelSpec, tag = recipes.ModelSpec, recipes.sparsity_tag


@recipes.RECIPES.register("finetune")
class PruneFineTune(phase.FineTuned):
  title = "prune + fine-tune"

  def plan(self, config, planned):
    rule = config.defences.rule
    return [ModelSpec(f"finetune_{tag(s)}", "finetune", s, "dense", rule, "trained")
            for s in phase.sparsities(config)]


config_sections.register("defences.finetune", "masked fine-tuning after pruning (finetune, admm, admm_minmax)", {
    "fraction": (0.5, "masked fine-tuning: the last half of the run's steps and lr schedule"),
}, validate=lambda config: phase.check_fraction(config, "finetune"))
