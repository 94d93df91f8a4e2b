"""Gathers what a report shows from run folders, recomputing every attack metric from the per-example scores.

Only finished artefacts are read: models with summary.json, attack results whose JSON (written after the npz) exists.
"""
import dataclasses
import json
import os

from mialth_jax import errors, layout as layout_lib
from mialth_jax.attacks import metrics as metrics_lib
from mialth_jax.data import splits as splits_lib
from mialth_jax.experiments import verdict
from mialth_jax.lottery import recipes
from mialth_jax.utils import io

PAPER_NUMBERS = os.path.join(os.path.dirname(__file__), "paper_numbers.json")


class ReportError(errors.UserError, ValueError):
  """A run folder or report setting that a report cannot be made from."""


@dataclasses.dataclass
class Run:
  workdir: str
  label: str
  config: dict
  models: dict            # name -> summary.json
  attacks: list           # one dict per result: metadata + metrics recomputed from the scores
  external: dict          # "<run>/<name>" -> summary.json of the models of attacks.transfer_runs
  splits: splits_lib.Splits  # the recorded members (their real count, whatever data.num_train says) and test ids

  def summary(self, label: str) -> dict | None:
    """The summary.json of a model named as in attack results (own models, or "<run>/<name>" of transfer runs)."""
    return self.models.get(label) or self.external.get(label)

  @property
  def table1_ticket(self) -> str | None:
    """The ticket that Table 1 compares with dense: the paper does not give its sparsity; its Fig. 3 fixes 80 %,
    so the one-shot ticket at 80 % sparsity (else the ticket nearest to it)."""
    exact = layout_lib.select(self.models, kind="ticket", sparsity=TABLE1_SPARSITY)
    tickets = [n for n, s in self.models.items() if s["kind"] in recipes.ticket_kinds()]
    nearest = sorted(tickets, key=lambda n: (abs(self.models[n]["sparsity"] - TABLE1_SPARSITY), n))
    return (exact or nearest or [None])[0]

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


TABLE1_SPARSITY = paper_numbers()["text"]["fig3_sparsity"]["sparsity"]  # the paper's Fig. 3 sparsity (see Run)


def attack_results(workdir: str, num_bootstrap: int, seed: int) -> list[dict]:
  """Every finished attack result of a run, its metrics recomputed from its .npz of per-example scores (whose path
  each result keeps as `scores_path`), and its AUC on the verdict's selection half (`selection_roc_auc`)."""
  results = []
  for json_path, scores_path in layout_lib.RunLayout(workdir).finished_results():
    meta = io.read_json(json_path)
    scores = io.read_npz(scores_path)
    metrics = metrics_lib.attack_metrics(scores["scores"], scores["is_member"], scores.get("predicted"),
                                         scores["classes"], num_bootstrap=num_bootstrap, seed=seed)
    results.append({k: meta[k] for k in ("protocol", "source", "target", "attack", "size", "attack_config")}
                   | metrics | {"scores_path": scores_path, "selection_roc_auc": verdict.selection_auc(scores)})
  return results


def load_run(workdir: str, num_bootstrap: int = 1000) -> Run:
  """A run folder's config, finished models and attack results."""
  layout = layout_lib.RunLayout(workdir)
  if not os.path.exists(layout.config):
    raise ReportError(f"--workdir={workdir}: no run there (config.json missing)")
  config = io.read_json(layout.config)
  if not layout.finished_results():
    raise ReportError(f"--workdir={workdir}: no attack results yet (attacks/n*/...json); finish the run with "
                      f"python -m launch.main --config=<its config> --workdir={workdir} and at least one protocol in "
                      "attacks.protocols")
  if not os.path.exists(layout.splits):
    raise ReportError(f"{layout.splits}: missing; the run folder is damaged (its members are unknown)")
  external = {f"{other.label}/{name}": summary
              for other in map(layout_lib.RunLayout, config["attacks"].get("transfer_runs", ()))
              for name, summary in other.summaries().items()}
  return Run(workdir, layout.label, config, layout.summaries(), attack_results(workdir, num_bootstrap, config["seed"]),
             external, splits_lib.load(layout.splits))


PAPER_ATTACK = "sklearn_mlp"  # the paper's attack: scikit-learn's MLPClassifier on the softmax vector


def paper_result(run: Run, name: str, attack: str, size: int) -> dict | None:
  """`attack`'s result on model `name`, learnt on its own outputs (paper protocol) at attack-set `size`."""
  found = select(run.attacks, protocol="paper", source=name, target=name, attack=attack, size=size)
  return found[0] if found else None


def main_size(run: Run) -> int | None:
  """The attack size the tables use: the largest one with paper-protocol results."""
  sizes = [r["size"] for r in run.attacks if r["protocol"] == "paper"]
  return max(sizes) if sizes else None


def leakage_choice(run: Run) -> verdict.Choice | str:
  """The attack and baseline that answer "did this model change leakage?" (experiments.verdict's rule), for every
  section that compares a model with a baseline, or why there are none."""
  return verdict.choose(run.models, run.attacks, auc_of=lambda r: r["selection_roc_auc"])


def select(results: list[dict], **where) -> list[dict]:
  """The results whose fields equal every `where` value."""
  return [r for r in results if all(r.get(k) == v for k, v in where.items())]
