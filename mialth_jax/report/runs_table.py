"""The "Runs" section: one row per run folder (data, model, training length, wall time)."""
from mialth_jax.report import sections


def runs_table(runs) -> list[str]:
  lines = ["| run | dataset | model | width | members | epochs | augment | models | training wall time |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    c = run.config
    epochs = c["train"]["num_epochs"] if c["train"]["num_epochs"] > 0 else f"{c['train']['num_steps']} steps"
    wall = sum(s["wall_seconds"] for s in run.models.values())
    lines.append(f"| {run.label} | {run.dataset} | {run.arch} | x{c['model']['width_multiplier']} | "
                 f"{len(run.splits.members)} | {epochs} | {c['data']['augment']} | {len(run.models)} | "
                 f"{wall / 60:.1f} min |")
  return lines


@sections.register("runs", order=30)
def section(runs, out: sections.Output) -> str:
  del out  # no figures
  return sections.text(["## Runs", "", *runs_table(runs), ""])
