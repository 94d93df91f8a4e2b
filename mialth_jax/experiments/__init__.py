"""Orchestration: what one launch does (`launch`), the attack protocols over a run's models (`protocols`, `shadow`),
targets built from run folders (`targets`), the attack sets of the paper's tables and figures (`paper`)."""
from mialth_jax.experiments import adversarial, shadow, zoo  # noqa: F401  (register the adversarial, shadow, zoo protocols)
