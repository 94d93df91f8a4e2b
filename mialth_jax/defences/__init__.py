"""Defences against membership inference, as training recipes of the lottery pipeline (docs/defences.md):

  admm       ADMM weight pruning with per-layer cardinality constraints (Wang et al., IJCAI 2021, as reconstructed)
  minmax     adversarial regularisation, the "Min-Max game" (Nasr, Shokri, Houmansadr, CCS 2018)
  reference  the Min-Max defender's reference non-members, disjoint from every evaluation
  step       the train step that carries both; recipes: finetune, admm, minmax, admm_minmax; settings: config.defences
"""
from mialth_jax.defences import recipes  # noqa: F401  (registers the defence recipes in lottery.recipes.RECIPES)
