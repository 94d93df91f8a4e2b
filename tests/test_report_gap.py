"""The leakage-vs-gap report section: gaps, the strongest attack per model, and the run nearest to the paper."""
import os
import tempfile

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from mialth_jax.data import splits as splits_lib
from mialth_jax.experiments import verdict
from mialth_jax.report import collect, gap, sections
from mialth_jax.utils import io

_SCORES = tempfile.mkdtemp(prefix="gap_scores_")


def _scores_path(auc: float) -> str:
  """Per-example scores whose members sit shift = sqrt(2) Phi^-1(auc) above the non-members (AUC about `auc` on both
  halves of the examples, so the verdict's selection half ranks the attacks as `auc` does)."""
  path = os.path.join(_SCORES, f"{auc}.npz")
  member = np.arange(2000) % 2 == 0
  noise = np.random.default_rng(int(auc * 1000)).normal(size=2000)
  io.write_npz(path, ids=np.arange(2000), is_member=member,
               scores=noise + np.sqrt(2) * stats.norm.ppf(auc) * member)
  return path


def _result(target, attack, accuracy, precision, auc, protocol="paper", source=None):
  path = _scores_path(auc)
  return {"protocol": protocol, "source": source or target, "target": target, "attack": attack, "size": 100,
          "accuracy": accuracy, "accuracy_ci": [accuracy - 0.02, accuracy + 0.02], "precision": precision,
          "roc_auc": auc, "scores_path": path, "selection_roc_auc": verdict.selection_auc(io.read_npz(path))}


def _run(label, epochs, train_acc, mlp_accuracy, mlp_precision):
  models = {"dense": {"kind": "dense", "sparsity": 0.0, "train_accuracy": train_acc, "test_accuracy": 0.4},
            "ticket_s80": {"kind": "ticket", "sparsity": 0.8, "train_accuracy": train_acc - 0.1,
                           "test_accuracy": 0.42}}
  attacks = [_result("dense", "sklearn_mlp", mlp_accuracy, mlp_precision, 0.6),
             _result("dense", "loss", 0.6, 0.6, 0.65), _result("dense", "lira", 0.7, 0.7, 0.8, "zoo"),
             _result("ticket_s80", "sklearn_mlp", 0.55, 0.6, 0.57), _result("ticket_s80", "loss", 0.58, 0.6, 0.62)]
  config = {"data": {"name": "npz", "path": "/data/cifar100_small.npz", "augment": "none"},
            "model": {"name": "resnet18"}, "train": {"num_epochs": epochs}}
  empty = np.zeros(0, np.int64)
  return collect.Run(f"/runs/{label}", label, config, models, attacks, {}, splits_lib.Splits(empty, empty, empty))


def test_points_hold_each_models_gap_and_the_verdicts_attack():
  points = gap.points([_run("e20", 20, 0.6, 0.52, 0.6)])
  assert [(p["name"], round(p["gap"], 6)) for p in points] == [("dense", 0.2), ("ticket_s80", 0.08)]
  # the verdict's rule: the strongest on dense (lira); the ticket has no lira result: the next strongest on dense
  assert points[0]["strongest"]["attack"] == "lira" and points[1]["strongest"]["attack"] == "loss"
  # chosen on the selection half, so measured on the judged half only
  arrays = io.read_npz(_scores_path(0.8))
  judged = verdict.judged_half(arrays["ids"])
  assert points[0]["strongest"]["roc_auc"] == pytest.approx(
      metrics.roc_auc_score(arrays["is_member"][judged], arrays["scores"][judged]))


def test_the_section_names_the_run_nearest_to_the_papers_cifar100_numbers(tmp_path):
  runs = [_run("e20", 20, 0.6, 0.52, 0.6), _run("e160", 160, 1.0, 0.75, 0.95)]  # paper: 0.744 / 0.97
  lines = gap.section(runs, sections.Output(str(tmp_path), str(tmp_path))).splitlines()
  assert (tmp_path / "leakage_vs_gap.png").stat().st_size > 0
  nearest = next(line for line in lines if line.startswith("- **cifar100**"))
  assert "is e160 (train accuracy 1.000, gap 0.600)" in nearest
  assert "0.750 [0.730, 0.770]" in nearest and "within its interval" in nearest and "memorised its members" in nearest
  assert sum(line.startswith("| cifar100 |") for line in lines) == 4


def test_one_run_per_dataset_gives_no_section(tmp_path):
  assert gap.section([_run("e20", 20, 0.6, 0.52, 0.6)], sections.Output(str(tmp_path), str(tmp_path))) == ""


def test_the_gap_sweep_config_is_the_paper_protocol_on_dense_and_three_tickets():
  from configs.experiments import gap_sweep  # pylint: disable=import-outside-toplevel
  config = gap_sweep.get_config("cifar100_resnet18:subset")
  assert config.attacks.protocols == ("paper",) and tuple(config.lottery.sparsities) == (0.5, 0.8, 0.9)
  assert config.model.width_multiplier == 0.125 and "sklearn_mlp" in config.attacks.models


def test_the_paper_regime_sentence_follows_our_numbers():
  row = collect.paper_numbers()["table1"]["rows"]
  cifar10, cifar100 = (next(r for r in row if r["dataset"] == d) for d in ("cifar10", "cifar100"))
  chance, above = ({"accuracy": a, "accuracy_ci": [a - 0.01, a + 0.01], "precision": 0.9} for a in (0.505, 0.84))
  assert "ours is at chance too" in gap.paper_regime(cifar10, chance, 0.7)
  assert "ours is above chance by 0.340" in gap.paper_regime(cifar10, above, 1.0)
  memorised = gap.paper_regime(cifar100, above, 1.0)
  assert "(it memorised its members too)" in memorised and "stand out more than the paper's" in memorised
  weak = gap.paper_regime(cifar100, chance, 0.45)
  assert "memorised" not in weak and "stand out less than the paper's" in weak
