"""The report: its numbers come from the saved per-example scores, and the stored paper numbers are the paper's."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from mialth_jax import config_lib, plugins
from mialth_jax.experiments import launch, verdict
from mialth_jax.report import collect, markdown, plots, sections, table1
from mialth_jax.utils import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "..", "shared", "papers", "mia-lottery-tickets.md")


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
  papers = re.findall(r"(\S*shared/papers/[\w.-]+\.md)", report)
  assert papers and all(os.path.normpath(os.path.join(tmp_path, p)) == os.path.normpath(os.path.join(
      markdown.PAPERS, os.path.basename(p))) for p in papers), papers  # links resolve from the report's folder


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


def _section(report: str, heading: str) -> str:
  """The text under `heading` up to the next heading of any level."""
  return report.split(heading + "\n", 1)[1].split("\n#", 1)[0]


def test_the_verdict_opens_the_report(run, tmp_path):
  report = open(markdown.write([collect.load_run(run, num_bootstrap=100)], str(tmp_path), preamble="# Mine")).read()
  headings = [l for l in report.splitlines() if l.startswith("#")]
  assert headings[:3] == ["# Mine", "## Did pruning change leakage?", "## Runs"]
  judgement = verdict.judge(run).adjusted()
  assert [v.ticket for v in judgement.verdicts] == ["ticket_s80"] and judgement.verdicts[0].size == 600
  assert f"- {judgement.verdicts[0].line()}" in _section(report, "## Did pruning change leakage?")


def test_a_section_registered_here_appears_in_its_order_and_an_empty_one_is_skipped(run, tmp_path):
  plugins.load()
  called = []

  def mine(runs, out):
    return sections.text(["## Mine", "", f"{len(runs)} run(s), figures in {out.link(out.plot('x.png'))}", ""])

  def empty(runs, out):
    called.append([r.label for r in runs])
    return ""

  sections.register("test_mine", order=35)(mine)  # between Runs (30) and Table 1 (40)
  sections.register("test_empty", order=36, per_run=True)(empty)
  try:
    report = open(markdown.write([collect.load_run(run, num_bootstrap=50)], str(tmp_path))).read()
  finally:
    sections.SECTIONS.pop("test_mine")
    sections.SECTIONS.pop("test_empty")
  headings = [l for l in report.splitlines() if l.startswith("## ")]
  assert headings[headings.index("## Runs") + 1] == "## Mine"
  assert headings[headings.index("## Mine") + 1].startswith("## Table 1")
  assert "1 run(s), figures in plots/x.png\n\n## Table 1" in report  # the empty section left no trace
  assert called == [["tiny_run"]] and "\n\n\n" not in report


def test_runs_table_counts_the_recorded_members(run, tmp_path):
  loaded = collect.load_run(run, num_bootstrap=50)
  loaded.config["data"]["num_train"] = -1  # the config's "all of them": the table shows how many that was
  report = open(markdown.write([loaded], str(tmp_path))).read()
  row = next(l for l in report.splitlines() if l.startswith(f"| {loaded.label} | digits |"))
  assert row.split(" | ")[4] == "300"


def test_no_heading_is_left_empty(run, tmp_path):
  loaded = collect.load_run(run, num_bootstrap=50)
  loaded.attacks = [r for r in loaded.attacks if r["protocol"] != "transfer"]
  report = open(markdown.write([loaded], str(tmp_path))).read()
  assert _section(report, "### Where we differ and why").strip() == (
      "- **digits (tiny_run)**: nothing to compare: the paper gives no numbers for digits (only cifar10, cifar100, "
      "imagenet2012).")
  assert _section(report, "## Figure 4: do attacks transfer between models?").strip().startswith(
      f"No transfer results (`sklearn_mlp`, `mlp`, `loss`) in {run}: run configs/experiments/fig4_transfer.py")


def test_a_transfer_only_run_shows_its_matrix_with_the_recomputed_numbers(run, tmp_path):
  """fig4_transfer.py on a new folder runs only the transfer protocol: no paper-protocol results, still a Figure 4."""
  loaded = collect.load_run(run, num_bootstrap=50)
  loaded.attacks = [r for r in loaded.attacks if r["protocol"] == "transfer"]
  assert collect.main_size(loaded) is None
  figure4 = _section(open(markdown.write([loaded], str(tmp_path))).read(),
                     "## Figure 4: do attacks transfer between models?")
  image = re.search(r"!\[Figure 4, tiny_run, sklearn_mlp\]\(([^)]+)\)", figure4).group(1)
  assert open(tmp_path / image, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  heading = "`sklearn_mlp`, attack set n600, 300 attack-test examples, attack accuracy:\n\n"
  sklearn_table = figure4.split(heading, 1)[1].split("\n\n", 1)[0]
  header, _, *rows = sklearn_table.splitlines()
  assert len(rows) == 2
  assert header == "| trained on \\ attacked | dense | ticket_s80 |"
  for source, row in zip(("dense", "ticket_s80"), rows):
    for target, cell in zip(("dense", "ticket_s80"), row.split(" | ")[1:]):
      [result] = collect.select(loaded.attacks, attack="sklearn_mlp", source=source, target=target, size=600)
      scores = io.read_npz(os.path.join(run, "attacks", "n600", "transfer", f"{source}__{target}", "sklearn_mlp.npz"))
      accuracy = np.mean(scores["predicted"] == scores["is_member"])
      assert result["accuracy"] == pytest.approx(accuracy)
      assert cell.strip(" |*") == f"{accuracy:.3f}" and cell.startswith("**") == (source == target)


def test_wilson_interval_matches_its_closed_form():
  low, high = plots.wilson([0, 10, 5], [10, 10, 10])
  z2 = 1.96 ** 2
  assert low[0] == 0.0 and high[0] == pytest.approx(z2 / (10 + z2))   # 0 of n: [0, z^2 / (n + z^2)]
  assert low[1] == pytest.approx(10 / (10 + z2)) and high[1] == pytest.approx(1.0)
  assert (low[2] + high[2]) / 2 == pytest.approx(0.5) and high[2] - low[2] == pytest.approx(
      2 * 1.96 * np.sqrt(0.25 / 10 + z2 / 400) / (1 + z2 / 10))


def test_per_class_bars_of_a_class_attacked_without_error_are_drawn():
  """A class whose every example the attack gets right (p = 1, met in memorising runs): the Wilson interval's upper
  end rounded an ulp below 1 for 6 of 6, and matplotlib refused the negative error bar: the interval holds p."""
  err = plots._wilson_err(np.array([6, 0, 3]), np.array([6, 6, 6]))
  assert (err >= 0).all() and err[1, 0] == 0.0 and err[0, 0] > 0.3


def _report_launch(*flags) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.report", *flags], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_report_launcher_refuses_a_run_without_attack_results(run, tmp_path):
  empty = tmp_path / "no_attacks"
  empty.mkdir()
  for name in ("config.json", "splits.npz"):
    shutil.copy(os.path.join(run, name), empty / name)
  done = _report_launch(f"--workdir={empty}")
  errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
  assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
  assert errors[0].startswith(f"error: --workdir={empty}: no attack results yet") and "launch.main" in errors[0]
  assert not os.path.exists(empty / "report.md")


def test_report_launcher_refuses_out_that_is_a_file(run, tmp_path):
  out = tmp_path / "report.md"
  out.write_text("mine")
  done = _report_launch(f"--workdir={run}", f"--out={out}")
  errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
  assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
  assert errors == [f"error: --out={out} is a file; expected a folder for report.md and plots/"]
  assert out.read_text() == "mine"


def test_report_launcher_writes_only_the_named_sections_and_refuses_an_unknown_one(run, tmp_path):
  done = _report_launch(f"--workdir={run}", f"--out={tmp_path}", "--sections=runs,verdict")
  assert done.returncode == 0, done.stderr[-2000:]
  text = (tmp_path / "report.md").read_text()
  headings = [line for line in text.splitlines() if line.startswith("## ")]
  assert headings == ["## Did pruning change leakage?", "## Runs"]  # in the sections' order, not the flag's
  done = _report_launch(f"--workdir={run}", f"--out={tmp_path / 'other'}", "--sections=runs,nope")
  errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
  assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
  assert errors[0].startswith("error: --sections: unknown report section 'nope'; known: verdict")
  assert not os.path.exists(tmp_path / "other")


def test_table1_leaves_out_tpr_at_1_percent_fpr_below_1000_non_members(run, tmp_path):
  """The tiny run's attack-test holds 150 non-members: 1.5 expected false positives at 1 % FPR, too few to measure."""
  report = open(markdown.write([collect.load_run(run, num_bootstrap=50)], str(tmp_path))).read()
  assert _row(report, "dense", "sklearn_mlp").split(" | ")[10] == "- (needs >= 1,000 non-members, has 150)"


def test_the_strongest_attack_quoted_beside_table1_is_measured_on_the_judged_half(run):
  loaded = collect.load_run(run, num_bootstrap=50)
  choice = collect.leakage_choice(loaded)
  protocol, attack = choice.attack(choice.baseline)
  [chosen] = collect.select(loaded.attacks, protocol=protocol, source="dense", target="dense", attack=attack,
                            size=choice.size)
  arrays = io.read_npz(chosen["scores_path"])
  judged = verdict.judged_half(arrays["ids"])
  auc = sk_metrics.roc_auc_score(arrays["is_member"][judged], arrays["scores"][judged])
  accuracy = np.mean(arrays["predicted"][judged] == arrays["is_member"][judged])
  assert table1.strongest_sentence(loaded).endswith(
      f"is `{attack}`: on the other (judged) half accuracy {accuracy:.3f}, ROC AUC {auc:.3f}.")


def test_each_protocols_heading_counts_its_own_attack_test_examples(run, tmp_path):
  """A protocol that judges on fewer examples at the same attack set (the adversarial protocol's 500 of 5,000) leaves
  the other protocols' headings their own count."""
  loaded = collect.load_run(run, num_bootstrap=50)
  paper = collect.select(loaded.attacks, protocol="paper", size=600)
  loaded.attacks = loaded.attacks + [{**r, "protocol": "adversarial", "num_members": 50, "num_nonmembers": 50}
                                     for r in paper]
  report = open(markdown.write([loaded], str(tmp_path))).read()
  assert "every attack, paper protocol (attack learnt on the target's own outputs) (attack set n600, 300 attack-test " \
         "examples)" in report
  assert "(attack set n600, 100 attack-test examples)" in report
