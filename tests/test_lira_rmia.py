"""LiRA and RMIA on synthetic reference-model outputs: against direct NumPy / SciPy computations, on leaky and
signal-free examples, and their invariances (order, batching, leave-one-out). NumPy only, no training."""
import math

import numpy as np
import pytest
from scipy import special, stats

from mialth_jax.attacks import metrics, registry, rmia, rmia_signals
from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.attacks.reference import ReferenceOutputs, logit_scaled_confidence

NUM_CLASSES = 10
LIRA_CONFIGS = [{"type": "lira", "online": online, "fixed_variance": fixed}
                for online in (True, False) for fixed in (False, True)]
# Online taylor-soft-margin is left out: about 3 % of its signals on this zoo are <= 0 (hard examples, u_y - m below
# about -1.6), and a non-member whose signal and mean are both negative gets a large LR: TPR at 0.1 % FPR 0.006 against
# 0.10 for the softmax at T = 2. That is the authors' formula (test_rmia_signals_match_a_direct_computation).
RMIA_CONFIGS = [{"type": "rmia"}, {"type": "rmia", "online": False}, {"type": "rmia", "online": False, "a": 0.3},
                {"type": "rmia", "gamma": 2.0, "temperature": 1.0},  # the defaults before the measurement
                {"type": "rmia", "signal": "soft-margin", "gamma": 2.0},
                {"type": "rmia", "online": False, "signal": "taylor-soft-margin", "temperature": 2.0}]


def zoo(num_models: int, num_examples: int, *, num_queries: int = 2, never: int = 0, seed: int = 0):
  """(reference, target logits [N, A, C], target membership [N]) of num_models + 1 models, the last the target.

  Logits N(0, 1), the true class raised by the example's own difficulty N(2, 2), by 3 where the model trained on the
  example (each model trains on a random half), by model noise N(0, 1) and query noise N(0, 0.3). The last `never`
  examples are trained on by no model.
  """
  rng = np.random.default_rng(seed)
  s, n = num_models + 1, num_examples + never
  labels = rng.integers(0, NUM_CLASSES, n)
  keep = rng.random((s, n)) < 0.5
  keep[:, num_examples:] = False
  lift = (rng.normal(2.0, 2.0, n)[None, :, None] + 3.0 * keep[:, :, None] + rng.normal(0, 1, (s, n, 1))
          + rng.normal(0, 0.3, (s, n, num_queries)))
  true_class = np.eye(NUM_CLASSES)[labels][None, :, None]
  logits = rng.normal(size=(s, n, num_queries, NUM_CLASSES)) + true_class * lift[..., None]
  reference = ReferenceOutputs(ids=np.arange(n) * 3 + 7, labels=labels, logits=logits[:-1], keep=keep[:-1])
  return reference, logits[-1].astype(np.float32), keep[-1]


def score(attack, reference, target, rows, population_rows=None):
  population = None if population_rows is None else (target[population_rows], reference.labels[population_rows],
                                                       population_rows)
  return attack.score_examples(target[rows], reference.labels[rows], rows, population)


def reference_code_phi(logits, labels):
  """research/mi_lira_2021/score.py: float64 softmax, log(p_y + 1e-45) - log(sum of the others + 1e-45)."""
  probs = special.softmax(np.asarray(logits, np.float64), axis=-1)
  y_true = np.take_along_axis(probs, labels.reshape(-1, *([1] * (probs.ndim - 1))), axis=-1)[..., 0]
  return np.log(y_true + 1e-45) - np.log(probs.sum(-1) - y_true + 1e-45)


@pytest.fixture(scope="module")
def small():
  return zoo(16, 40, seed=3)


@pytest.mark.parametrize("config", LIRA_CONFIGS, ids=str)
def test_lira_matches_a_direct_scipy_computation(config, small):
  reference, target, _ = small
  phi_ref = np.stack([reference_code_phi(m, reference.labels) for m in reference.logits])  # [S, N, A]
  phi_target = reference_code_phi(target, reference.labels)
  keep = reference.keep
  residuals = {side: np.concatenate([phi_ref[k, n] - np.median(phi_ref[k, n], 0)
                                     for n, k in enumerate(keep.T if side else ~keep.T)]) for side in (True, False)}
  examples = np.array([0, 5, 17, 33])
  expected = []
  for n in examples:
    ins, outs = phi_ref[keep[:, n], n], phi_ref[~keep[:, n], n]
    assert len(ins) >= 2 and len(outs) >= 2  # no fallback in this check
    sd_in, sd_out = ((np.std(residuals[True]), np.std(residuals[False])) if config["fixed_variance"]
                     else (np.std(ins, 0), np.std(outs, 0)))
    if config["online"]:
      per_query = (stats.norm.logpdf(phi_target[n], np.median(ins, 0), sd_in + 1e-30)
                   - stats.norm.logpdf(phi_target[n], np.median(outs, 0), sd_out + 1e-30))
    else:
      per_query = -stats.norm.logsf(phi_target[n], np.median(outs, 0), sd_out + 1e-30)
    expected.append(per_query.mean())
  got = score(registry.make_attack(config).fit_reference(reference), reference, target, examples)
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_lira_fills_examples_without_enough_models(small):
  reference, _, _ = small
  keep = reference.keep.copy()
  keep[:, 0] = False          # example 0: no IN model
  keep[1:, 1] = False         # example 1: one IN model
  keep[0, 1] = True
  bare = ReferenceOutputs(reference.ids, reference.labels, reference.logits, keep)
  attack = registry.make_attack({"type": "lira"}).fit_reference(bare)
  (mu_in, sd_in), (mu_out, sd_out) = attack.in_, attack.out_
  np.testing.assert_allclose(mu_in[0], mu_in[1:].mean(0))
  np.testing.assert_allclose(sd_in[0], sd_in[2:].mean(0))
  np.testing.assert_allclose(sd_in[1], sd_in[2:].mean(0))
  assert mu_in[1] == pytest.approx(bare.logit_scaled_confidence[0, 1])
  assert np.isfinite(mu_out).all() and (sd_out > 0).all()


def test_phi_is_stable_where_the_naive_formula_fails():
  rng = np.random.default_rng(0)
  logits, labels = rng.normal(0, 3, (200, 2, NUM_CLASSES)), rng.integers(0, NUM_CLASSES, 200)
  probs = special.softmax(logits, axis=-1)
  p_y = np.take_along_axis(probs, labels[:, None, None], axis=-1)[..., 0]
  np.testing.assert_allclose(logit_scaled_confidence(logits, labels), np.log(p_y) - np.log(1 - p_y), rtol=1e-9)
  extreme = np.array([[50.0, 0, 0], [1000.0, 0, 0], [-1000.0, 0, 0], [0, 30.0, 0], [800.0, 790.0, 0]])
  with np.errstate(divide="ignore"):
    naive_p = special.softmax(extreme, axis=-1)[:, 0]
    assert np.isinf(np.log(naive_p) - np.log(1 - naive_p))[:3].all()
  np.testing.assert_allclose(logit_scaled_confidence(extreme, np.zeros(5, int)),
                             [50 - np.log(2), 1000 - np.log(2), -1000 - np.log(2), -30 - np.log1p(np.exp(-30)), 10],
                             rtol=1e-12)
  assert np.isfinite(logit_scaled_confidence(np.array([[[50.0, 0, 0]]], np.float32), np.array([0]))).all()


@pytest.fixture(scope="module")
def leaky():
  """1,000 attacked examples (the target trained on about half), 500-odd population examples it did not train on,
  and 1,000 examples no model trained on."""
  reference, target, member = zoo(32, 2000, never=1000, seed=0)
  attacked, null = np.arange(1000), np.arange(2000, 3000)
  population = np.arange(1000, 2000)[~member[1000:2000]]
  return reference, target, member, attacked, population, null


@pytest.mark.parametrize("config", LIRA_CONFIGS + RMIA_CONFIGS, ids=str)
def test_members_score_higher_and_signal_free_examples_do_not(config, leaky):
  reference, target, member, attacked, population, null = leaky
  attack = registry.make_attack(config).fit_reference(reference)

  def predicted(rows):
    """The attack's own rule; RMIA is score-only (decision_threshold None), and attack_metrics still wants a
    decision: the median of its scores stands in, since only rows read from the ranking are checked here."""
    if attack.decision_threshold is None:
      scores = score(attack, reference, target, rows, population)
      return scores > np.median(scores)
    return attack.predict_examples(target[rows], reference.labels[rows], rows,
                                   (target[population], reference.labels[population], population))

  result = metrics.attack_metrics(score(attack, reference, target, attacked, population), member[attacked],
                                  predicted(attacked), num_bootstrap=0)
  assert result["roc_auc"] > 0.85
  assert result["tpr_at_fpr_0.001"] > 0.03
  pseudo_member = np.random.default_rng(1).random(len(null)) < 0.5  # no model saw them: labels carry no signal
  null_result = metrics.attack_metrics(score(attack, reference, target, null, population), pseudo_member,
                                       predicted(null), num_bootstrap=1000)
  low, high = null_result["roc_auc_ci"]
  assert low <= 0.5 <= high and high - low < 0.1


def test_lira_beats_a_global_threshold_at_low_fpr(leaky):
  """Per-example calibration is the point of LiRA: the target's raw phi, thresholded globally, finds fewer members."""
  reference, target, member, attacked, _, _ = leaky
  raw = logit_scaled_confidence(target[attacked], reference.labels[attacked]).mean(1)
  lira = score(registry.make_attack({"type": "lira"}).fit_reference(reference), reference, target, attacked)
  auc = lambda s: metrics.attack_metrics(s, member[attacked], s > np.median(s), num_bootstrap=0)
  assert auc(lira)["roc_auc"] > auc(raw)["roc_auc"] + 0.1
  assert auc(lira)["tpr_at_fpr_0.01"] > auc(raw)["tpr_at_fpr_0.01"] + 0.05


@pytest.mark.parametrize("config", LIRA_CONFIGS + RMIA_CONFIGS, ids=str)
def test_scores_do_not_depend_on_order_or_batching(config, leaky):
  reference, target, _, attacked, population, _ = leaky
  rows = attacked[:300]
  attack = registry.make_attack(config).fit_reference(reference)
  whole = score(attack, reference, target, rows, population)
  permutation = np.random.default_rng(2).permutation(len(rows))
  shuffled_population = np.random.default_rng(3).permutation(population)
  np.testing.assert_array_equal(score(attack, reference, target, rows[permutation], shuffled_population),
                                whole[permutation])
  chunks = [score(attack, reference, target, rows[i:i + 7], population) for i in range(0, len(rows), 7)]
  np.testing.assert_array_equal(np.concatenate(chunks), whole)


@pytest.mark.parametrize("config", LIRA_CONFIGS + RMIA_CONFIGS, ids=str)
def test_scores_do_not_depend_on_the_order_of_the_pool(config, leaky, monkeypatch):
  monkeypatch.setattr(rmia, "_TUNE_EXAMPLES", 30)  # RMIA's a from a few examples: their choice shows in a_
  reference, target, _, attacked, population, _ = leaky
  order = np.random.default_rng(4).permutation(len(reference.ids))
  shuffled = ReferenceOutputs(reference.ids[order], reference.labels[order], reference.logits[:, order],
                              reference.keep[:, order])
  position = np.argsort(order)  # example n of the pool sits at position[n] of the shuffled pool
  attack = registry.make_attack(config)
  got = attack.fit_reference(shuffled).score_examples(
      target[attacked], reference.labels[attacked], position[attacked],
      (target[population], reference.labels[population], position[population]))
  np.testing.assert_allclose(got, score(registry.make_attack(config).fit_reference(reference), reference, target,
                                        attacked, population), rtol=1e-12)
  assert getattr(attack, "a_", None) == getattr(registry.make_attack(config).fit_reference(reference), "a_", None)


@pytest.mark.parametrize("config", LIRA_CONFIGS + RMIA_CONFIGS, ids=str)
def test_leave_one_out_equals_removing_the_target_model(config, small):
  reference, _, _ = small
  s, rows = 3, np.arange(40)
  population = rows[~reference.keep[s]]
  as_target = reference.logits[s]
  kept = np.arange(reference.num_models) != s
  removed = ReferenceOutputs(reference.ids, reference.labels, reference.logits[kept], reference.keep[kept])
  left_out = registry.make_attack(config).fit_reference(reference, exclude=s)
  loo = score(left_out, reference, as_target, rows, population)
  without = score(registry.make_attack(config).fit_reference(removed), removed, as_target, rows, population)
  with_target = registry.make_attack(config).fit_reference(reference)
  np.testing.assert_array_equal(loo, without)
  # The target's own outputs would otherwise calibrate it: the fitted per-example statistics differ.
  fitted = lambda attack: np.concatenate([np.ravel(x) for x in (  # noqa: E731
      attack.out_ + (attack.in_ or ()) if hasattr(attack, "out_") else (attack.marginal_,))])
  assert not np.array_equal(fitted(left_out), fitted(with_target))


def authors_signal(logits, labels, metric, temp, m=0.6, n=4):
  """research/2024_rmia/signals.py convert_signals (ml_privacy_meter d327341) in NumPy float64, line for line:
  logits [..., C] with labels [...]; metric 'softmax', 'soft-margin' or 'taylor-soft-margin' (taylor_m, taylor_n)."""
  def get_taylor(x, n):
    power = x
    taylor = power + 1.0
    for i in range(2, n):
      power = power * x
      taylor = taylor + power / math.factorial(i)
    return taylor

  logit_signals = np.asarray(logits, np.float64) / temp
  true_logits = np.take_along_axis(logit_signals, labels[..., None], -1)[..., 0]
  if metric == "softmax":
    exp_logit_signals = np.exp(logit_signals - logit_signals.max(-1, keepdims=True))
    return np.take_along_axis(exp_logit_signals, labels[..., None], -1)[..., 0] / exp_logit_signals.sum(-1)
  if metric == "soft-margin":
    exp_logit_sum = np.exp(logit_signals).sum(-1) - np.exp(true_logits)
    soft_true_logit = np.exp(true_logits - m)
    return soft_true_logit / (exp_logit_sum + soft_true_logit)
  taylor_logits = get_taylor(logit_signals, n)
  taylor_logit_sum = taylor_logits.sum(-1) - np.take_along_axis(taylor_logits, labels[..., None], -1)[..., 0]
  soft_taylor_true_logit = get_taylor(true_logits - m, n)
  return soft_taylor_true_logit / (taylor_logit_sum + soft_taylor_true_logit)


def direct_rmia(reference, target, rows, population_rows, *, gamma, a=None, signal="softmax", temperature=2.0):
  """RMIA as the authors' code computes it (linear space): p / mean p over models, pairwise ratios compared as
  main.py does (outer(ratio_x, 1 / ratio_z) > gamma), majority vote over queries."""
  labels = reference.labels[:, None]  # per query
  p_ref = np.stack([authors_signal(m, labels, signal, temperature) for m in reference.logits])  # [S, N, A]
  if a is None:
    p_x = p_ref.mean(0)
  else:
    out = ~reference.keep[:, :, None]
    p_x = (1 + a) / 2 * (p_ref * out).sum(0) / out.sum(0) + (1 - a) / 2
  ratio = authors_signal(target, labels, signal, temperature) / p_x
  scores = []
  for x in rows:
    z = [z for z in population_rows if z != x]
    wins = ((ratio[x][None, :] * (1 / ratio[z])) > gamma).sum(1) * 2 > ratio.shape[1]
    scores.append(wins.mean())
  return np.array(scores)


def rmia_direct_case(num_queries):
  """(reference, target, rows, population) of a small zoo where every example has an OUT model; example 9 is both
  scored and in the population."""
  reference, target, _ = zoo(4, 12, num_queries=num_queries, seed=5)
  keep = reference.keep.copy()
  keep[0] = False
  reference = ReferenceOutputs(reference.ids, reference.labels, reference.logits, keep)
  return reference, target, np.array([0, 1, 2, 3, 9]), np.array([9, 6, 7, 8, 10, 11])


@pytest.mark.parametrize("num_queries", [1, 2])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
@pytest.mark.parametrize("a", [None, 0.0, 0.3, 1.0])
def test_rmia_matches_a_direct_computation(num_queries, gamma, a):
  reference, target, rows, population = rmia_direct_case(num_queries)
  config = {"type": "rmia", "gamma": gamma} | ({"online": True} if a is None else {"online": False, "a": a})
  got = score(registry.make_attack(config).fit_reference(reference), reference, target, rows, population)
  np.testing.assert_allclose(got, direct_rmia(reference, target, rows, population, gamma=gamma, a=a))


@pytest.mark.parametrize("signal, temperature", [("softmax", 0.5), ("soft-margin", 2.0), ("taylor-soft-margin", 1.0),
                                                 ("taylor-soft-margin", 2.0)])
@pytest.mark.parametrize("a", [None, 0.3])
def test_rmia_signals_match_a_direct_computation(signal, temperature, a):
  """The signal and temperature reach the target, the population and the reference models alike."""
  reference, target, rows, population = rmia_direct_case(2)
  config = {"type": "rmia", "signal": signal, "temperature": temperature, "gamma": 2.0} | (
      {"online": True} if a is None else {"online": False, "a": a})
  got = score(registry.make_attack(config).fit_reference(reference), reference, target, rows, population)
  expected = direct_rmia(reference, target, rows, population, gamma=2.0, a=a, signal=signal, temperature=temperature)
  np.testing.assert_allclose(got, expected)
  plain = direct_rmia(reference, target, rows, population, gamma=2.0, a=a, temperature=1.0)
  assert not np.array_equal(expected, plain)  # the option changes the scores here


def test_rmia_signals_equal_the_authors_formulas():
  """softmax and soft-margin (held as logs) and taylor-soft-margin (held as is) against signals.py, on logits with a
  saturated example, wrong classes whose Taylor term is negative (u < -1.6) and a negative Taylor signal (row 2)."""
  logits = np.array([[[30.0, -4.0, 1.0, 0.5], [2.0, -7.0, 3.0, 0.0]],
                     [[0.3, 0.1, -0.2, 0.0], [-1.0, 5.0, -3.5, 2.0]],
                     [[-4.0, 3.0, 3.0, 3.0], [8.0, -8.0, -8.0, 1.0]]])
  labels = np.array([0, 1, 0])
  for temperature in (1.0, 2.0, 0.7):
    for signal in rmia_signals.SIGNALS:
      got = rmia_signals.signal_values(logits, labels, signal, temperature)
      expected = authors_signal(logits, labels[:, None], signal, temperature)
      np.testing.assert_allclose(got if signal == "taylor-soft-margin" else np.exp(got), expected, rtol=1e-12)
  assert rmia_signals.signal_values(logits, labels, "taylor-soft-margin", 1.0)[2, 0] < 0
  extreme = np.array([[[50.0, 0, 0]], [[70.0, 0, 0]], [[-800.0, 0, 0]], [[-801.0, 0, 0]]])
  got = rmia_signals.signal_values(extreme, np.zeros(4, int), "softmax", 1.0)[:, 0]
  np.testing.assert_allclose(got, [-2 * np.exp(-50.0), -2 * np.exp(-70.0), -800 - np.log(2), -801 - np.log(2)],
                             rtol=1e-12)  # p_y: 1.0, 1.0, 0.0, 0.0 in linear space; their logs keep the order


def test_rmia_properties(leaky):
  reference, target, member, attacked, population, _ = leaky
  by_gamma = [score(registry.make_attack({"type": "rmia", "gamma": g}).fit_reference(reference), reference, target,
                    attacked, population) for g in (1.0, 2.0, 4.0)]
  assert all(((0 <= s) & (s <= 1)).all() for s in by_gamma)
  assert (by_gamma[0] >= by_gamma[1]).all() and (by_gamma[1] >= by_gamma[2]).all() and by_gamma[0].sum() > \
      by_gamma[2].sum()
  tuned = registry.make_attack({"type": "rmia", "online": False}).fit_reference(reference)
  assert tuned.a_ in rmia.A_GRID
  fixed = registry.make_attack({"type": "rmia", "online": False, "a": tuned.a_}).fit_reference(reference)
  np.testing.assert_array_equal(score(tuned, reference, target, attacked, population),
                                score(fixed, reference, target, attacked, population))
  with pytest.raises(AttackError, match="needs population"):
    score(tuned, reference, target, attacked)


def test_rmia_tunes_a_by_attacking_the_first_reference_model():
  """a = None: the a of the grid whose offline RMIA, calibrated on the other models, best attacks model 0 on the
  disjoint x (rows) and z (population) of tune_rows."""
  reference, _, _ = zoo(8, 600, seed=4)
  others = ReferenceOutputs(reference.ids, reference.labels, reference.logits[1:], reference.keep[1:])
  usable = (~others.keep).any(0)  # examples with an OUT model among the others: the rest cannot be scored offline
  rows, population = rmia.tune_rows(reference.keep[0], usable, reference.ids)
  member = reference.keep[0, rows]
  aucs = []
  for a in rmia.A_GRID:
    attack = registry.make_attack({"type": "rmia", "online": False, "a": float(a)}).fit_reference(others)
    scores = score(attack, reference, reference.logits[0], rows, population)
    aucs.append(metrics.attack_metrics(scores, member, None, num_bootstrap=0)["roc_auc"])
  assert max(aucs) - min(aucs) > 0.01  # the choice matters here
  tuned = registry.make_attack({"type": "rmia", "online": False}).fit_reference(reference)
  assert tuned.a_ == rmia.A_GRID[int(np.argmax(aucs))]


def test_rmia_tune_rows_are_disjoint(monkeypatch):
  """z: half of model 0's usable non-members; x: its usable members and its other usable non-members; checked on the
  rows tune_a hands to pairwise_scores, with and without the caps biting."""
  reference, _, _ = zoo(8, 600, seed=4)
  member, usable = reference.keep[0], (~reference.keep[1:]).any(0)
  used = []
  scores = rmia.pairwise_scores
  monkeypatch.setattr(rmia, "pairwise_scores", lambda *args: used.append(args[-2:]) or scores(*args))
  for cap in (2000, 40):
    monkeypatch.setattr(rmia, "_TUNE_EXAMPLES", cap)
    used.clear()
    registry.make_attack({"type": "rmia", "online": False}).fit_reference(reference)
    assert len(used) == len(rmia.A_GRID)
    x_rows, z_rows = used[0]
    assert all(np.array_equal(x, x_rows) and np.array_equal(z, z_rows) for x, z in used)
    assert len(np.intersect1d(x_rows, z_rows)) == 0  # no z is among the x
    assert usable[z_rows].all() and not member[z_rows].any() and usable[x_rows].all()
    non_members = np.flatnonzero(usable & ~member)
    assert len(z_rows) == min(len(non_members) // 2, cap) and len(x_rows) == min(cap, usable.sum() - len(z_rows))
    if cap == 2000:  # no cap bites: x holds every usable member and every non-member not in z
      np.testing.assert_array_equal(np.sort(np.r_[x_rows[~member[x_rows]], z_rows]), non_members)
      np.testing.assert_array_equal(x_rows[member[x_rows]], np.flatnonzero(usable & member))
    assert 0 < member[x_rows].sum() < len(x_rows)


def old_overlapping_tune_a(reference, gamma):
  """(a, AUCs, x_rows, z_rows) of tune_a before the fix, re-implemented from the old rmia.py: x drawn from all usable
  examples and z from model 0's usable non-members, so an x that is a non-member is mostly also in z."""
  values, keep, ids = reference.true_class_log_prob, reference.keep, reference.ids
  log_out = rmia_signals.LogSpace.mean(values[1:], ~keep[1:])
  usable = ~np.isnan(log_out).any(axis=1)
  rng = np.random.default_rng(0)
  pick = lambda rows: np.sort(rng.permutation(rows[np.argsort(ids[rows])])[:2000])
  x_rows = pick(np.flatnonzero(usable))
  z_rows = pick(np.flatnonzero(usable & ~keep[0]))
  aucs = []
  for a in rmia.A_GRID:
    lr = values[0] - rmia_signals.LogSpace.offline(log_out, a)
    scores = rmia.pairwise_scores(lr[x_rows], lr[z_rows], gamma, rmia_signals.LogSpace, x_rows, z_rows)
    aucs.append(metrics.attack_metrics(scores, keep[0, x_rows], scores > 0.5, num_bootstrap=0)["roc_auc"])
  return float(rmia.A_GRID[int(np.argmax(aucs))]), np.array(aucs), x_rows, z_rows


def test_rmia_old_overlapping_rule_picks_another_a():
  """Saturated models (logits x 5): many x beat the same few hard z and tie. With z among x (the old rule), an x in z
  is divided by |z| - 1 and a member by |z|, so every tie breaks toward the non-member and every tuning AUC drops;
  the old rule picks a = 0.0 where the disjoint split picks 0.7."""
  reference, _, _ = zoo(4, 200, num_queries=1, seed=0)
  saturated = ReferenceOutputs(reference.ids, reference.labels, reference.logits * 5, reference.keep)
  old_a, old_aucs, x_rows, z_rows = old_overlapping_tune_a(saturated, 2.0)
  x_non_members = x_rows[~saturated.keep[0, x_rows]]
  assert np.isin(x_non_members, z_rows).all()  # the old x and z overlap on every non-member
  tuned = registry.make_attack({"type": "rmia", "online": False, "gamma": 2.0, "temperature": 1.0}).fit_reference(
      saturated)
  others = ReferenceOutputs(saturated.ids, saturated.labels, saturated.logits[1:], saturated.keep[1:])
  rows, population = rmia.tune_rows(saturated.keep[0], (~others.keep).any(0), saturated.ids)
  new_aucs = []
  for a in rmia.A_GRID:
    attack = registry.make_attack({"type": "rmia", "online": False, "a": float(a), "gamma": 2.0,
                                   "temperature": 1.0}).fit_reference(others)
    scores = score(attack, saturated, saturated.logits[0], rows, population)
    new_aucs.append(metrics.attack_metrics(scores, saturated.keep[0, rows], scores > 0.5, num_bootstrap=0)["roc_auc"])
  assert tuned.a_ == rmia.A_GRID[int(np.argmax(new_aucs))] == 0.7
  assert old_a == 0.0
  assert old_aucs.max() < min(new_aucs)


@pytest.mark.parametrize("config, message", [
    ({"type": "lira", "online": "yes"}, r"^attack lira: option online must be true or false, got 'yes'$"),
    ({"type": "lira", "fixed_variance": 1}, r"^attack lira: option fixed_variance must be true or false, got 1$"),
    ({"type": "lira", "gamma": 2.0}, r"^attack 'lira': unknown option\(s\) gamma; known: fixed_variance, online$"),
    ({"type": "rmia", "gamma": 0}, r"^attack rmia: option gamma must be a number > 0, got 0$"),
    ({"type": "rmia", "gamma": "2"}, r"^attack rmia: option gamma must be a number > 0"),
    ({"type": "rmia", "online": False, "a": 1.5}, r"^attack rmia: option a must be None \(tuned\) or a number in"),
    ({"type": "rmia", "a": 0.3}, r"only offline \(online=False\); got a=0.3, online=True$"),
    ({"type": "rmia", "fixed_variance": True}, r"^attack 'rmia': unknown option\(s\) fixed_variance; known: a, "
                                               r"gamma, online, signal, temperature$"),
    ({"type": "rmia", "signal": "taylor"}, r"^attack rmia: option signal must be one of softmax, soft-margin, "
                                           r"taylor-soft-margin, got 'taylor'$"),
    ({"type": "rmia", "signal": ["softmax"]}, r"^attack rmia: option signal must be one of .*, got \['softmax'\]$"),
    ({"type": "rmia", "temperature": 0}, r"^attack rmia: option temperature must be a finite number > 0, got 0$"),
    ({"type": "rmia", "temperature": -2.0}, r"^attack rmia: option temperature must be a finite number > 0, got -2.0$"),
    ({"type": "rmia", "temperature": float("inf")}, r"^attack rmia: option temperature must be .*, got inf$"),
    ({"type": "rmia", "temperature": "2"}, r"^attack rmia: option temperature must be .*, got '2'$"),
    ({"type": "rmia", "temperature": True}, r"^attack rmia: option temperature must be .*, got True$"),
])
def test_make_attack_refuses_bad_options_in_one_line(config, message):
  with pytest.raises(AttackError, match=message) as error:
    registry.make_attack(config)
  assert "\n" not in str(error.value)


def test_bad_reference_inputs_are_one_line_errors(small):
  reference, target, _ = small
  lira = registry.make_attack({"type": "lira"})
  inputs = AttackInputs.from_logits(target[:, 0], reference.labels)
  for call, message in [
      (lambda: lira.fit(inputs, np.arange(40) < 20), r"learns from reference models .* not fit\(inputs, is_member\)$"),
      (lambda: lira.fit_reference(reference, exclude=16), r"^exclude: expected None or a model index in \[0, 16\)"),
      (lambda: lira.fit_reference(reference).score_examples(target[:3], reference.labels[[0, 2, 1]], np.arange(3)),
       r"^target labels: 2 of 3 differ from the reference pool's labels at pool_rows$"),
      (lambda: lira.fit_reference(reference).score_examples(target[:3, :1], reference.labels[:3], np.arange(3)),
       r"^target outputs: expected logits \[M, A, C\] = \[3, 2, 10\]"),
      (lambda: lira.fit_reference(reference).score_examples(target[:1], reference.labels[:1], np.array([40])),
       r"^target pool_rows: expected integer positions in \[0, 40\)$"),
      (lambda: registry.make_attack({"type": "rmia", "online": False, "a": 0.3}).fit_reference(ReferenceOutputs(
          reference.ids, reference.labels, reference.logits, np.ones_like(reference.keep))).score_examples(
          target[:2], reference.labels[:2], np.arange(2), (target[2:4], reference.labels[2:4], np.arange(2, 4))),
       r"^offline RMIA: 2 target examples have no OUT reference model$"),
  ]:
    with pytest.raises(AttackError, match=message) as error:
      call()
    assert "\n" not in str(error.value)


def test_fitted_settings_record_what_the_fit_chose(small):
  reference, _, _ = small
  tuned = registry.make_attack({"type": "rmia", "online": False}).fit_reference(reference, exclude=2)
  assert tuned.fitted_settings == {"a": tuned.a_} and tuned.a_ in rmia.A_GRID
  assert registry.make_attack({"type": "rmia", "online": False, "a": 0.3}).fit_reference(
      reference).fitted_settings == {"a": 0.3}
  assert registry.make_attack({"type": "rmia"}).fit_reference(reference).fitted_settings == {}  # online: no a
  assert registry.make_attack({"type": "lira"}).fit_reference(reference).fitted_settings == {}
  with pytest.raises(RuntimeError, match="call fit_reference before scoring"):
    registry.make_attack({"type": "rmia", "online": False}).fitted_settings


def test_score_only_rmia_refuses_to_predict(small):
  """RMIA's score, a fraction of the population beaten, has no threshold that means "member": decision_threshold is
  None and predict_examples refuses; LiRA keeps its rule."""
  reference, target, _ = small
  rows, population = np.arange(10), np.arange(10, 40)[~reference.keep[0, 10:40]]
  for config in RMIA_CONFIGS:
    attack = registry.make_attack(config).fit_reference(reference)
    assert attack.decision_threshold is None
    with pytest.raises(AttackError, match=r"^attack RMIA is score-only \(decision_threshold None\): it has no rule "
                                          r"that predicts members; use score_examples$"):
      attack.predict_examples(target[rows], reference.labels[rows], rows,
                              (target[population], reference.labels[population], population))
  lira = registry.make_attack({"type": "lira"}).fit_reference(reference)
  np.testing.assert_array_equal(lira.predict_examples(target[rows], reference.labels[rows], rows),
                                score(lira, reference, target, rows) > 0)


def test_offline_rmia_gives_an_example_without_out_models_the_mean_pr_out_of_the_others(small):
  reference, target, _ = small
  keep = reference.keep.copy()
  keep[:, 5] = True  # every reference model trained on example 5
  inside = ReferenceOutputs(reference.ids, reference.labels, reference.logits, keep)
  attack = registry.make_attack({"type": "rmia", "online": False, "a": 0.3}).fit_reference(inside)
  log_p = rmia_signals.reference_signals(inside, np.arange(inside.num_models), "softmax", 2.0)  # [S, N, A]
  pr_out = np.array([[np.mean(np.exp(log_p[~keep[:, n], n, q])) if (~keep[:, n]).any() else np.nan
                      for q in range(log_p.shape[2])] for n in range(log_p.shape[1])])
  filled = np.nanmean(np.log(pr_out), axis=0)  # the mean over the other examples, in the signal's (log) space
  np.testing.assert_allclose(attack.marginal_[5], np.log(0.65 * np.exp(filled) + 0.35), rtol=1e-12)
  assert np.isfinite(attack.score_examples(target[:6], reference.labels[:6], np.arange(6),
                                           (target[6:12], reference.labels[6:12], np.arange(6, 12)))).all()
