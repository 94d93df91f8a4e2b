"""The run folder's layout: every path inside a run, and every model's identity, in one place.

    <workdir>/config.json            the config of the latest launch (written once its checks passed)
              splits.npz             member / non-member ids (see data.splits)
              w0/  rewind/           Orbax: params + batch_stats at step 0 / at lottery.rewind_step (late rewinding)
              models/<name>/         mask/ final/ checkpoints/ metrics.jsonl sparsity_report.json summary.json (last)
              lottery_summary.json
              confidences/<label>.npz                  each attacked model's logits, by example id
              attacks/n<size>/split.npz                the attack set (members / non-members, train / test parts)
              attacks/n<size>/<protocol>/<source>__<target>/<attack>.{json,npz}
              attacks/summary.json
              shadow_n<size>/                          a run folder of its own (shadow protocol)
              set_aside/<names>-<UTC time>/            what a --retrain launch moved aside, at the same relative paths

A model is identified by its `summary.json` (kind, sparsity, rule, pruned_from, ...), which is written last: a model
without one is not finished and is never read. Code chooses models by those fields (`select`), never by their names.
"""
import dataclasses
import glob
import os

from mialth_jax.utils import io


@dataclasses.dataclass(frozen=True)
class RunLayout:
  """Paths of one run folder; building one touches nothing on disk."""
  workdir: str

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  @property
  def label(self) -> str:
    """The run's name in results that mix runs (cross-run transfer, reports): its folder's name."""
    return os.path.basename(os.path.normpath(self.workdir))

  config = property(lambda self: self.path("config.json"))
  splits = property(lambda self: self.path("splits.npz"))
  lock = property(lambda self: self.path(".lock"))
  w0 = property(lambda self: self.path("w0"))
  rewind = property(lambda self: self.path("rewind"))
  lottery_summary = property(lambda self: self.path("lottery_summary.json"))
  attacks_summary = property(lambda self: self.path("attacks", "summary.json"))
  set_aside = property(lambda self: self.path("set_aside"))

  # One model's folder.
  def model_dir(self, name: str) -> str:
    return self.path("models", name)

  def mask(self, name: str) -> str:
    return self.path("models", name, "mask")

  def final(self, name: str) -> str:
    return self.path("models", name, "final")

  def kept(self, name: str, step: int | None = None) -> str:
    """Where a model's weights are kept along training (train.keep_every_epochs): the folder, or that of `step`."""
    return self.path("models", name, "kept", *(() if step is None else (str(step),)))

  def checkpoints(self, name: str) -> str:
    return self.path("models", name, "checkpoints")

  def metrics(self, name: str) -> str:
    return self.path("models", name, "metrics.jsonl")

  def sparsity_report(self, name: str) -> str:
    return self.path("models", name, "sparsity_report.json")

  def summary(self, name: str) -> str:
    return self.path("models", name, "summary.json")

  def is_finished(self, name: str) -> bool:
    return os.path.exists(self.summary(name))

  def finished_models(self) -> list[str]:
    """Names of the models whose training finished, dense first."""
    root = self.path("models")
    names = sorted(n for n in os.listdir(root) if self.is_finished(n)) if os.path.isdir(root) else []
    return sorted(names, key=lambda n: n != "dense")

  def summaries(self) -> dict[str, dict]:
    """{name: summary.json} of every finished model, dense first."""
    return {name: io.read_json(self.summary(name)) for name in self.finished_models()}

  # Attacks.
  def confidences(self, label: str) -> str:
    """Cached outputs of the model `label` ("dense", or "<other run>/dense" for a model of another run)."""
    return self.path("confidences", *label.split("/")) + ".npz"

  def attack_dir(self, size: int) -> str:
    return self.path("attacks", f"n{size}")

  def attack_split(self, size: int) -> str:
    return os.path.join(self.attack_dir(size), "split.npz")

  def shadow_split(self, size: int) -> str:
    return os.path.join(self.attack_dir(size), "shadow_split.npz")

  def shadow_run(self, size: int) -> "RunLayout":
    return RunLayout(self.path(f"shadow_n{size}"))

  def result(self, size: int, protocol: str, source: str, target: str, attack: str) -> tuple[str, str]:
    """(metrics .json, per-example .npz) of one attack result; the .json is written last."""
    pair = f"{source}__{target}".replace("/", ".")
    stem = os.path.join(self.attack_dir(size), protocol, pair, attack)
    return stem + ".json", stem + ".npz"

  # The reference-model zoo (zoo protocol: LiRA, RMIA): zoo.json, keep.npy, ids.npy, seeds.npy, w0/, rewind/ (late
  # rewinding), and per model kind <name>/ with mask/ (stacked), final/, checkpoints/, metrics.jsonl,
  # logits.npy [S, N, A, C], summary.json.
  def zoo(self, *parts: str) -> str:
    return self.path("shadows", *parts)

  def made_with(self, name: str) -> list[str]:
    """The existing files and folders that depend on the bits of `name` (a model, or w0) and hold nothing else: w0
    itself; or a model's folder, dense's late-rewind point (saved during its training), its cached outputs and every
    attack-result folder that names it (`<source>__<target>` pairs, a folder per model kind)."""
    if name == "w0":
      return [self.w0] if os.path.exists(self.w0) else []
    own = [self.model_dir(name), self.confidences(name), *([self.rewind] if name == "dense" else [])]
    return [p for p in own if os.path.exists(p)] + self._result_folders(name)

  def _result_folders(self, name: str) -> list[str]:
    found = []
    for folder, subfolders, _ in os.walk(self.path("attacks")):
      naming = [s for s in subfolders if name in s.split("__")]
      found += [os.path.join(folder, s) for s in sorted(naming)]
      subfolders[:] = [s for s in subfolders if s not in naming]
    return found

  def finished_results(self) -> list[tuple[str, str]]:
    """(json, npz) of every finished attack result (its .json exists), sorted."""
    found = sorted(glob.glob(self.path("attacks", "n*", "*", "*", "*.json")))
    return [(path, path[:-len(".json")] + ".npz") for path in found]


def select(summaries: dict[str, dict], **where) -> list[str]:
  """Names of the models whose summary fields equal `where`; `sparsity` matches to within 0.005 (the exact value is
  round(p * n) / n), sorted by sparsity."""
  def matches(summary: dict) -> bool:
    return all(abs(summary.get(k, -1.0) - v) < 5e-3 if k == "sparsity" else summary.get(k) == v
               for k, v in where.items())
  return sorted((n for n, s in summaries.items() if matches(s)), key=lambda n: (summaries[n]["sparsity"], n))
