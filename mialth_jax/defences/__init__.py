"""Defences against membership inference, each one module that registers its recipes, step hooks, config section
and reserved ids (docs/defences.md; `plugins.load()` imports them):

  phase                   what the trained defences share: the `first_step` hook, defence.json, config.defences
  finetune                prune-and-fine-tune
  admm                    ADMM weight pruning with per-layer cardinality constraints (Wang et al., IJCAI 2021)
  minmax, reference       adversarial regularisation, the "Min-Max game" (Nasr et al., CCS 2018), and its reference set
  admm_minmax             ADMM pruning on the Min-Max objective
  input_gradient_penalty  defence D2 (ours): an input-gradient-norm penalty in training
  smoothing               defence D1 (ours): inference-time output smoothing
  dp_sgd                  DP-SGD (Abadi et al. 2016), the defence with a guarantee, and DP-SGD lottery tickets
"""
