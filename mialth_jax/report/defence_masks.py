"""The defences section's table of ADMM's masks against one-shot magnitude pruning of dense at the same sparsity and
rule: how many kept weights the ADMM W-phase moved (models/<name>/mask_change.json, defences.admm.mask_change). None
moved means "ADMM pruning" kept dense's own magnitude mask and differs from prune-and-fine-tune only in the weights
its fine-tuning starts from."""
import os

from mialth_jax.defences import admm
from mialth_jax.layout import RunLayout
from mialth_jax.utils import io


def changes(run) -> dict[str, dict]:
  """{model: its mask_change.json} of the run's models that recorded one, by sparsity then name."""
  layout = RunLayout(run.workdir)
  found = {name: io.read_json(layout.path("models", name, admm.MASK_CHANGE)) for name in run.models
           if os.path.exists(layout.path("models", name, admm.MASK_CHANGE))}
  return dict(sorted(found.items(), key=lambda item: (item[1]["sparsity"], item[0])))


def table(run) -> list[str]:
  """One row per ADMM model: its kept weights, those dense's magnitude mask prunes, and the layers they lie in."""
  found = changes(run)
  if not found:
    return []
  lines = ["ADMM's mask against one-shot magnitude pruning of dense (same sparsity and rule): the kept weights that "
           "the magnitude mask prunes (per layer, layerwise_magnitude keeps as many in both: as many of the magnitude "
           "mask's kept weights are pruned by ADMM's).", "",
           "| model | sparsity | kept weights | of them not kept by dense's magnitude mask | layers that differ | "
           "most changed layer |", "| --- | --- | --- | --- | --- | --- |"]
  for name, c in found.items():
    layers = c["layers"]
    top, most = max(layers.items(), key=lambda item: (item[1]["differ"] / max(item[1]["kept"], 1), item[0]))
    most_changed = f"{top} ({most['differ'] / most['kept']:.1%})" if most["differ"] else "-"
    lines.append(f"| {name} | {c['sparsity']:.0%} | {c['kept']:,} | {c['differ']:,} ({c['differ'] / c['kept']:.1%}) | "
                 f"{sum(v['differ'] > 0 for v in layers.values())} of {len(layers)} | {most_changed} |")
  return lines + [""]
