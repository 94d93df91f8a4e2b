"""The report's opening section, "Did pruning change leakage?": each run's tickets against its dense model
(experiments.verdict's one rule), p-values Holm-adjusted over every comparison of the report."""
from mialth_jax.experiments import verdict
from mialth_jax.report import sections


@sections.register("verdict", order=10)
def section(runs, out: sections.Output) -> str:
  del out  # no figures
  judgements = verdict.adjust_all([verdict.judge(run.workdir) for run in runs])
  lines = ["## Did pruning change leakage?", ""]
  for run, judgement in zip(runs, judgements):
    lines += [f"**{run.dataset} ({run.label})**: {judgement.method}", "", *(f"- {l}" for l in judgement.lines), ""]
  return sections.text(lines)
