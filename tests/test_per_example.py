"""Which examples pruning exposes (experiments.exposure, exposure_groups, per_example; report.per_example): on synthetic
zoos with planted vulnerable examples the analysis finds them and, over seeds, no more false discoveries than its
false discovery rate allows; every statistic equals a direct loop; the image grids show exactly the listed ids."""
import collections
import json
import math
import types

import matplotlib.image
import numpy as np
import pytest
from scipy import stats as scipy_stats

from mialth_jax import config_lib, errors, layout as layout_lib, plugins
from mialth_jax.data import digits
from mialth_jax.data.examples import ExampleSource
from mialth_jax.experiments import exposure, exposure_groups as groups_lib, per_example, zoo_targets
from mialth_jax.report import per_example as report, per_example_plots, sections
from mialth_jax.utils import io

plugins.load()


def balanced_member(rng, num_models: int, num_examples: int) -> np.ndarray:
  """bool [S, N]: each example IN for exactly half of the models."""
  return (np.argsort(rng.random((num_examples, num_models)), axis=1) < num_models // 2).T


def planted_zoo(seed: int, num_models=16, num_examples=1000, planted=100, shift=5.0):
  """(dense, pruned, vulnerable, rising): N(0, 1) scores; the `vulnerable` examples' IN scores shifted by `shift`;
  under the pruned kind, the `rising` examples' IN scores shifted by `shift` more; a fixed half of the examples is
  never scored OUT (as RMIA's population)."""
  rng = np.random.default_rng(seed)
  member = balanced_member(rng, num_models, num_examples)
  vulnerable, rising = np.zeros(num_examples, bool), np.zeros(num_examples, bool)
  chosen = rng.choice(num_examples, 2 * planted, replace=False)
  vulnerable[chosen[:planted]], rising[chosen[planted:]] = True, True
  dense = rng.normal(size=member.shape) + shift * (member & vulnerable)
  pruned = dense + rng.normal(size=member.shape) + shift * (member & rising)
  unscored = ~member & (np.arange(num_examples) % 2 == 1)
  dense[unscored], pruned[unscored] = np.nan, np.nan
  return exposure.ZooScores(dense, member), exposure.ZooScores(pruned, member), vulnerable, rising


FDR = 0.1


def test_planted_vulnerable_examples_are_found_and_false_discoveries_stay_within_the_fdr():
  """60 seeds: every planted example is found (exposed under dense, rising under pruned) and the false discoveries
  over all discoveries stay at or under FDR within 3 binomial standard errors; no example outside the plant falls."""
  false_found, found_total = np.zeros(2), np.zeros(2)
  for seed in range(60):
    dense, pruned, vulnerable, rising = planted_zoo(seed)
    tested = np.arange(len(vulnerable)) % 2 == 0  # the others are never scored OUT: not analysed
    exposed = exposure.exposure(dense, exposure.caught(dense, 0.01), FDR)
    changed = exposure.change(dense, pruned, FDR)
    assert np.array_equal(np.isfinite(exposed["exposure"]), tested)
    assert exposed["exposed"][vulnerable & tested].all() and changed["rises"][rising & tested].all()
    for i, (detected, truth) in enumerate(((exposed["exposed"], vulnerable), (changed["rises"] | changed["falls"],
                                                                              rising))):
      false_found[i] += (detected & ~truth).sum()
      found_total[i] += detected.sum()
  realised = false_found / found_total
  assert (realised <= FDR + 3 * np.sqrt(FDR * (1 - FDR) / found_total)).all(), realised
  assert (realised > 0).all()  # the test has power to see false discoveries at all


def test_welch_equals_scipy_per_example():
  dense, _, _, _ = planted_zoo(3, num_models=10, num_examples=40, planted=5, shift=1.0)
  found = exposure.welch(dense.scores, dense.inside, dense.outside)
  for n in range(40):
    a, b = dense.scores[dense.inside[:, n], n], dense.scores[dense.outside[:, n], n]
    if len(b) < 2:
      assert np.isnan(found["t"][n])
      continue
    direct = scipy_stats.ttest_ind(a, b, equal_var=False)
    low, high = direct.confidence_interval(0.95)
    np.testing.assert_allclose([found["difference"][n], found["t"][n], found["low"][n], found["high"][n]],
                               [a.mean() - b.mean(), direct.statistic, low, high], rtol=1e-10)
    np.testing.assert_allclose(scipy_stats.t.sf(found["t"][n], found["df"][n]),
                               scipy_stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue, rtol=1e-9)


def test_benjamini_hochberg_equals_the_step_up_rule():
  rng = np.random.default_rng(1)
  p = np.concatenate([rng.uniform(size=80), rng.uniform(0, 0.002, size=20), [np.nan] * 5])
  adjusted, rejected = exposure.benjamini_hochberg(p, FDR)
  valid = sorted(x for x in p if not np.isnan(x))
  m = len(valid)
  largest = max([k for k in range(1, m + 1) if valid[k - 1] <= k * FDR / m], default=0)
  cut = valid[largest - 1] if largest else -1
  assert np.array_equal(rejected, ~np.isnan(p) & (p <= cut)) and 20 <= rejected.sum() < 40
  for i, x in enumerate(p):
    if not np.isnan(x):
      direct = min(min(valid[j] * m / (j + 1) for j in range(m) if valid[j] >= x), 1.0)
      assert adjusted[i] == pytest.approx(direct, rel=1e-12)


def test_an_example_is_caught_against_a_threshold_set_on_other_examples_only():
  dense, _, _, _ = planted_zoo(5, num_models=6, num_examples=160, planted=20, shift=2.0)
  level = 0.05
  hit = exposure.caught(dense, level)
  for s in range(6):
    for n in range(160):
      if np.isnan(dense.scores[s, n]):
        assert not hit[s, n]
        continue
      others = [dense.scores[s, j] for j in range(160) if j != n and dense.outside[s, j]]
      threshold = sorted(others, reverse=True)[math.floor(level * len(others))]
      assert hit[s, n] == (dense.scores[s, n] > threshold), (s, n)
  rates = [(hit[s] & dense.outside[s]).sum() / dense.outside[s].sum() for s in range(6)]
  assert max(rates) <= level + 1 / dense.outside.sum(1).min()  # each n left out moves the threshold by one rank


def test_memorisation_and_exemplars_equal_a_direct_loop():
  rng = np.random.default_rng(2)
  num_models, num_examples, num_classes = 6, 50, 4
  labels = rng.integers(0, num_classes, num_examples)
  member = balanced_member(rng, num_models, num_examples)
  dense = np.where(member & (rng.random(member.shape) < 0.8), labels, rng.integers(0, num_classes, member.shape))
  pruned = rng.integers(0, num_classes, member.shape)
  right = dense == labels
  memorised, without = groups_lib.memorisation(right, member), groups_lib.memorisation_without_each(right, member)
  exemplar = groups_lib.exemplars(dense, pruned, num_classes)
  for n in range(num_examples):
    def accuracy(models):
      return np.mean([dense[s, n] == labels[n] for s in models])
    ins = [s for s in range(num_models) if member[s, n]]
    outs = [s for s in range(num_models) if not member[s, n]]
    assert memorised[n] == pytest.approx(accuracy(ins) - accuracy(outs))
    for s in range(num_models):
      assert without[s, n] == pytest.approx(accuracy([i for i in ins if i != s]) - accuracy([o for o in outs if o != s]))

    def mode(predicted):
      counts = collections.Counter(predicted[:, n].tolist())
      return min(c for c in counts if counts[c] == max(counts.values()))
    assert exemplar[n] == (mode(dense) != mode(pruned))


def clopper_pearson_direct(k: int, n: int, alpha=0.05) -> tuple[float, float]:
  """The exact interval by bisection on binomial tails summed term by term (no scipy)."""
  def tail_at_least(p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))

  def solve(f, target, rising):
    lo, hi = 0.0, 1.0
    for _ in range(60):
      mid = (lo + hi) / 2
      lo, hi = (mid, hi) if (f(mid) < target) == rising else (lo, mid)
    return (lo + hi) / 2
  low = 0.0 if k == 0 else solve(tail_at_least, alpha / 2, True)
  high = 1.0 if k == n else solve(lambda p: 1 - tail_at_least(p) + math.comb(n, k) * p ** k * (1 - p) ** (n - k),
                                  alpha / 2, False)
  return low, high


def t_two_sided_direct(t: float, df: int) -> float:
  """2 P(T > |t|) by the midpoint rule on Student's density (no scipy)."""
  grid = np.linspace(abs(t), abs(t) + 60, 120_001)
  mid = (grid[1:] + grid[:-1]) / 2
  density = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) * (1 + mid ** 2 / df) ** (
      -(df + 1) / 2)
  return float(2 * (density * np.diff(grid)).sum())


def test_group_tprs_their_intervals_and_holm_equal_a_direct_computation():
  rng = np.random.default_rng(4)
  num_models, num_examples = 8, 120
  member = balanced_member(rng, num_models, num_examples)
  labels = np.repeat(np.arange(3), [20, 50, 50])  # class 0 is rare (20 < 0.5 * median 50)
  dense_hit = rng.random(member.shape) < 0.10
  pruned_hit = rng.random(member.shape) < np.where(labels == 0, 0.80, 0.10)
  memorised = rng.uniform(-0.2, 1.0, (num_models, num_examples))
  found = groups_lib.groups(labels, memorised, rare_ratio=0.5, atypical=0.25)
  assert set(found) == {"class 0", "class 1", "class 2", "rare classes", "frequent classes", "atypical", "typical"}
  rows = groups_lib.holm_adjust(groups_lib.compare_groups(dense_hit, pruned_hit, member, found))
  for row in rows:
    group = np.broadcast_to(found[row["group"]], member.shape)
    per_model = []
    for side, hit in (("dense", dense_hit), ("pruned", pruned_hit)):
      pairs = [(s, n) for s in range(num_models) for n in range(num_examples) if member[s, n] and group[s, n]]
      k = sum(hit[s, n] for s, n in pairs)
      assert (row[side]["hits"], row[side]["pairs"]) == (k, len(pairs))
      np.testing.assert_allclose(row[side]["ci"], clopper_pearson_direct(k, len(pairs)), atol=1e-9)
      per_model.append([np.mean([hit[s, n] for n in range(num_examples) if member[s, n] and group[s, n]])
                        for s in range(num_models)])
    differences = np.array(per_model[1]) - np.array(per_model[0])
    t = differences.mean() / (differences.std(ddof=1) / math.sqrt(num_models))
    assert row["comparison"]["mean_difference"] == pytest.approx(differences.mean())
    assert row["comparison"]["p_value"] == pytest.approx(t_two_sided_direct(t, num_models - 1), abs=1e-6)
  order = sorted(range(len(rows)), key=lambda i: rows[i]["comparison"]["p_value"])
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(rows) - rank) * rows[i]["comparison"]["p_value"]))
    assert rows[i]["p_adjusted"] == pytest.approx(running)
  assert next(r for r in rows if r["group"] == "class 0")["p_adjusted"] < 0.05  # the planted class is seen


def test_rank_stability_is_high_for_a_stable_plant_and_near_zero_without_one():
  dense, _, _, _ = planted_zoo(6, num_models=16, num_examples=2000, planted=400, shift=2.0)
  assert exposure.exposure_stability(dense)["rho"] > 0.3
  null = exposure.ZooScores(np.where(np.isnan(dense.scores), np.nan, np.random.default_rng(0).normal(
      size=dense.scores.shape)), dense.member)
  stability = exposure.exposure_stability(null)
  assert stability["ci"][0] < 0 < stability["ci"][1]


def write_synthetic_run(workdir: str, seed: int = 0) -> tuple[layout_lib.RunLayout, np.ndarray]:
  """A digits run folder holding only what the analysis reads: a dense and a ticket zoo of 8 models (random logits)
  and their leave-one-out scores, with planted vulnerable examples."""
  layout = layout_lib.RunLayout(workdir)
  source = ExampleSource(digits.load())
  ids = np.arange(len(source))
  dense, pruned, _, _ = planted_zoo(seed, num_models=8, num_examples=len(ids), planted=60, shift=4.0)
  rng = np.random.default_rng(seed)
  io.write_npy(layout.zoo("keep.npy"), dense.member)
  io.write_npy(layout.zoo("ids.npy"), ids)
  io.write_json(layout.zoo("zoo.json"), {"queries": ["identity", "flip"]})
  for kind, zoo_scores, sparsity in (("dense", dense, 0.0), ("ticket_s80", pruned, 0.8)):
    io.write_json(layout.zoo(kind, "summary.json"), {"kind": kind.split("_")[0], "sparsity": sparsity})
    io.write_npy(layout.zoo(kind, "logits.npy"), rng.normal(size=(8, len(ids), 2, 10)).astype(np.float32))
    names = np.array([zoo_targets.zoo_name(s) for s in range(8)] + [zoo_targets.TARGET])
    targets = zoo_targets.TargetScores(names, np.vstack([zoo_scores.scores, rng.normal(size=len(ids))]),
                                       np.vstack([zoo_scores.member, ids % 2 == 0]))  # the run's own model
    zoo_targets.record(layout, kind, "lira_fixed_var", {"type": "lira", "fixed_variance": True}, targets,
                       [{}] * len(names))
  io.write_json(layout.config, {"data": config_lib.base().data.to_dict()})
  return layout, source.labels(ids)


def test_the_image_grids_show_exactly_the_listed_ids_and_the_json_holds_the_numbers(tmp_path):
  layout, labels = write_synthetic_run(str(tmp_path / "run"))
  settings = {**per_example.settings_of({}), "grid_size": 10}
  found = per_example.analyse(layout, labels, settings)
  source = ExampleSource(digits.load())
  out = sections.Output(str(tmp_path / "report"), str(tmp_path / "report" / "plots"))
  drawn = report.grids(found, source, layout, "synthetic", out)
  wanted = [found["kinds"][k]["per_example"]["exposure"] for k in ("dense", "ticket_s80")] + \
      [found["changes"]["ticket_s80"]["per_example"]["change"]]
  assert len(drawn) == 3
  images = source[np.arange(len(source))]
  for grid, values in zip(drawn, wanted):
    finite = [n for n in range(len(values)) if np.isfinite(values[n])]
    assert grid.ids == sorted(finite, key=lambda n: (-values[n], n))[:10]
    png = np.round(matplotlib.image.imread(grid.path)[..., :3] * 255).astype(np.uint8)
    for listed, (top, left, height, width) in zip(grid.ids, grid.boxes):
      block = png[top:top + height, left:left + width]
      matches = [n for n in range(len(images)) if np.array_equal(block, per_example_plots.enlarged(images[n],
                                                                                                grid.scale))]
      assert listed in matches and all(np.array_equal(images[m], images[listed]) for m in matches)
  summary_path, examples_path = per_example.paths(layout, "lira_fixed_var")
  per_example.write(found, summary_path, examples_path)
  numbers = io.read_json(examples_path)
  exposed = found["kinds"]["dense"]["per_example"]["exposure"]
  assert numbers["ids"] == list(range(len(source)))
  assert [x is None for x in numbers["kinds"]["dense"]["exposure"]] == list(np.isnan(exposed))
  np.testing.assert_allclose([x for x in numbers["kinds"]["dense"]["exposure"] if x is not None],
                             exposed[np.isfinite(exposed)])


def test_the_report_section_reads_a_zoo_run_and_skips_others(tmp_path):
  layout, _ = write_synthetic_run(str(tmp_path / "run"))
  out = sections.Output(str(tmp_path / "report"), str(tmp_path / "report" / "plots"))
  run = types.SimpleNamespace(workdir=layout.workdir, label="synthetic", config=io.read_json(layout.config))
  text = report.section([run, types.SimpleNamespace(workdir=str(tmp_path), label="empty", config={})], out)
  assert "### synthetic: which examples pruning exposes" in text and "| ticket_s80 |" in text
  assert "empty" not in text


@pytest.mark.parametrize("field,value", [("fpr", 0.0), ("fdr", 1.5), ("grid_size", 0), ("atypical", 2.0),
                                         ("attack", "loss")])
def test_bad_settings_name_the_field(field, value):
  config = config_lib.base()
  config.attacks.models = {"lira_fixed_var": {"type": "lira", "fixed_variance": True}, "loss": {"type": "threshold_loss"}}
  config.attacks.protocols = ("zoo",)
  config.per_example.record = True
  config.per_example[field] = value
  with pytest.raises(errors.ConfigError, match=f"per_example.{field}"):
    per_example.validate(config)


@pytest.mark.slow  # a digits zoo of dense and an 80 % ticket, 6 models each: about 2 minutes on 2 cores
def test_a_zoo_run_records_the_analysis_after_its_targets(tmp_path):
  from mialth_jax.experiments import launch, paper
  config = config_lib.base()
  config.model.width_multiplier = 0.0625
  config.train.batch_size, config.train.num_epochs, config.train.num_steps = 48, -1.0, 40
  config.train.log_every_steps = 20
  paper.sparsity_vs_fit(config, None)
  config.lottery.sparsities, config.lottery.controls = (0.8,), ()
  config.zoo.num_models, config.zoo.curve_every_epochs, config.train.keep_every_epochs = 6, 0, 0
  config.per_example.record, config.per_example.fpr = True, 0.05
  workdir = str(tmp_path / "run")
  launch.run(config, workdir)
  layout = layout_lib.RunLayout(workdir)
  summary_path, examples_path = per_example.paths(layout, "lira_fixed_var")
  recorded = io.read_json(examples_path)
  labels = ExampleSource(digits.load()).labels(io.read_npy(layout.zoo("ids.npy")))
  again, again_examples = per_example.split(per_example.analyse(layout, labels, config.per_example.to_dict()))
  assert recorded == json.loads(json.dumps(again_examples))
  assert io.read_json(summary_path) == json.loads(json.dumps(again))
  assert set(recorded["kinds"]) == {"dense", "ticket_s80"} and set(recorded["changes"]) == {"ticket_s80"}
