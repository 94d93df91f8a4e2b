"""Pruning families side by side, at equal sparsity and at equal fit: dense, one-shot magnitude tickets, SNIP, GraSP
and SynFlow (pruning at initialisation, lottery/at_init.py), channel L1 (whole filters) and 2:4 (lottery/structured.py),
in one run, so that they share the dense model, its member split and the zoo's membership: zoo model s of every
family trained on the same examples as zoo dense s, which makes (family s, dense s) a model pair for the zoo verdict
(leave-one-out LiRA / RMIA, model-level intervals) and for the fit curves (sparsity_vs_fit's design: every zoo model
kept every epoch and attacked there, compared with dense at matched train loss and at matched held-out accuracy).
Otherwise the sparsity_vs_fit experiment (configs/experiments/sparsity_vs_fit.py), without its random-prune controls.

Sparsities: 50 % for every family (2:4 prunes exactly half, its only sparsity), and 80 % for the unstructured ones
(magnitude, SNIP, GraSP, SynFlow: the paper's Table 1 sparsity, where they still train close to dense). Channel L1 is
at 50 % only: at 80 % it removes 4 of every 5 filters of every convolution (of 16 first-stage channels on digits, 3
would remain), a far smaller network rather than a sparse one, which is the narrow control's question
(sparsity_vs_fit.py:...:narrow<p>), not this one's.

  python -m launch.main --config=configs/experiments/pruning_families.py:default --workdir=runs/families_digits
  MIALTH_DATA_DIR=../shared/data python -m launch.main \\
      --config=configs/experiments/pruning_families.py:cifar10_resnet18:subset --workdir=runs/families_cifar10
  python -m launch.report --workdir=runs/families_digits --out=/tmp/families --sections=verdict,runs,fit_curves

A copy of a finished sparsity_vs_fit.py run folder of the same variant can host this run: its dense model, 50 / 80 %
tickets and their zoos are model for model this run's (nothing model-defining differs; the families' settings only
add models), so only the families are trained; leave out the copy's other kinds (random-prune controls, the 90 %
ticket) and its attacks folder, or the report will show them too.

`default` is the digits run of configs/default.py (CI-sized: 11 zoo kinds of 16 models); `cifar10_resnet18:subset`
the CIFAR-10 subset with sparsity_vs_fit's (strong attacks') CPU-sized training and a zoo of 16 models.

Digits checks the mechanics only, not the families: its 8x8 images reach ResNet-18's last stage as 1x1 maps, where
8 of the 9 taps of each 3x3 kernel only ever multiply zero padding. At width 1/4 that is 434,176 of the 698,768
prunable weights (62 %), whose gradient, SNIP score and SynFlow score are exactly 0: SNIP and SynFlow at 50 % prune
only such weights, so their models train exactly as dense does (equal logits), and GraSP at 50 % and 80 % prune the
same live weights. On CIFAR's 32x32 images the last stage's maps are 4x4 and every tap is live.
"""
from mialth_jax.experiments import paper

FAMILIES = ("snip", "grasp", "synflow", "channel", "nm")  # beside lottery.method's one-shot magnitude tickets


def get_config(arg: str | None = None):
  config = paper.experiment("sparsity_vs_fit", arg)
  config.lottery.sparsities = (0.5, 0.8)
  config.lottery.controls = FAMILIES
  config.lottery.structured.channel_sparsities = (0.5,)
  config.lottery.structured.nm = "2:4"
  return config
