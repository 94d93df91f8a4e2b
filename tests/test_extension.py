"""The extension points, used as a researcher would: from this file alone (no edit of the package) a toy attack of
each of the three contracts, a toy protocol, a toy training recipe and a toy defence (its own loss term and state
update as a train-step hook, a validated config section that --help shows, a report section and reserved example ids)
are registered and run end to end on digits, through validation, training, attacks and the report."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mialth_jax import config_lib, errors
from mialth_jax.attacks import attack_sets, contracts, registry
from mialth_jax.attacks.features import check_membership
from mialth_jax.data import reserved
from mialth_jax.experiments import launch
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol, own_outputs
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import pipeline, recipes, step_hooks
from mialth_jax.lottery import train as train_lib
from mialth_jax.report import collect, markdown, sections
from mialth_jax.utils import config_sections, io

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy_attacks  # noqa: E402  (the toy reference and target-query attacks, shared with test_attack_contracts)


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


# The toy defence: a logit penalty strength * mean(logits^2) added to the loss, and a count of the steps it saw.
def logit_penalty(slot, params, logits, batch):
  del params, batch
  return slot["strength"] * jnp.mean(jnp.square(logits.astype(jnp.float32)))


def count_step(slot, new_state, batch):
  del new_state, batch
  return {**slot, "steps": slot["steps"] + 1}


class LogitPenalty(recipes.Recipe):
  """Toy defence: a dense model from w0 trained with the logit penalty hook."""
  title = "toy logit penalty"

  def plan(self, config, planned):
    return [recipes.ModelSpec("logit_penalty", "logit_penalty")]

  def extra(self, ctx, spec):
    return {"toy_logit_penalty": {"strength": np.float32(ctx.config.defences.toy.strength), "steps": np.int32(0)}}


def check_toy(config):
  if not config.defences.toy.strength >= 0:
    raise errors.ConfigError(f"defences.toy.strength must be >= 0, got {config.defences.toy.strength}")


TOY_SECTION = config_sections.Section("defences.toy", "the toy logit-penalty defence", {
    "strength": (0.05, "weight of mean(logits^2) in the toy defence's loss"),
    "reserved": (20, "unused training images the toy defence keeps for itself")}, check_toy)


def toy_reserved_ids(config, splits):
  if "toy" not in config.get("defences", {}):
    return np.zeros(0, np.int64)
  return np.sort(np.asarray(splits.unused_train)[:config.defences.toy.reserved])


def toy_report_section(runs, out):
  rows = [(r.label, s["test_accuracy"]) for r in runs for s in r.models.values()
          if s["kind"] == "logit_penalty"]
  if not rows:
    return ""
  return "## Toy defence\n\n" + "\n".join(f"- {label}: logit_penalty test accuracy {acc:.3f}" for label, acc in rows)


def register_toys(patches: pytest.MonkeyPatch) -> None:
  """Every toy component, registered as a user's module would (and undone with `patches`)."""
  patches.setitem(registry.ATTACKS, "max_logit", MaxLogitAttack)
  patches.setitem(registry.ATTACKS, "toy_mean_ratio", toy_attacks.MeanRatio)
  patches.setitem(registry.ATTACKS, "toy_queried_loss", toy_attacks.QueriedLoss)
  patches.setitem(PROTOCOLS, "from_dense", FromDense)
  patches.setitem(recipes.RECIPES, "label_smoothing", LabelSmoothing)
  patches.setitem(recipes.RECIPES, "logit_penalty", LogitPenalty)
  patches.setitem(step_hooks.STEP_HOOKS, "toy_logit_penalty", step_hooks.StepHook(loss_term=logit_penalty,
                                                                                   after=count_step))
  patches.setitem(config_sections.SECTIONS, "defences.toy", TOY_SECTION)
  patches.setitem(reserved.RESERVATIONS, "toy", reserved.Reservation(draw=toy_reserved_ids))
  patches.setitem(sections.SECTIONS, "toy_defence", sections.Section(toy_report_section, order=25))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  patches = pytest.MonkeyPatch()
  register_toys(patches)
  config = config_lib.base()
  config.model.width_multiplier = 0.125
  config.data.num_train = 300
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 64, -1.0, 12
  config.train.log_every_steps = 6
  config.lottery.sparsities = (0.8,)
  config.lottery.controls = ("label_smoothing", "logit_penalty")
  config.attacks.protocols = ("paper", "from_dense", "zoo", "adversarial")
  config.attacks.nonmembers = "test+unused_train"  # the toy defence's reserved ids are among these images
  config.attacks.sizes = (200,)
  config.attacks.models = {"max_logit": {"type": "max_logit", "margin": 0.5}, "loss": {"type": "threshold_loss"},
                           "mean_ratio": {"type": "toy_mean_ratio"}, "queried_loss": {"type": "toy_queried_loss"}}
  config.attacks.num_bootstrap = 100
  config.zoo.num_models = 2
  workdir = str(tmp_path_factory.mktemp("toy"))
  yield workdir, launch.run(config, workdir), config
  patches.undo()


def test_the_toy_recipe_trains_a_model_of_its_kind(toy_run):
  workdir, _, _ = toy_run
  summaries = RunLayout(workdir).summaries()
  assert list(summaries) == ["dense", "logit_penalty", "smooth", "ticket_s80"]
  assert summaries["smooth"]["kind"] == "label_smoothing" and summaries["smooth"]["sparsity"] == 0.0
  dense_losses = [r["loss"] for r in io.read_jsonl(RunLayout(workdir).metrics("dense")) if r["phase"] == "train"]
  smooth_losses = [r["loss"] for r in io.read_jsonl(RunLayout(workdir).metrics("smooth")) if r["phase"] == "train"]
  # Same w0, data order and first batch: only the loss differs, and label smoothing's is the larger one.
  assert smooth_losses[0] > dense_losses[0] > 0


def test_the_toy_attack_and_protocol_give_results_for_every_model(toy_run):
  workdir, results, _ = toy_run
  toy = [r for r in results if r["protocol"] == "from_dense"]
  assert {(r["source"], r["target"], r["attack"]) for r in toy} == {
      ("dense", target, attack) for target in ("dense", "logit_penalty", "smooth", "ticket_s80")
      for attack in ("max_logit", "loss")}
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
  workdir, _, _ = toy_run
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


def test_the_toy_reference_and_query_attacks_run_under_their_protocols(toy_run):
  workdir, results, _ = toy_run
  zoo = {r["target"] for r in results if r["protocol"] == "zoo" and r["attack"] == "mean_ratio"}
  assert zoo == {"dense", "ticket_s80"}  # the models with a zoo of their kind
  queried = {r["target"] for r in results if r["protocol"] == "adversarial" and r["attack"] == "queried_loss"}
  assert queried == {"dense", "logit_penalty", "smooth", "ticket_s80"}
  layout = RunLayout(workdir)
  for model in queried:  # the query attack's statistic is minus the loss, as the loss threshold's score
    ours = io.read_npz(layout.result(200, "adversarial", model, model, "queried_loss")[1])
    loss = io.read_npz(layout.result(200, "paper", model, model, "loss")[1])
    np.testing.assert_array_equal(ours["ids"], loss["ids"])
    np.testing.assert_allclose(ours["scores"], loss["scores"], rtol=1e-6)
  ratio = io.read_npz(layout.result(200, "zoo", "dense", "dense", "mean_ratio")[1])
  np.testing.assert_array_equal(ratio["predicted"], ratio["scores"] > toy_attacks.MeanRatio.decision_threshold)


def test_the_toy_defence_adds_its_loss_term_and_updates_its_state(toy_run):
  workdir, _, config = toy_run
  ctx = pipeline.setup(config, workdir)
  spec = next(s for s in recipes.plan(config) if s.kind == "logit_penalty")
  images, labels, positions = next(train_lib.step_inputs(ctx.loop(), ctx.data, ctx.mesh, 0))
  step = ctx.train_step()
  defended, defended_metrics = step(pipeline.start_state(ctx, spec, ctx.dense_mask()), (images, labels, positions))
  variables = jax.device_get(ctx.restore_variables(ctx.layout.w0))
  batch = np.asarray(images)[np.asarray(positions)]
  x = (batch.astype(np.float32) / 255.0 - ctx.data.mean) / ctx.data.std  # digits runs are not augmented
  logits, _ = ctx.model.apply(variables, x, train=True, mutable=["batch_stats"])
  logits = np.asarray(logits, np.float64)
  log_p = logits - logits.max(1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  cross_entropy = -log_p[np.arange(len(batch)), np.asarray(labels)[np.asarray(positions)]].mean()
  expected = cross_entropy + config.defences.toy.strength * np.mean(logits ** 2)
  assert float(defended_metrics["loss"]) == pytest.approx(expected, rel=1e-4)
  assert int(jax.device_get(defended.extra["toy_logit_penalty"]["steps"])) == 1
  assert float(jax.device_get(defended.extra["toy_logit_penalty"]["strength"])) == pytest.approx(0.05)


def test_the_toy_defence_option_is_validated_and_shown_by_help(toy_run):
  from launch import main as launcher  # pylint: disable=import-outside-toplevel
  assert "defences.toy.strength = 0.05" in launcher.config_help()
  assert "weight of mean(logits^2) in the toy defence's loss" in launcher.config_help()
  config = config_lib.base()
  config.defences.toy.strength = -1.0
  with pytest.raises(errors.ConfigError, match=r"^defences.toy.strength must be >= 0, got -1.0$"):
    config_lib.validate(config)


def test_the_toy_defence_reserves_ids_that_no_attack_split_holds(toy_run):
  workdir, _, config = toy_run
  layout = RunLayout(workdir)
  splits = pipeline.setup(config, workdir).splits
  ids = toy_reserved_ids(config, splits)
  assert len(ids) == 20 and np.isin(ids, splits.unused_train).all()
  split = attack_sets.AttackSplit.read(layout.attack_split(200))
  for part, held in split.to_arrays().items():
    assert not np.isin(ids, held).any(), part


def test_the_toy_defence_has_its_report_section(toy_run, tmp_path):
  workdir, _, _ = toy_run
  report = open(markdown.write([collect.load_run(workdir, num_bootstrap=50)], str(tmp_path))).read()
  assert "## Toy defence" in report and "logit_penalty test accuracy" in report
  assert report.index("## Toy defence") < report.index("## Runs")
