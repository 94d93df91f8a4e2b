"""The extension points, used as a researcher would: a toy attack, a toy protocol and a toy training recipe are
registered from this file (no edit of the package) and run end to end on digits, through validation, training,
attacks and the report."""
import os

import jax
import numpy as np
import optax
import pytest

from mialth_jax import config_lib
from mialth_jax.attacks import contracts, registry
from mialth_jax.attacks.features import check_membership
from mialth_jax.experiments import launch
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol, own_outputs
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import recipes
from mialth_jax.report import collect, markdown
from mialth_jax.utils import io


class MaxLogitAttack(contracts.LabelledOutputsAttack):
  """Toy attack: score = the largest logit; threshold = the median score of attack-train members."""

  def __init__(self, *, margin: float = 0.0):
    self.margin = margin

  def fit(self, inputs, is_member):
    is_member = check_membership(inputs, is_member)
    self.threshold_ = float(np.median(inputs.logits.max(1)[is_member])) - self.margin
    return self

  def score(self, inputs):
    return inputs.logits.max(1).astype(np.float64)

  def predict(self, inputs):
    return self.score(inputs) >= self.threshold_


class FromDense(Protocol):
  """Toy protocol: the attack learns from the dense model's own outputs and is applied to every model."""
  title = "toy protocol (attack learnt on dense, applied to every model)"

  def run(self, attack_run, models, attack_configs):
    everyone = [attack_run.target(m) for m in models]
    return attack_run.evaluate_pairs("from_dense", everyone[:1], lambda source: everyone, attack_configs,
                                     own_outputs(attack_run))


def smoothed_cross_entropy(logits, labels):
  return optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), 0.2)).mean()


class LabelSmoothing(recipes.Recipe):
  """Toy recipe: a dense model trained from w0 with label smoothing (its own loss, so its own compiled step)."""
  loss = staticmethod(smoothed_cross_entropy)

  def plan(self, config, planned):
    return [recipes.ModelSpec("smooth", "label_smoothing")]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  patches = pytest.MonkeyPatch()
  patches.setitem(registry.ATTACKS, "max_logit", MaxLogitAttack)
  patches.setitem(PROTOCOLS, "from_dense", FromDense)
  patches.setitem(recipes.RECIPES, "label_smoothing", LabelSmoothing)
  config = config_lib.base()
  config.model.width_multiplier = 0.125
  config.data.num_train = 300
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 12
  config.train.log_every_steps = 6
  config.lottery.sparsities = (0.8,)
  config.lottery.controls = ("label_smoothing",)
  config.attacks.protocols = ("paper", "from_dense")
  config.attacks.sizes = (200,)
  config.attacks.models = {"max_logit": {"type": "max_logit", "margin": 0.5}, "loss": {"type": "threshold_loss"}}
  config.attacks.num_bootstrap = 100
  workdir = str(tmp_path_factory.mktemp("toy"))
  yield workdir, launch.run(config, workdir)
  patches.undo()


def test_the_toy_recipe_trains_a_model_of_its_kind(toy_run):
  workdir, _ = toy_run
  summaries = RunLayout(workdir).summaries()
  assert list(summaries) == ["dense", "smooth", "ticket_s80"]
  assert summaries["smooth"]["kind"] == "label_smoothing" and summaries["smooth"]["sparsity"] == 0.0
  dense_losses = [r["loss"] for r in io.read_jsonl(RunLayout(workdir).metrics("dense")) if r["phase"] == "train"]
  smooth_losses = [r["loss"] for r in io.read_jsonl(RunLayout(workdir).metrics("smooth")) if r["phase"] == "train"]
  # Same w0, data order and first batch: only the loss differs, and label smoothing's is the larger one.
  assert smooth_losses[0] > dense_losses[0] > 0


def test_the_toy_attack_and_protocol_give_results_for_every_model(toy_run):
  workdir, results = toy_run
  toy = [r for r in results if r["protocol"] == "from_dense"]
  assert {(r["source"], r["target"], r["attack"]) for r in toy} == {
      ("dense", target, attack) for target in ("dense", "smooth", "ticket_s80") for attack in ("max_logit", "loss")}
  for r in results:
    assert 0.0 <= r["accuracy"] <= 1.0 and r["num_members"] == r["num_nonmembers"] == 50
    json_path, npz_path = RunLayout(workdir).result(200, r["protocol"], r["source"], r["target"], r["attack"])
    scores = io.read_npz(npz_path)
    assert np.mean(scores["predicted"] == scores["is_member"]) == pytest.approx(r["accuracy"])
    assert os.path.exists(json_path)
  # The protocol's diagonal is the paper protocol: same attack, same model, same examples.
  paper = {(r["target"], r["attack"]): r["accuracy"] for r in results if r["protocol"] == "paper"}
  assert all(paper[("dense", r["attack"])] == r["accuracy"] for r in toy if r["target"] == "dense")


def test_the_report_has_a_section_for_the_toy_protocol(toy_run, tmp_path):
  workdir, _ = toy_run
  report = open(markdown.write([collect.load_run(workdir, num_bootstrap=50)], str(tmp_path))).read()
  assert "every attack, toy protocol (attack learnt on dense, applied to every model)" in report
  assert "| smooth | max_logit |" in report


def test_validation_knows_the_registered_names_only_while_registered(monkeypatch):
  config = config_lib.base()
  config.lottery.controls = ("label_smoothing",)
  monkeypatch.delitem(recipes.RECIPES, "label_smoothing", raising=False)  # the module's fixture may hold it
  with pytest.raises(ValueError, match="lottery.controls: unknown training recipe 'label_smoothing'; known: dense"):
    config_lib.validate(config)
  monkeypatch.setitem(recipes.RECIPES, "label_smoothing", LabelSmoothing)
  config_lib.validate(config)
