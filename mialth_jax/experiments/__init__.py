"""Orchestration: what one launch does (`launch`), the attack protocols over a run's models (`protocols`; the shadow,
zoo and adversarial protocols are features of their own modules, registered by `plugins.load()`), targets built from
run folders (`targets`), the attack sets of the paper's tables and figures (`paper`)."""
