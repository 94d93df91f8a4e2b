"""Privacy auditing: Clopper-Pearson epsilon lower bounds from attack scores, and the one-run audit with canaries.

The fast tests check the numbers against direct scipy computations and closed forms, and the plumbing against
jax_privacy.auditing's own functions; the slow ones train a small overfitted digits run (and its canary copy).
"""
import os
import types

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
from jax_privacy import auditing

from mialth_jax import config_lib, errors
from mialth_jax.audit import epsilon
from mialth_jax.data import digits, splits as splits_lib
from mialth_jax.experiments import attack_runs, canaries, launch, verdict
from mialth_jax.utils import io

DELTA, CONFIDENCE = 1e-5, 0.95


def _separated(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Scores N(shift, 1) for members and N(0, 1) for non-members, membership a fair coin each."""
  rng = np.random.default_rng(seed)
  member = rng.random(n) < 0.5
  return rng.normal(size=n) + shift * member, member


def test_clopper_pearson_bound_equals_a_direct_beta_computation():
  """eps = log((TPR_lo - delta) / FPR_hi), TPR_lo = beta.ppf(a/2, TP, FN + 1) (the lower Clopper-Pearson bound),
  FPR_hi = beta.ppf(1 - a/2, FP + 1, TN) (the upper one), a = 1 - confidence."""
  scores, member = _separated(600, 1.5, seed=0)
  a = 1 - CONFIDENCE
  for threshold in (0.5, 1.0, 2.0):
    flagged = scores >= threshold
    tp, fn = (flagged & member).sum(), (~flagged & member).sum()
    fp, tn = (flagged & ~member).sum(), (~flagged & ~member).sum()
    tpr_lo = scipy.stats.beta.ppf(a / 2, tp, fn + 1)
    fpr_hi = scipy.stats.beta.ppf(1 - a / 2, fp + 1, tn)
    expected = max(0.0, np.log((tpr_lo - DELTA) / fpr_hi))
    assert expected > 0.3  # a real signal, not a bound clipped at 0
    assert epsilon.bound_at(scores, member, threshold, DELTA, CONFIDENCE) == pytest.approx(expected, rel=1e-9)


def test_the_threshold_is_never_chosen_on_the_judged_examples():
  """The judged half separates perfectly at 4.5, the threshold-choosing half only at 9.5 (where the judged members
  score nothing): chosen on its own half the bound would be large, chosen on the other half it is 0."""
  judged = np.r_[np.ones(200, bool), np.zeros(200, bool)]
  member = np.tile(np.r_[np.ones(100, bool), np.zeros(100, bool)], 2)
  scores = np.r_[np.full(100, 5.0), np.full(100, 1.0), np.full(100, 10.0), np.full(100, 9.0)]
  own = epsilon.best_threshold(scores[judged], member[judged], DELTA, CONFIDENCE)
  assert epsilon.bound_at(scores[judged], member[judged], own, DELTA, CONFIDENCE) > 2.5
  found = epsilon.empirical_epsilon(scores, member, judged, DELTA, CONFIDENCE, "split")
  assert found["threshold"] == 10.0 and found["epsilon"] == 0.0
  assert (found["tpr"], found["fpr"], found["num_judged"]) == (0.0, 0.0, 200)


def test_split_uses_the_verdicts_halves_and_bonferroni_the_library():
  scores, member = _separated(800, 2.0, seed=1)
  ids = np.arange(800) * 7 + 3
  judged = verdict.judged_half(ids)
  found = epsilon.empirical_epsilon(scores, member, judged, DELTA, CONFIDENCE, "split")
  threshold = epsilon.best_threshold(scores[~judged], member[~judged], DELTA, CONFIDENCE)
  assert found["threshold"] == threshold and found["num_judged"] == judged.sum()
  assert found["epsilon"] == epsilon.bound_at(scores[judged], member[judged], threshold, DELTA, CONFIDENCE) > 0.5
  bonferroni = epsilon.empirical_epsilon(scores, member, judged, DELTA, CONFIDENCE, "bonferroni")
  library = auditing.CanaryScoreAuditor(scores[member], scores[~member]).epsilon_clopper_pearson(
      1 - CONFIDENCE, DELTA, threshold_strategy=auditing.Bonferroni())
  assert bonferroni["epsilon"] == pytest.approx(library) and bonferroni["epsilon"] > 0.5


def test_a_zoo_targets_threshold_comes_from_the_other_targets():
  """Changing target 0's scores leaves its threshold alone (chosen on targets 1..T-1) and moves the others'."""
  rows = [_separated(300, 1.0 + 0.2 * t, seed=10 + t) for t in range(4)]
  scores, member = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
  scores[:, :20] = np.nan  # the unscored examples (a target's RMIA population)
  found = epsilon.leave_one_target_out(scores, member, DELTA, CONFIDENCE)
  others = scores[1:][~np.isnan(scores[1:])], member[1:][~np.isnan(scores[1:])]
  assert found[0]["threshold"] == epsilon.best_threshold(*others, DELTA, CONFIDENCE)
  assert found[0]["num_judged"] == 280
  changed = scores.copy()
  changed[0] = changed[0] * 3
  again = epsilon.leave_one_target_out(changed, member, DELTA, CONFIDENCE)
  assert again[0]["threshold"] == found[0]["threshold"] and again[1]["threshold"] != found[1]["threshold"]


def _binomial_epsilon(guesses: int, correct: int, significance: float) -> float:
  """Steinke et al.'s bound at delta = 0, directly: the eps at which P[Binomial(k, e^eps / (1 + e^eps)) >= correct]
  equals the significance."""
  def gap(eps):
    return scipy.stats.binom.sf(correct - 1, guesses, scipy.special.expit(eps)) - significance
  return scipy.optimize.brentq(gap, 0.0, 50.0, xtol=1e-10) if gap(0.0) < 0 else 0.0


def test_one_run_estimate_on_separated_scores_equals_the_library_and_the_binomial():
  scores, included = _separated(1000, 2.0, seed=2)
  found = canaries.one_run_epsilon(scores, included, 100, DELTA, CONFIDENCE)
  top = np.argsort(-scores)[:100]
  correct = int(included[top].sum())
  assert (found["guesses"], found["correct"]) == (100, correct)
  assert found["epsilon"] == pytest.approx(auditing._epsilon_one_run(0, 1000, 100, correct, 1 - CONFIDENCE, DELTA))  # noqa: SLF001
  tiny_delta = canaries.one_run_epsilon(scores, included, 100, 1e-12, CONFIDENCE)["epsilon"]
  assert tiny_delta == pytest.approx(_binomial_epsilon(100, correct, 1 - CONFIDENCE), abs=1e-4)
  assert found["epsilon"] > 1.0


def test_perfect_guesses_give_the_bound_for_m_and_k_and_random_ones_about_zero():
  """All k guesses right: eps = logit(alpha^(1/k)) at delta -> 0 (q^k = alpha), the most m canaries and k guesses
  can prove; guesses independent of inclusion prove nothing."""
  rng = np.random.default_rng(3)
  included = rng.random(500) < 0.5
  perfect = included + rng.random(500) * 0.1
  found = canaries.one_run_epsilon(perfect, included, 50, 1e-12, CONFIDENCE)
  assert (found["guesses"], found["correct"]) == (50, 50)
  assert found["epsilon"] == pytest.approx(scipy.special.logit((1 - CONFIDENCE) ** (1 / 50)), abs=1e-4)
  assert found["epsilon"] == pytest.approx(auditing._epsilon_one_run(0, 500, 50, 50, 1 - CONFIDENCE, 1e-12))  # noqa: SLF001
  assert canaries.one_run_epsilon(rng.random(500), included, 50, DELTA, CONFIDENCE)["epsilon"] < 0.1


def _canary_config(m: int = 60, kind: str = "mislabel"):
  config = config_lib.base()
  config.data.num_train = 300
  config.attacks.protocols = ("paper", "canaries")
  config.attacks.nonmembers = "test+unused_train"
  config.audit.canaries.m, config.audit.canaries.kind = m, kind
  return config


@pytest.mark.parametrize("kind", canaries.KINDS)
def test_canaries_are_recorded_reserved_and_never_in_an_attack_set(kind, tmp_path):
  config = _canary_config(kind=kind)
  dataset = digits.load(config.data.digits_test_fraction)
  splits = splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), config.data.num_train, config.seed)
  ctx = types.SimpleNamespace(config=config, dataset=dataset, splits=splits,
                              layout=types.SimpleNamespace(path=lambda name: str(tmp_path / name),
                                                           attack_split=lambda size: str(tmp_path / "split.npz")))
  drawn = canaries.record(ctx)
  assert np.array_equal(io.read_npz(str(tmp_path / canaries.FILE))["ids"], drawn.ids)
  assert len(drawn.ids) == 60 and np.isin(drawn.ids, splits.unused_train).all()
  assert not np.isin(drawn.ids, splits.members).any()
  assert 15 < drawn.included.sum() < 45  # a fair coin each
  pool = attack_runs.nonmember_pool(ctx)
  assert not np.isin(drawn.ids, pool).any()
  assert len(pool) == len(dataset.y_test) + len(splits.unused_train) - 60
  split = attack_runs.attack_split(ctx, 400)
  assert not np.isin(drawn.ids, np.concatenate(list(split.to_arrays().values()))).any()
  trained = canaries.with_canaries(dataset, drawn)
  changed = np.flatnonzero((trained.x_train != dataset.x_train).any(axis=(1, 2, 3)) |
                           (trained.y_train != dataset.y_train))
  assert set(changed) <= set(drawn.ids)
  if kind == "mislabel":
    assert (trained.y_train[drawn.ids] != dataset.y_train[drawn.ids]).all()
    assert np.array_equal(trained.x_train, dataset.x_train)
  else:
    assert len(changed) >= 55  # noise images (a seeded label may equal the true one)
  again = canaries.draw(config, dataset, splits)
  assert all(np.array_equal(v, getattr(again, k)) for k, v in drawn.to_arrays().items())


@pytest.mark.parametrize("field, value, named", [
    ("delta", 0.0, "audit.delta"), ("delta", 1.0, "audit.delta"), ("confidence", 1.0, "audit.confidence"),
    ("threshold", "max", "audit.threshold")])
def test_bad_audit_settings_are_refused_naming_the_field(field, value, named):
  config = config_lib.base()
  config.audit[field] = value
  with pytest.raises(errors.ConfigError, match=named):
    config_lib.validate(config)


@pytest.mark.parametrize("field, value", [("m", 1), ("kind", "blur"), ("guesses", 300)])
def test_bad_canary_settings_are_refused_naming_the_field(field, value):
  config = _canary_config(m=256)
  config.audit.canaries[field] = value
  with pytest.raises(errors.ConfigError, match=f"audit.canaries.{field}"):
    config_lib.validate(config)


# ---- End to end: an overfitted non-private digits run, and its copy trained with mislabelled canaries.
# Floors, each well above 0 (no evidence of leakage) and below what the seeded CPU run gives (stated in the asserts).
OVERFIT_FLOOR = 0.1  # empirical epsilon (split threshold, ~200 judged examples) of the loss attack on the dense model
CANARY_FLOOR = 1.0   # one-run epsilon of the loss attack on its 200 mislabelled canaries, 40 guesses


def overfit_config():
  """400 digits members, 40 epochs, no weight decay, dense only: train accuracy 1.0, a large loss gap."""
  config = _canary_config(m=200)
  config.model.width_multiplier = 0.125
  config.data.num_train = 400
  config.train.batch_size, config.train.num_epochs, config.train.weight_decay = 48, 40.0, 0.0
  config.train.eval_every_epochs = 40.0
  config.train.log_every_steps = 100
  config.lottery.sparsities = ()
  config.attacks.models = {"loss": {"type": "threshold_loss"}}
  config.attacks.num_bootstrap = 100
  config.audit.canaries.guesses = 40
  return config


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("audit"))
  return workdir, launch.run(overfit_config(), workdir)


@pytest.mark.slow
def test_an_overfitted_model_has_an_empirical_epsilon_above_the_floor(overfit_run):
  workdir, results = overfit_run
  paper = next(r for r in results if r["protocol"] == "paper" and r["target"] == "dense")
  arrays = io.read_npz(os.path.join(workdir, "attacks", f"n{paper['size']}", "paper", "dense__dense", "loss.npz"))
  found = epsilon.empirical_epsilon(arrays["scores"], arrays["is_member"], verdict.judged_half(arrays["ids"]),
                                    DELTA, CONFIDENCE, "split")
  assert found["epsilon"] > OVERFIT_FLOOR, (found, paper["roc_auc"])


@pytest.mark.slow
def test_the_one_run_audit_bounds_epsilon_from_the_canary_copy(overfit_run):
  workdir, results = overfit_run
  result = next(r for r in results if r["protocol"] == "canaries")
  recorded = io.read_npz(os.path.join(workdir, canaries.FILE))
  copy_members = splits_lib.load(os.path.join(workdir, canaries.PROTOCOL, "splits.npz")).members
  members = splits_lib.load(os.path.join(workdir, "splits.npz")).members
  assert np.array_equal(copy_members, np.union1d(members, recorded["ids"][recorded["included"]]))
  split = io.read_npz(os.path.join(workdir, "attacks", f"n{result['size']}", "split.npz"))
  assert not np.isin(recorded["ids"], np.concatenate(list(split.values()))).any()
  scores = io.read_npz(os.path.join(workdir, "attacks", canaries.PROTOCOL, f"n{result['size']}", "dense",
                                    "loss.npz"))
  expected = canaries.one_run_epsilon(scores["scores"], recorded["included"], 40, DELTA, CONFIDENCE)
  assert result["one_run"] == expected and expected["epsilon"] > CANARY_FLOOR, result


@pytest.mark.slow
def test_a_dp_models_empirical_epsilon_stays_below_its_guarantee_across_three_seeds(tmp_path):
  """The overfitting recipe of the floor test above, with a DP-SGD model at epsilon 1 beside dense (GroupNorm for
  both: DP refuses BatchNorm): the bound of the DP model's loss attack stays at or below its guarantee."""
  checked = []
  for seed in range(3):
    config = overfit_config()
    config.seed = seed
    config.model.norm = "group"
    config.attacks.protocols = ("paper",)
    config.lottery.controls = ("dp",)
    config.defences.dp_sgd.epsilons = (1.0,)
    config.train.num_epochs = config.train.eval_every_epochs = 10.0  # the bound is the DP model's; dense need not overfit
    workdir = str(tmp_path / f"seed{seed}")
    results = launch.run(config, workdir)
    summaries = {r["target"]: io.read_json(os.path.join(workdir, "models", r["target"], "summary.json"))
                 for r in results}
    for r in results:
      summary = summaries[r["target"]]
      if "epsilon" not in summary:
        continue
      checked.append(r["target"])
      arrays = io.read_npz(os.path.join(workdir, "attacks", f"n{r['size']}", "paper",
                                        f"{r['target']}__{r['target']}", "loss.npz"))
      found = epsilon.empirical_epsilon(arrays["scores"], arrays["is_member"], verdict.judged_half(arrays["ids"]),
                                        summary["delta"], CONFIDENCE, "split")
      assert found["epsilon"] <= summary["epsilon"], (seed, r["target"], found, summary["epsilon"])
  assert checked == ["dp_eps1"] * 3, checked
