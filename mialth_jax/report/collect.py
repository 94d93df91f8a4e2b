"""Gathers what a report shows from run folders, recomputing every attack metric from the per-example scores.

Only finished artefacts are read: models with summary.json, attack results whose JSON (written after the npz) exists.
"""
import dataclasses
import glob
import json
import os

from mialth_jax import run_dir
from mialth_jax.attacks import metrics as metrics_lib
from mialth_jax.utils import io

PAPER_NUMBERS = os.path.join(os.path.dirname(__file__), "paper_numbers.json")


@dataclasses.dataclass
class Run:
  workdir: str
  label: str
  config: dict
  models: dict            # name -> summary.json
  attacks: list           # one dict per result: metadata + metrics recomputed from the scores

  @property
  def dataset(self) -> str:
    """cifar10 / cifar100 / imagenet2012 / digits, whatever the source."""
    data = self.config["data"]
    if data["name"] == "tfds":
      return data["tfds_name"]
    if data["name"] == "npz":
      return os.path.basename(data["path"]).split("_")[0].split(".")[0]
    return data["name"]

  @property
  def arch(self) -> str:
    return self.config["model"]["name"]


def paper_numbers() -> dict:
  with open(PAPER_NUMBERS) as f:
    return json.load(f)


def attack_results(workdir: str, num_bootstrap: int, seed: int) -> list[dict]:
  """Every finished attack result of a run, its metrics recomputed from its .npz of per-example scores (whose path
  each result keeps as `scores_path`)."""
  results = []
  for json_path in sorted(glob.glob(os.path.join(workdir, "attacks", "n*", "*", "*", "*.json"))):
    meta = io.read_json(json_path)
    scores_path = json_path[:-len(".json")] + ".npz"
    scores = io.read_npz(scores_path)
    metrics = metrics_lib.attack_metrics(scores["scores"], scores["is_member"], scores["predicted"],
                                         scores["classes"], num_bootstrap=num_bootstrap, seed=seed)
    results.append({k: meta[k] for k in ("protocol", "source", "target", "attack", "size", "attack_config")}
                   | metrics | {"scores_path": scores_path})
  return results


def load_run(workdir: str, num_bootstrap: int = 1000) -> Run:
  """A run folder's config, finished models and attack results."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"--workdir={workdir}: no run there (config.json missing)")
  config = io.read_json(config_path)
  models = {name: io.read_json(os.path.join(run_dir.model_dir(workdir, name), "summary.json"))
            for name in run_dir.finished_models(workdir)}
  return Run(workdir, os.path.basename(os.path.normpath(workdir)), config, models,
             attack_results(workdir, num_bootstrap, config["seed"]))


def select(results: list[dict], **where) -> list[dict]:
  """The results whose fields equal every `where` value."""
  return [r for r in results if all(r.get(k) == v for k, v in where.items())]
