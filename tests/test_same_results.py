"""Refactorings change no result: a run made with the code of an earlier commit and one made with this checkout are
identical, artefact by artefact (`launch.compare_runs`: checkpoints bit for bit, every npz array, every JSON value but
wall-clock times).

REFERENCE (f403be2) is the last commit before the package refactoring of issue 25 (plugins, import cycles removed).
Needs the git history (a clone, not an export); skipped with the reason shown otherwise. End to end (two launches per
config, the reference's compilations included): the slow tier (`pytest -m slow`).
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = "f403be2c451bdb1a8e05671848e90098a9b254f2"


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory):
  """The REFERENCE commit's files in a temporary folder."""
  found = subprocess.run(["git", "cat-file", "-e", f"{REFERENCE}^{{commit}}"], cwd=REPO, capture_output=True)
  if found.returncode:
    pytest.skip(f"commit {REFERENCE[:7]} is not in this checkout's git history (a shallow clone or an export)")
  tree = tmp_path_factory.mktemp("reference")
  archive = subprocess.run(["git", "archive", REFERENCE], cwd=REPO, capture_output=True, check=True).stdout
  subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
  return str(tree)


def _launch(code: str, config: str, workdir: str, env: dict) -> None:
  result = subprocess.run([sys.executable, "-m", "launch.main", f"--config={config}", f"--workdir={workdir}"],
                          cwd=code, env={**env, "PYTHONPATH": code}, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("config,needs_cifar", [("configs/default.py:smoke", False),
                                                ("configs/cifar10_resnet18.py:smoke", True)])
def test_a_run_is_bit_identical_to_one_made_with_the_reference_commit(reference_tree, config, needs_cifar, request,
                                                                      tmp_path):
  env = dict(os.environ)
  if needs_cifar:  # paper, transfer and shadow protocols on the real CIFAR-10 subset
    env["MIALTH_DATA_DIR"] = request.getfixturevalue("cifar_dir")
  before, after = str(tmp_path / "before"), str(tmp_path / "after")
  _launch(reference_tree, config, before, env)
  _launch(REPO, config, after, env)
  result = subprocess.run([sys.executable, "-m", "launch.compare_runs", f"--a={before}", f"--b={after}",
                           "--allow_added_fields"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and "identical" in result.stdout, result.stdout[-3000:]
