"""The report: its numbers come from the saved per-example scores, and the stored paper numbers are the paper's."""
import os
import re

import numpy as np
import pytest

from mialth_jax import config_lib
from mialth_jax.experiments import launch
from mialth_jax.report import collect, markdown
from mialth_jax.utils import io

PAPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "papers",
                     "mia-lottery-tickets.md")


def test_stored_paper_numbers_match_the_papers_table1():
  if not os.path.exists(PAPER):
    pytest.skip(f"the paper's text is not at {PAPER}")
  text = open(PAPER).read()
  rows = re.findall(r"^(CIFAR-10|CIFAR-100|ImageNet (\d+)k samples?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                    text, flags=re.M)
  assert len(rows) == 5
  stored = collect.paper_numbers()["table1"]["rows"]
  for (name, thousands, acc_dense, acc_ticket, prec_dense, prec_ticket), row in zip(rows, stored):
    assert row["dataset"] == {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}.get(name, "imagenet2012")
    assert row["attack_samples"] == (int(thousands) * 1000 if thousands else None)
    assert (row["accuracy"]["dense"], row["accuracy"]["ticket"]) == (float(acc_dense), float(acc_ticket))
    assert (row["precision"]["dense"], row["precision"]["ticket"]) == (float(prec_dense), float(prec_ticket))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("report") / "tiny_run")
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 300
  config.train.batch_size, config.train.num_epochs = 48, 4.0
  config.lottery.sparsities = (0.8,)
  config.attacks.models = {"sklearn_mlp": {"type": "sklearn_mlp"}, "loss": {"type": "threshold_loss"}}
  config.attacks.protocols = ("paper", "transfer")
  config.attacks.sizes = (200, -1)
  config.attacks.num_bootstrap = 100
  launch.run(config, workdir)
  return workdir


def _row(report: str, model: str, attack: str) -> str:
  return next(l for l in report.splitlines() if l.startswith("| digits") and f"| {model} | {attack} |" in l)


def test_report_has_every_section_and_plot(run, tmp_path):
  path = markdown.write([collect.load_run(run, num_bootstrap=100)], str(tmp_path))
  report = open(path).read()
  for heading in ("## Table 1", "## Figure 1", "## Figure 2", "## Figure 3", "## Figure 4", "## Beyond the paper"):
    assert heading in report
  images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
  assert len(images) >= 6
  for image in images:
    with open(tmp_path / image, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_numbers_are_recomputed_from_the_score_files(run, tmp_path):
  before = open(markdown.write([collect.load_run(run, num_bootstrap=100)], str(tmp_path / "a"))).read()
  npz = os.path.join(run, "attacks", "n600", "paper", "dense__dense", "sklearn_mlp.npz")
  scores = io.read_npz(npz)
  accuracy = np.mean(scores["predicted"] == scores["is_member"])
  assert f"| {accuracy:.3f} [" in _row(before, "dense", "sklearn_mlp")
  io.write_npz(npz, **{**scores, "predicted": ~scores["predicted"]})  # the opposite decisions: accuracy 1 - accuracy
  try:
    after = open(markdown.write([collect.load_run(run, num_bootstrap=100)], str(tmp_path / "b"))).read()
  finally:
    io.write_npz(npz, **scores)  # the module's run is shared with other tests
  assert f"| {1 - accuracy:.3f} [" in _row(after, "dense", "sklearn_mlp")
  assert _row(before, "ticket_s80", "sklearn_mlp") == _row(after, "ticket_s80", "sklearn_mlp")


def test_report_launcher_names_a_missing_run(tmp_path):
  with pytest.raises(collect.ReportError, match="no run there"):
    collect.load_run(str(tmp_path / "nothing"))
