"""The adversarial protocol end to end on an overfitted digits ResNet (200 members): white-box and label-only attacks
next to the loss threshold, both defences (input-gradient penalty training, output smoothing), the statistics and
the report section; the adversarial score separates members from non-members and not two sets of non-members."""
import os

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from mialth_jax import config_lib, errors
from mialth_jax.attacks import adversarial_signals, metrics, registry
from mialth_jax.experiments import adversarial, attack_runs, launch, paper, targets, verdict
from mialth_jax.lottery import pipeline
from mialth_jax.report import collect, markdown
from mialth_jax.utils import io

TV = {"type": "adversarial_tv", "eps": 8 / 255, "steps": 3}
ATTACKS = {
    "loss": {"type": "threshold_loss"},
    "tv": TV,
    "grad_norm": {"type": "input_gradient_norm"},
    "augmentation": {"type": "augmentation_robustness"},
    "features": {"type": "adversarial_features", "signals": {"tv": TV, "grad_norm": {"type": "input_gradient_norm"}},
                 "learner": {"type": "sklearn_logreg"}},
}


def adversarial_config():
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.data.num_train = 200  # few members, 15 epochs: train accuracy 1.0, test ~0.9, so members stand out
  config.train.batch_size, config.train.num_epochs, config.train.learning_rate = 40, 15.0, 0.05
  config.train.eval_every_epochs, config.train.log_every_steps = 15.0, 100
  config.lottery.sparsities, config.lottery.controls = (), ("input_gradient_penalty",)
  config.attacks.protocols, config.attacks.models = ("paper", "adversarial"), ATTACKS
  config.attacks.num_bootstrap = 300
  config.adversarial.batch_size = 64
  config.defences.smoothing.sigma, config.defences.smoothing.samples = 0.1, 4
  config.defences.smoothing.attacks = ("loss", "augmentation")
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("adversarial_run"))
  config = adversarial_config()
  return workdir, config, launch.run(config, workdir)


def _result(results, target, attack):
  return next(r for r in results if r["protocol"] == "adversarial" and r["target"] == target and r["attack"] == attack)


def test_every_target_gets_every_attack_and_the_defences_their_records(run):
  workdir, _, results = run
  done = {(r["target"], r["attack"]) for r in results if r["protocol"] == "adversarial"}
  assert done == ({(m, a) for m in ("dense", "input_gradient_penalty") for a in ATTACKS}
                  | {("dense~smooth", "loss"), ("dense~smooth", "augmentation")})
  for r in results:
    assert r["num_members"] == r["num_nonmembers"] == 100
  folder = os.path.join(workdir, "attacks", "n400", "adversarial")
  defended = io.read_json(os.path.join(folder, "defended.json"))["dense~smooth"]
  dense = io.read_json(os.path.join(workdir, "models", "dense", "summary.json"))
  assert defended["sigma"] == 0.1 and defended["num_samples"] == 4
  assert abs(defended["test_accuracy"] - dense["test_accuracy"]) < 0.1 and defended["test_accuracy"] > 0.6
  penalised = io.read_json(os.path.join(workdir, "models", "input_gradient_penalty", "summary.json"))
  assert penalised["kind"] == "input_gradient_penalty" and penalised["train_accuracy"] > 0.9
  stats = io.read_json(os.path.join(folder, "statistics.json"))
  assert set(stats) == {"dense", "input_gradient_penalty", "dense~smooth"}
  assert stats["dense"]["grad_norm"]["members"] == "lower" and stats["dense~smooth"]["augmentation"]["seconds"] > 0


def test_the_adversarial_score_separates_members_on_the_overfitted_model(run):
  _, _, results = run
  tv = _result(results, "dense", "tv")
  assert tv["roc_auc_ci"][0] > 0.5, tv["roc_auc_ci"]
  stats = io.read_json(os.path.join(run[0], "attacks", "n400", "adversarial", "statistics.json"))["dense"]["tv"]
  assert stats["members"] == "lower" and stats["member_mean"] < stats["nonmember_mean"]  # members vary less
  assert _result(results, "dense", "features")["roc_auc"] > 0.5


def test_no_separation_between_two_sets_of_non_members(run):
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  target = targets.model_target(ctx, "dense")
  rng = np.random.default_rng(1)
  ids = len(ctx.dataset.y_train) + rng.permutation(ctx.splits.test)[:400]  # four sets of 100 test images
  fake = np.r_[np.ones(100, bool), np.zeros(100, bool)]
  attack = registry.make_attack(TV)
  attack.fit(attack.statistic(target, ids[:200], 64), fake)
  values = attack.statistic(target, ids[200:], 64)
  result = metrics.attack_metrics(attack.score(values), fake, attack.predict(values), num_bootstrap=300, seed=0)
  assert result["roc_auc_ci"][0] <= 0.5 <= result["roc_auc_ci"][1], result["roc_auc_ci"]


def test_cached_scores_are_bit_reproducible(run):
  """The same examples in the same batches give the same bits (other batches agree to float32 rounding only)."""
  workdir, config, _ = run
  ctx = pipeline.setup(config, workdir)
  target = targets.model_target(ctx, "dense")
  signal = registry.make_attack(TV).signal()
  cached = io.read_npz(adversarial_signals.cache_path(target, signal))
  train_ids = attack_runs.part(attack_runs.attack_split(ctx, 400), "train")[0]  # adversarial.num_examples = -1
  again = adversarial_signals.evaluate(signal, target, train_ids, 64)  # attack-train was computed first, like this
  np.testing.assert_array_equal(again, cached["values"][np.searchsorted(cached["ids"], train_ids)])


def test_the_report_shows_the_attacks_defences_and_plots(run, tmp_path):
  workdir, _, _ = run
  path = markdown.write([collect.load_run(workdir, num_bootstrap=100)], str(tmp_path))
  text = open(path).read()
  assert "adversarial-example and label-only attacks" in text and "| dense~smooth | output smoothing" in text
  assert "| input_gradient_penalty | input-gradient penalty (ours, training)" in text
  assert "| dense | tv | white-box | lower / lower |" in text
  assert "| dense | augmentation | label-only | higher (fixed) /" in text
  for name in ("adversarial_eps_", "adversarial_scores_"):
    assert any(f.startswith(name) for f in os.listdir(tmp_path / "plots"))


def _auc_on_half(result: dict, judged: bool) -> float:
  arrays = io.read_npz(result["scores_path"])
  keep = verdict.judged_half(arrays["ids"]) == judged
  return sk_metrics.roc_auc_score(arrays["is_member"][keep], arrays["scores"][keep])


def test_a_defence_row_shows_the_attack_chosen_on_the_selection_half_measured_on_the_judged_half(run, tmp_path):
  """The defences table's strongest attack on dense: highest ROC AUC (sklearn) on the selection half, its AUC on the
  judged half; TPR at 1 % FPR is left out with 100 attack-test non-members (about 50 judged, < 1,000)."""
  loaded = collect.load_run(run[0], num_bootstrap=100)
  on_dense = [r for r in loaded.attacks if r["protocol"] == "adversarial" and r["target"] == r["source"] == "dense"]
  chosen = max(on_dense, key=lambda r: (_auc_on_half(r, judged=False), r["attack"]))
  arrays = io.read_npz(chosen["scores_path"])
  judged = verdict.judged_half(arrays["ids"])
  text = open(markdown.write([loaded], str(tmp_path))).read()
  accuracy = io.read_json(os.path.join(run[0], "models", "dense", "summary.json"))["test_accuracy"]
  row = next(line for line in text.splitlines() if line.startswith("| dense | none | "))
  assert row.startswith(f"| dense | none | {accuracy:.4f} | {chosen['attack']} | {int(judged.sum())} | "
                        f"{_auc_on_half(chosen, judged=True):.3f} ["), row
  judged_nonmembers = int((~arrays["is_member"][judged]).sum())
  assert row.endswith(f"| - (needs >= 1,000 non-members, has {judged_nonmembers}) |"), row


@pytest.mark.parametrize("change,message", [
    (lambda c: setattr(c.attacks, "protocols", ("paper",)), "run only under the adversarial protocol"),
    (lambda c: setattr(c.adversarial, "batch_size", 0), "adversarial.batch_size must be >= 1, got 0"),
    (lambda c: setattr(c.defences.smoothing, "samples", 0), "defences.smoothing.samples must be >= 1"),
    (lambda c: setattr(c.adversarial, "num_examples", 3), "adversarial.num_examples must be -1 or an even"),
    (lambda c: setattr(c.defences.smoothing, "models", ("ticket_s80",)), "defences.smoothing.models: ticket_s80"),
    (lambda c: setattr(c.defences.smoothing, "attacks", ("lira",)), "defences.smoothing.attacks: lira"),
    (lambda c: setattr(c.defences.input_gradient_penalty, "weight", -1.0),
     "defences.input_gradient_penalty.weight must be >= 0"),
])
def test_bad_adversarial_settings_are_one_line_errors(change, message):
  config = adversarial_config()
  change(config)
  with pytest.raises(errors.ConfigError, match=message):
    config_lib.validate(config)


def test_the_experiment_config_attacks_every_model_with_the_sweep_and_both_defences():
  config = paper.experiment("adversarial", "default")
  config_lib.validate(config)
  assert config.attacks.protocols == ("paper", "adversarial") and "input_gradient_penalty" in config.lottery.controls
  types = {c["type"] for c in config.attacks.models.to_dict().values()}
  assert {"adversarial_tv", "input_gradient_norm", "minimal_perturbation", "hopskipjump", "augmentation_robustness",
          "adversarial_features", "threshold_loss"} <= types
  assert config.defences.smoothing.sigma > 0
  assert adversarial.SMOOTHED == "~smooth"
