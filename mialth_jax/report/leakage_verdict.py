"""The report's opening section, "Did pruning change leakage?": each run's tickets against its dense model
(experiments.verdict), with the same resamples as at the run's end."""
from mialth_jax.experiments import verdict
from mialth_jax.report import sections


@sections.register("verdict", order=10)
def section(runs, out: sections.Output) -> str:
  del out  # no figures
  lines = ["## Did pruning change leakage?", ""]
  for run in runs:
    judgement = verdict.judge(run.workdir, run.config["attacks"]["num_bootstrap"], run.config["seed"])
    lines += [f"**{run.dataset} ({run.label})**: {judgement.method}", "", *(f"- {l}" for l in judgement.lines), ""]
  return sections.text(lines)
