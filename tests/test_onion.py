"""The privacy onion (experiments.onion, onion_effect; report.onion): the removed ids are the source's k most exposed
under dense (a direct sort of its per-example JSON), or k seeded random ones of the same candidates, and no training
set, zoo model or attack pool of the onion run holds one; the comparison's numbers equal a direct computation; bad
settings are refused naming the field."""
import json
import math
import types

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mialth_jax import config_lib, errors, layout as layout_lib, plugins
from mialth_jax.data import digits, reserved, splits as splits_lib
from mialth_jax.experiments import attack_runs, exposure, onion, onion_effect, per_example
from mialth_jax.lottery import zoo
from mialth_jax.report import onion as report
from mialth_jax.utils import io

plugins.load()

NUM_MODELS = 4


def run_config(source: str = "", remove: int = 0, removal: str = "most_exposed"):
  """The digits per-example config (configs/experiments/per_example.py:default), with a zoo of NUM_MODELS."""
  from configs.experiments import per_example as experiment
  config = experiment.get_config("default" if not remove else
                                 f"default:onion{'_control' if removal == 'random' else ''}{remove}")
  config.zoo.num_models = NUM_MODELS
  config.onion.of = source
  return config


def write_source(workdir: str, seed: int = 0) -> dict:
  """A finished digits source run as the onion reads it: config.json, the zoo's membership and the per-example JSON
  (distinct random dense exposures, every third one unmeasured)."""
  layout = layout_lib.RunLayout(workdir)
  config = run_config()
  num_examples = 1797
  rng = np.random.default_rng(seed)
  dense = rng.normal(size=num_examples)
  dense[::3] = np.nan
  io.write_json(layout.config, json.loads(config.to_json()))
  io.write_npy(layout.zoo("keep.npy"), zoo.random_subsets(NUM_MODELS, num_examples, 898, config.seed))
  io.write_npy(layout.zoo("seeds.npy"), zoo.model_seeds(config.seed, NUM_MODELS))
  io.write_npy(layout.zoo("ids.npy"), np.arange(num_examples))
  io.write_json(layout.zoo("zoo.json"), {"subset_size": 898})
  examples = {"ids": list(range(num_examples)), "labels": [0] * num_examples,
              "kinds": {"dense": {"exposure": [None if np.isnan(x) else float(x) for x in dense]}}, "changes": {}}
  io.write_json(per_example.paths(layout, "lira_fixed_var")[1], examples)
  return examples


def test_the_removed_are_the_k_most_exposed_under_dense_by_a_direct_sort_of_the_source_json(tmp_path):
  recorded = write_source(str(tmp_path / "source"))
  values = recorded["kinds"]["dense"]["exposure"]
  ranked = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: -values[i])
  for k in (1, 37):
    config = run_config(str(tmp_path / "source"), k)
    config_lib.validate(config)
    assert onion.removed_ids(config).tolist() == sorted(recorded["ids"][i] for i in ranked[:k])


def test_the_control_removes_k_seeded_random_ids_of_the_same_candidates(tmp_path):
  recorded = write_source(str(tmp_path / "source"))
  candidates = {i for i, v in enumerate(recorded["kinds"]["dense"]["exposure"]) if v is not None}
  config = run_config(str(tmp_path / "source"), 100, "random")
  config_lib.validate(config)
  removed = onion.removed_ids(config)
  assert len(set(removed)) == 100 and set(removed) <= candidates
  assert np.array_equal(removed, onion.removed_ids(run_config(str(tmp_path / "source"), 100, "random")))
  config.seed = 1
  other = onion.removed_ids(config)
  assert set(other) <= candidates and len(np.intersect1d(removed, other)) < 30  # 100 * 100 / 1198 = 8 expected
  top = onion.removed_ids(run_config(str(tmp_path / "source"), 100))
  assert len(np.intersect1d(removed, top)) < 30


def onion_context(config, workdir: str):
  """What experiments.onion reads of a run's context (the launch builds the same from the config)."""
  dataset = digits.load()
  splits = splits_lib.draw(config, dataset)
  return types.SimpleNamespace(config=config, layout=layout_lib.RunLayout(workdir), dataset=dataset, splits=splits,
                               total_steps=195, steps_per_epoch=13)


def test_the_removed_are_in_no_training_set_zoo_model_or_attack_pool_and_sizes_stay_equal(tmp_path):
  write_source(str(tmp_path / "source"))
  source_keep = io.read_npy(layout_lib.RunLayout(str(tmp_path / "source")).zoo("keep.npy"))
  dataset = digits.load()
  seeded = splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), -1, 0)
  runs = {}
  for removal in ("most_exposed", "random"):
    config = run_config(str(tmp_path / "source"), 50, removal)
    config.attacks.nonmembers = "test+unused_train"
    ctx = onion_context(config, str(tmp_path / removal))
    onion.decide_zoo(ctx)
    removed = onion.removed_ids(config)
    keep = io.read_npy(ctx.layout.zoo("keep.npy"))
    assert not np.isin(removed, ctx.splits.members).any() and set(ctx.splits.members) <= set(seeded.members)
    assert len(ctx.splits.members) == len(seeded.members) - 50 == (keep.sum(1)).min() == (keep.sum(1)).max()
    assert not keep[:, removed].any() and not (keep & ~source_keep).any()
    assert np.array_equal(np.sort(np.r_[ctx.splits.members, ctx.splits.unused_train]), np.arange(898))
    assert not np.isin(removed, attack_runs.nonmember_pool(ctx)).any()
    assert np.array_equal(reserved.reserved_ids(config, ctx.splits), removed)
    assert io.read_json(ctx.layout.path(onion.FILE))["removed"] == removed.tolist()
    runs[removal] = (removed, keep)
  (removed_a, keep_a), (removed_b, keep_b) = runs.values()
  # the extra drops of both runs follow one priority per model: on the examples neither run removed, the members one
  # run drops are among those the other drops, or hold them all
  elsewhere = np.setdiff1d(np.arange(keep_a.shape[1]), np.union1d(removed_a, removed_b))
  for s in range(NUM_MODELS):
    dropped_a, dropped_b = (source_keep[s, elsewhere] & ~k[s, elsewhere] for k in (keep_a, keep_b))
    assert dropped_a.sum() + dropped_b.sum() > 0
    assert not (dropped_a & ~dropped_b).any() or not (dropped_b & ~dropped_a).any()


def test_a_run_without_the_onion_keeps_its_seeded_split():
  config, dataset = run_config(), digits.load()
  drawn = splits_lib.draw(config, dataset).to_arrays()
  seeded = splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), -1, 0).to_arrays()
  assert all(np.array_equal(drawn[k], seeded[k]) for k in seeded)
  assert onion.removed_ids(config).size == 0


def synthetic_run(rng, member: np.ndarray, removed: np.ndarray, shift: np.ndarray) -> onion_effect.RunExposure:
  """A run of dense and one ticket whose zoo never trains on `removed`: N(0, 1) scores, IN scores raised by
  `shift` [N] (the ticket's by 0.5 more)."""
  member = member & ~np.isin(np.arange(member.shape[1]), removed)
  kinds = {k: exposure.ZooScores(rng.normal(size=member.shape) + member * (shift + extra), member)
           for k, extra in (("dense", 0.0), ("ticket_s80", 0.5))}
  found = {k: exposure.exposure(z, exposure.caught(z, 0.05), 0.1) for k, z in kinds.items()}
  return onion_effect.RunExposure(np.arange(member.shape[1]), removed, {k: f["exposure"] for k, f in found.items()},
                                  {k: f["p"] for k, f in found.items()}, kinds)


def bh_direct(p: list[float], fdr: float) -> set[int]:
  """Indices the Benjamini-Hochberg step-up rule rejects (a direct loop)."""
  order = sorted(range(len(p)), key=lambda i: p[i])
  largest = max([r for r in range(1, len(p) + 1) if p[order[r - 1]] <= r * fdr / len(p)], default=0)
  return set(order[:largest])


def mcnemar_direct(b: int, c: int) -> float:
  n = b + c
  tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
  return min(1.0, 2 * tail) if n else 1.0


def t_interval_direct(values: list[float]) -> tuple[float, float, float]:
  n = len(values)
  mean = sum(values) / n
  sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
  half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
  return mean, mean - half, mean + half


def test_the_comparison_equals_a_direct_computation():
  rng = np.random.default_rng(5)
  num_models, num_examples = 8, 120
  member = (np.argsort(rng.random((num_examples, num_models)), axis=1) < num_models // 2).T
  shift = np.where(rng.random(num_examples) < 0.3, 2.0, 0.0)
  onion_run = synthetic_run(rng, member, np.arange(0, 10), shift)
  control_run = synthetic_run(rng, member, np.arange(5, 15), np.where(np.arange(num_examples) < 60, 0.0, shift))
  found = onion_effect.compare(onion_run, control_run, 0.1)
  shared = list(range(15, num_examples))  # removed in neither (0-14); every exposure is measured
  assert found["shared"] == len(shared)
  per_kind = {}
  for kind in ("dense", "ticket_s80"):
    exposed = [bh_direct([run.p[kind][n] for n in shared], 0.1) for run in (onion_run, control_run)]
    newly = {shared[i] for i in exposed[0] - exposed[1]}
    lost = {shared[i] for i in exposed[1] - exposed[0]}
    change = [onion_run.exposure[kind][n] - control_run.exposure[kind][n] for n in shared]
    gaps = []
    for s in range(num_models):
      gap = []
      for run in (onion_run, control_run):
        scores = run.zoo[kind].scores[s]
        inside = [scores[n] for n in shared if member[s, n]]
        outside = [scores[n] for n in shared if not member[s, n]]
        gap.append(sum(inside) / len(inside) - sum(outside) / len(outside))
      gaps.append(gap[0] - gap[1])
    s = found["kinds"][kind]
    assert (s["exposed_onion"], s["exposed_control"], s["newly_exposed"], s["no_longer_exposed"]) == \
        (len(exposed[0]), len(exposed[1]), len(newly), len(lost))
    assert s["newly_exposed_fraction"] == pytest.approx(len(newly) / len(shared))
    assert s["mcnemar_p"] == pytest.approx(mcnemar_direct(len(newly), len(lost)))
    e, m = s["change_over_examples"], s["change_over_models"]
    np.testing.assert_allclose([e["mean"], e["low"], e["high"]], t_interval_direct(change), rtol=1e-9)
    np.testing.assert_allclose([m["mean"], m["low"], m["high"]], t_interval_direct(gaps), rtol=1e-9)
    per_kind[kind] = (newly, change, gaps)
  assert found["kinds"]["dense"]["newly_exposed"] > 5  # the control's first half carries no planted shift
  newly_t, change_t, gaps_t = per_kind["ticket_s80"]
  newly_d, change_d, gaps_d = per_kind["dense"]
  against = found["against_dense"]["ticket_s80"]
  assert against["newly_exposed_difference"] == pytest.approx((len(newly_t) - len(newly_d)) / len(shared))
  assert against["mcnemar"]["p_value"] == pytest.approx(mcnemar_direct(len(newly_t - newly_d), len(newly_d - newly_t)))
  np.testing.assert_allclose([against["change_over_examples"][k] for k in ("mean", "low", "high")],
                             t_interval_direct([a - b for a, b in zip(change_t, change_d)]), rtol=1e-9)
  np.testing.assert_allclose([against["change_over_models"][k] for k in ("mean", "low", "high")],
                             t_interval_direct([a - b for a, b in zip(gaps_t, gaps_d)]), rtol=1e-9)
  tests = [found["kinds"][k]["change_over_models"] for k in ("dense", "ticket_s80")] + [against["change_over_models"]]
  p = [t["p_value"] for t in tests]
  order = sorted(range(3), key=lambda i: p[i])
  holm, running = [0.0] * 3, 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (3 - rank) * p[i]))
    holm[i] = running
  np.testing.assert_allclose([t["p_holm"] for t in tests], holm, rtol=1e-12)


def test_the_report_pairs_each_onion_run_with_its_controls_only():
  def run(label, of, remove, removal, attack="lira_fixed_var"):
    return types.SimpleNamespace(label=label, config={"onion": {"of": of, "remove": remove, "removal": removal},
                                                      "per_example": {"attack": attack}})
  runs = [run("a", "/s", 5, "most_exposed"), run("b", "/s", 5, "random"), run("c", "/s", 6, "random"),
          run("d", "/t", 5, "random"), run("e", "/s", 5, "random", "rmia"), run("f", "", 0, "most_exposed"),
          run("g", "/s/", 5, "random")]
  assert [(a.label, b.label) for a, b in report.pairs(runs)] == [("a", "b"), ("a", "g")]


@pytest.mark.parametrize("change,field", [
    ({"remove": 0}, "onion.remove"), ({"remove": 1199}, "onion.remove"), ({"remove": -3}, "onion.remove"),
    ({"removal": "largest"}, "onion.removal"), ({"of": ""}, "onion.of"), ({"no_results": True}, "onion.of"),
    ({"seed": 3}, "onion.of"), ({"of": "/nonexistent/run"}, "onion.of")])
def test_bad_settings_name_the_field(tmp_path, change, field):
  write_source(str(tmp_path / "source"))
  config = run_config(str(tmp_path / "source"), 5)
  if change.pop("no_results", False):
    (tmp_path / "source" / "attacks" / "per_example" / "lira_fixed_var_examples.json.gz").unlink()
  for name, value in change.items():
    if name == "seed":
      config.seed = value
    else:
      config.onion[name] = value
  with pytest.raises(errors.ConfigError, match=f"^{field}"):
    config_lib.validate(config)


@pytest.mark.slow  # three digits zoo runs (dense and an 80 % ticket, 6 models each): about 6 minutes on 2 cores
def test_onion_and_control_runs_train_without_the_removed_and_the_report_compares_them(tmp_path):
  from mialth_jax.experiments import launch, paper
  from mialth_jax.report import sections

  def tiny(config):
    config.model.width_multiplier = 0.0625
    config.train.batch_size, config.train.num_epochs, config.train.num_steps = 48, -1.0, 40
    config.train.log_every_steps = 20
    paper.sparsity_vs_fit(config, None)
    config.lottery.sparsities, config.lottery.controls = (0.8,), ()
    config.attacks.models = {"lira_fixed_var": paper.STRONG_ATTACKS["lira_fixed_var"]}
    config.zoo.num_models, config.zoo.curve_every_epochs, config.train.keep_every_epochs = 6, 0, 0
    config.per_example.record, config.per_example.fpr = True, 0.05
    return config

  source = str(tmp_path / "source")
  launch.run(tiny(config_lib.base()), source)
  recorded = io.read_json(per_example.paths(layout_lib.RunLayout(source), "lira_fixed_var")[1])
  values = recorded["kinds"]["dense"]["exposure"]
  ranked = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i], i))
  runs = []
  for removal in ("most_exposed", "random"):
    config = tiny(config_lib.base())
    config.onion.of, config.onion.remove, config.onion.removal = source, 20, removal
    workdir = str(tmp_path / removal)
    launch.run(config, workdir)
    layout = layout_lib.RunLayout(workdir)
    removed = io.read_json(layout.path(onion.FILE))["removed"]
    if removal == "most_exposed":
      assert removed == sorted(recorded["ids"][i] for i in ranked[:20])
    assert not np.isin(removed, splits_lib.load(layout.splits).members).any()
    assert not io.read_npy(layout.zoo("keep.npy"))[:, removed].any()
    examples = io.read_json(per_example.paths(layout, "lira_fixed_var")[1])
    assert all(examples["kinds"]["dense"]["exposure"][i] is None for i in removed)  # never IN: no exposure
    runs.append(types.SimpleNamespace(workdir=workdir, label=removal, config=io.read_json(layout.config)))
  out = sections.Output(str(tmp_path / "report"), str(tmp_path / "report" / "plots"))
  text = report.section(runs, out)
  assert "### most_exposed vs random: the privacy onion" in text and "| kind - dense |" in text
  assert text.count("\n| ticket_s80 |") == 2 and text.count("\n| dense |") == 1
  found = onion_effect.compare(*(onion_effect.read_run(r.workdir, "lira_fixed_var") for r in runs), 0.1)
  measured = [io.read_json(per_example.paths(layout_lib.RunLayout(r.workdir), "lira_fixed_var")[1])["kinds"]
              for r in runs]
  both = {i for i in range(len(values))
          if all(m[k][field][i] is not None for m in measured for k in m for field in ("exposure", "p"))}
  assert found["shared"] == len(both) > len(ranked) - 40 - 20
