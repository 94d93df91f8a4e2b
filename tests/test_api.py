"""The Python API (mialth_jax.api) on a real run: the README's example as a user pastes it, models against the run's
own cached outputs, masks against their summaries, attacks against the registry, and a run folder left untouched.

The run is made with one device, as a user's laptop makes it, and read here with the suite's 8 simulated devices.
"""
import contextlib
import hashlib
import io as stdio
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import mialth_jax
from mialth_jax import errors
from mialth_jax.attacks import registry
from mialth_jax.attacks.attack_sets import AttackSplit
from mialth_jax.attacks.inputs import AttackInputs
from mialth_jax.layout import RunLayout
from mialth_jax.utils import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(smoke_run):
  """A smoke run (dense + ticket_s80, attacked), trained on one CPU device: the session's shared run (conftest.py)."""
  return smoke_run


def _readme_example() -> str:
  readme = open(os.path.join(REPO, "README.md")).read()
  section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
  blocks = re.findall(r"```python\n(.*?)```", section, re.S)
  assert len(blocks) == 1
  return blocks[0]


def _fingerprint(folder: str) -> dict:
  """{relative path: sha256 of the file, or 'dir'} of everything under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs:
      out[os.path.relpath(os.path.join(root, name), folder)] = "dir"
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_the_readme_example_runs_and_computes_what_it_says(workdir):
  assert jax.device_count() == 8 and io.read_json(RunLayout(workdir).summary("dense"))["devices"] == 1
  code = _readme_example()
  assert code.count('"runs/default"') == 1
  namespace, printed = {}, stdio.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(compile(code.replace('"runs/default"', repr(workdir)), "README.md", "exec"), namespace)
  summaries = RunLayout(workdir).summaries()
  # Accuracy from raw uint8 images equals the one training measured on normalised ones (within one argmax flip).
  num_test = len(namespace["run"].test)
  assert abs(namespace["test_accuracy"] - summaries["dense"]["test_accuracy"]) <= 1 / num_test + 1e-12
  assert f"dense test accuracy {namespace['test_accuracy']:.3f}" in printed.getvalue()
  assert namespace["ticket_sparsity"] == pytest.approx(summaries["ticket_s80"]["sparsity"], abs=1e-12)
  assert namespace["pruned_are_zero"] is True
  metrics, fit = namespace["metrics"], namespace["fit"]
  assert metrics["num_members"] + metrics["num_nonmembers"] == int((~fit).sum())
  for name in ("accuracy", "precision", "roc_auc", "advantage"):
    low, high = metrics[f"{name}_ci"]
    assert 0 <= low <= high <= 1 and 0 <= metrics[name] <= 1
  assert 0 <= metrics["tpr_at_fpr_0.001"] <= metrics["tpr_at_fpr_0.01"] <= 1
  assert "'roc_auc'" in printed.getvalue()


@pytest.mark.parametrize("name", ["dense", "ticket_s80"])
def test_model_logits_equal_the_runs_cached_confidences(workdir, name):
  run = mialth_jax.load_run(workdir)
  cached = io.read_npz(RunLayout(workdir).confidences(name))
  assert len(cached["ids"]) % jax.device_count()  # the last batch needs padding
  logits = run.model(name)(run.images(cached["ids"]))
  np.testing.assert_allclose(logits, cached["logits"], atol=1e-5, rtol=0)
  np.testing.assert_array_equal(run.labels(cached["ids"]), cached["labels"])
  assert run.model(name)(run.images(cached["ids"][:0])).shape == (0, 10)


def test_the_ticket_mask_marks_exactly_its_zero_weights(workdir):
  run = mialth_jax.load_run(workdir)
  ticket, dense = run.model("ticket_s80"), run.model("dense")
  assert jax.tree.structure(ticket.mask) == jax.tree.structure(ticket.params)
  pruned = prunable = 0
  for param, keep in zip(jax.tree.leaves(ticket.params), jax.tree.leaves(ticket.mask)):
    param = np.asarray(param)
    assert keep.dtype == bool and not param[~np.broadcast_to(keep, param.shape)].any()  # pruned: exact zeros
    if keep.ndim:  # a prunable leaf: its kept weights were trained, none is zero
      assert np.count_nonzero(param[keep]) == keep.sum()
      pruned, prunable = pruned + int((~keep).sum()), prunable + keep.size
  report = io.read_json(RunLayout(workdir).sparsity_report("ticket_s80"))
  assert (pruned, prunable) == (report["pruned"], report["total"]) and pruned == round(0.8 * prunable)
  assert pruned / prunable == pytest.approx(ticket.summary["sparsity"], abs=1e-12)
  assert all(np.all(m) for m in jax.tree.leaves(dense.mask)) and dense.summary["sparsity"] == 0.0
  assert run.models["ticket_s80"] == ticket.summary and ticket.summary["kind"] == "ticket"


def test_load_run_reads_the_split_and_results_and_writes_nothing(workdir):
  before = _fingerprint(workdir)
  run = mialth_jax.load_run(workdir)
  model = run.model("ticket_s80")
  model(run.images(run.nonmembers[:37]))
  assert model.variables["batch_stats"] and model.mask
  layout = RunLayout(workdir)
  assert _fingerprint(workdir) == before
  assert run.attacks == io.read_json(layout.attacks_summary) and len(run.attacks) == 6
  assert list(run.models) == ["dense", "ticket_s80"] and run.config.model.width_multiplier == 0.125
  n_train = len(run.members) + len(run.unused_train)
  assert len(run.members) == n_train == 898 and len(run.unused_train) == 0 and len(run.test) == 899
  np.testing.assert_array_equal(run.test, np.arange(n_train, n_train + 899))
  np.testing.assert_array_equal(np.sort(run.nonmembers), run.test)
  assert run.images(run.test[:3]).dtype == np.uint8 and run.images(run.test[:3]).shape == (3, 8, 8, 1)


def test_attack_logits_reproduces_the_runs_own_attack_result(workdir):
  """The run's paper-protocol loss attack on dense, redone from its recorded split and cached logits."""
  run, layout = mialth_jax.load_run(workdir), RunLayout(workdir)
  size = run.attacks[0]["size"]
  split = AttackSplit.read(layout.attack_split(size))
  cached = io.read_npz(layout.confidences("dense"))
  parts = {}
  for part in ("train", "test"):
    members, nonmembers = getattr(split, f"{part}_members"), getattr(split, f"{part}_nonmembers")
    ids = np.r_[members, nonmembers]
    logits = cached["logits"][np.searchsorted(cached["ids"], ids)]
    parts[part] = (logits, run.labels(ids), np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)])
  metrics = mialth_jax.attack_logits(*parts["train"], *parts["test"], attack="threshold_loss",
                                     num_bootstrap=run.config.attacks.num_bootstrap, bootstrap_seed=run.config.seed)
  recorded = next(r for r in run.attacks if (r["protocol"], r["target"], r["source"], r["attack"]) == (
      "paper", "dense", "dense", "loss"))
  assert metrics == {k: v for k, v in recorded.items()
                     if k not in ("protocol", "source", "target", "attack", "size", "attack_config")}


@pytest.mark.parametrize("attack,options", [("threshold_entropy", {"per_class": True}),
                                            ("sklearn_logreg", {"features": "sorted_topk", "top_k": 3})])
def test_attack_logits_equals_run_attack(attack, options):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(120, 4)) * np.r_[np.full(60, 3.0), np.ones(60)][:, None]
  labels, is_member = rng.integers(0, 4, 120), np.r_[np.ones(60, bool), np.zeros(60, bool)]
  fit = rng.permutation(120) < 60
  got = mialth_jax.attack_logits(logits[fit], labels[fit], is_member[fit], logits[~fit], labels[~fit],
                                 is_member[~fit], attack, num_bootstrap=50, bootstrap_seed=3, **options)
  want, _ = registry.run_attack({"type": attack, **options}, AttackInputs.from_logits(logits[fit], labels[fit]),
                                is_member[fit], AttackInputs.from_logits(logits[~fit], labels[~fit]),
                                is_member[~fit], num_bootstrap=50, seed=3)
  assert got == want and got["roc_auc"] > 0.6


def _bad_calls(run):
  logits, labels, member = np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2]), np.array([1, 1, 1, 0, 0, 0])
  return {
      "unknown attack type 'threshold_los'": lambda: mialth_jax.attack_logits(
          logits, labels, member, logits, labels, member, attack="threshold_los"),
      "train_is_member: expected 6 bools": lambda: mialth_jax.attack_logits(
          logits, labels, member[:5], logits, labels, member),
      "test_is_member: needs members and non-members, got 6 members": lambda: mialth_jax.attack_logits(
          logits, labels, member, logits, labels, np.ones(6)),
      "test_logits / test_labels: labels: values must lie in [0, 3)": lambda: mialth_jax.attack_logits(
          logits, labels, member, logits, labels + 1, member),
      "attack 'threshold_loss': unknown option(s) hidden": lambda: mialth_jax.attack_logits(
          logits, labels, member, logits, labels, member, hidden=(4,)),
      "no finished model there; finished: dense, ticket_s80": lambda: run.model("ticket_s90"),
      "images: expected uint8 images of shape [N, 8, 8, 1]": lambda: run.model("dense")(
          run.images([0, 1]).astype(np.float32) / 255),
      "ids: example ids lie in [0, 1797), got [-1, 3]": lambda: run.images([-1, 3]),
  }


def test_bad_arguments_raise_one_line_user_errors(workdir, tmp_path):
  run = mialth_jax.load_run(workdir)
  cases = _bad_calls(run)
  cases[f"load_run: {tmp_path} holds no run (config.json missing)"] = lambda: mialth_jax.load_run(str(tmp_path))
  for expected, call in cases.items():
    with pytest.raises(errors.UserError) as caught:
      call()
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_import_is_cheap_and_the_api_never_imports_tensorflow(workdir):
  code = ("import sys, mialth_jax; assert 'jax' not in sys.modules; run = mialth_jax.load_run(sys.argv[1]); "
          "print(run.model('dense')(run.images(run.test[:5])).shape); assert 'tensorflow' not in sys.modules")
  done = subprocess.run([sys.executable, "-c", code, workdir], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and done.stdout.strip() == "(5, 10)", done.stderr[-2000:]
