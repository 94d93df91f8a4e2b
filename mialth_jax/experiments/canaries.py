"""One-run auditing with canaries (Steinke, Nasr & Jagielski 2023, https://arxiv.org/abs/2305.08846): the "canaries"
protocol.

m canaries are drawn from the run's unused training images (`splits.unused_train`, less other features' reserved
ids) and made easy to recognise: `mislabel` gives each a seeded wrong label, `noise` replaces its image by seeded
uniform noise (with a seeded label). Each is included in training by an independent fair coin. Their ids, inclusion
bits, labels and images are recorded in <workdir>/canaries.npz, and they are reserved ids (data.reserved), so the
run's non-member pool, and with it every attack set, holds none of them; they are not members of the run either.

The audited models are one more training run of the config, in <workdir>/canaries/: the same seed, recipes and
members, plus the included canaries (the run's own models stay untouched, so every other result is unchanged). Each
attack that learns from labelled outputs is fitted on the audited model's outputs on the run's attack-train part
(which holds no canary) and scores the m canaries; guessing "in" for the k highest scores (abstaining on the others)
gives jax_privacy.auditing's one-run lower bound on epsilon at audit.delta, from that single training run.
Results: attacks/canaries/n<size>/<model>/<attack>.{json,npz}.
"""
import dataclasses
import os

import numpy as np
from jax_privacy import auditing

from mialth_jax import errors
from mialth_jax.attacks import contracts, metrics as metrics_lib, registry
from mialth_jax.data import reserved, splits as splits_lib
from mialth_jax.experiments import targets as targets_lib
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol
from mialth_jax.lottery import pipeline, recipes
from mialth_jax.utils import config_sections, hosts, io

PROTOCOL = "canaries"
FILE = "canaries.npz"
KINDS = ("mislabel", "noise")
_SEED = 0xCA4A


@dataclasses.dataclass(frozen=True)
class Canaries:
  ids: np.ndarray        # int64 [m]: global ids (unused training images)
  included: np.ndarray   # bool [m]: trained on (a fair coin each)
  labels: np.ndarray     # int32 [m]: the labels they are trained and scored with
  images: np.ndarray     # uint8 [m, H, W, C]: the images they are trained and scored with

  def to_arrays(self) -> dict:
    return dataclasses.asdict(self)


def planned(config) -> bool:
  return PROTOCOL in config.attacks.protocols


def draw_ids(config, splits) -> np.ndarray:
  """The canary ids (sorted): audit.canaries.m seeded unused training images that no other feature reserves; empty
  when the protocol is not configured or the run has no unused images (a copy of the run trained by a protocol)."""
  unused = np.asarray(splits.unused_train, np.int64)
  if not planned(config) or not unused.size:
    return np.zeros(0, np.int64)
  others = [r.draw(config, splits) for name, r in reserved.RESERVATIONS.items() if name != PROTOCOL]
  free = np.setdiff1d(unused, np.concatenate([np.zeros(0, np.int64), *others]))
  m = config.audit.canaries.m
  if m > len(free):
    raise errors.ConfigError(f"audit.canaries.m={m}: the run has only {len(free)} unused training images free for "
                             "canaries; lower it or set data.num_train below the training images")
  return np.sort(np.random.default_rng([config.seed, _SEED]).choice(free, m, replace=False))


def draw(config, dataset, splits) -> Canaries:
  """The canaries of a run: ids, fair-coin inclusion and content, each from its own seeded stream."""
  ids = draw_ids(config, splits)
  included = np.random.default_rng([config.seed, _SEED, 1]).random(len(ids)) < 0.5
  rng = np.random.default_rng([config.seed, _SEED, 2])
  true_labels = np.asarray(dataset.y_train)[ids]
  if config.audit.canaries.kind == "mislabel":
    labels = (true_labels + rng.integers(1, dataset.num_classes, len(ids))) % dataset.num_classes
    images = np.asarray(dataset.x_train)[ids]
  else:
    labels = rng.integers(0, dataset.num_classes, len(ids))
    images = rng.integers(0, 256, (len(ids), *dataset.image_shape), dtype=np.uint8)
  return Canaries(ids, included, labels.astype(np.int32), images)


def record(ctx) -> Canaries:
  """The run's canaries, written to canaries.npz on first use and checked against the draw afterwards."""
  if not ctx.dataset.in_memory:
    raise errors.ConfigError("attacks.protocols: the canaries protocol needs a dataset held in memory (digits, npz)")
  canaries = draw(ctx.config, ctx.dataset, ctx.splits)
  if not canaries.ids.size:
    raise errors.ConfigError("attacks.protocols: the canaries protocol draws its canaries from unused training images; "
                             "set data.num_train below the training images")
  path = ctx.layout.path(FILE)
  if os.path.exists(path):
    recorded = io.read_npz(path)
    if any(not np.array_equal(recorded[k], v) for k, v in canaries.to_arrays().items()):
      raise errors.ConfigError(f"{path}: records other canaries than this config draws (audit.canaries, "
                               "data.num_train, seed); it belongs to another run")
  else:
    hosts.on_process_zero(lambda: io.write_npz(path, **canaries.to_arrays()))
  return canaries


def with_canaries(dataset, canaries: Canaries):
  """The dataset with each canary's training image and label replaced by its canary content."""
  x_train, y_train = np.array(dataset.x_train), np.array(dataset.y_train)
  x_train[canaries.ids], y_train[canaries.ids] = canaries.images, canaries.labels
  return dataclasses.replace(dataset, x_train=x_train, y_train=y_train)


def audited_run(ctx, canaries: Canaries) -> pipeline.Context:
  """Trains (or finds) every planned model on the run's members plus the included canaries, in <workdir>/canaries."""
  members = np.union1d(ctx.splits.members, canaries.ids[canaries.included])
  splits = splits_lib.Splits(members=members, unused_train=np.zeros(0, np.int64), test=ctx.splits.test)
  copy = pipeline.setup(ctx.config, ctx.layout.path(PROTOCOL), dataset=with_canaries(ctx.dataset, canaries),
                        splits=splits)
  copy.log_prefix = f"{PROTOCOL}/"
  reserved.hand_to_copy(ctx, copy.layout)  # e.g. Min-Max's reference set, as in the run
  pipeline.ensure_w0(copy)
  for spec in recipes.plan(ctx.config):
    pipeline.train_model(copy, spec)
  return copy


def one_run_epsilon(scores: np.ndarray, included: np.ndarray, guesses: int, delta: float,
                    confidence: float) -> dict:
  """Steinke et al.'s one-run bound (jax_privacy.auditing.CanaryScoreAuditor.epsilon_one_run): guess "in" for the
  `guesses` highest scores (ties at the k-th score guessed too) and abstain on the rest; guesses=0 tries every k,
  Bonferroni-corrected. Returns {"epsilon", "guesses", "correct" (None when every k is tried)}."""
  scores, included = np.asarray(scores, np.float64), np.asarray(included, bool)
  auditor = auditing.CanaryScoreAuditor(scores[included], scores[~included])
  if guesses == 0:
    epsilon = auditor.epsilon_one_run(1 - confidence, delta, threshold_strategy=auditing.Bonferroni())
    return {"epsilon": float(epsilon), "guesses": None, "correct": None}
  threshold = np.sort(scores)[::-1][min(guesses, len(scores)) - 1]
  guessed = scores >= threshold
  epsilon = auditor.epsilon_one_run(1 - confidence, delta, threshold_strategy=auditing.Explicit(threshold))
  return {"epsilon": float(epsilon), "guesses": int(guessed.sum()), "correct": int((guessed & included).sum())}


def result_paths(layout, size: int, model: str, attack: str) -> tuple[str, str]:
  stem = layout.path("attacks", PROTOCOL, f"n{size}", model, attack)
  return stem + ".json", stem + ".npz"


def audit_model(attack_run, copy, canaries: Canaries, model: str, attack: str, attack_config: dict) -> dict:
  """One attack on one audited model: fitted on attack-train, scoring the canaries; writes .npz then .json."""
  config = attack_run.ctx.config
  target = targets_lib.model_target(copy, model)
  train_ids, train_member = attack_run.part("train")
  fitted = registry.make_attack(dict(attack_config)).fit(target.outputs(train_ids), train_member)
  inputs = target.outputs(canaries.ids)
  scores, predicted = fitted.score(inputs), fitted.predict(inputs)
  audit = config.audit
  result = metrics_lib.attack_metrics(scores, canaries.included, predicted, num_bootstrap=config.attacks.num_bootstrap,
                                      seed=config.seed)
  result.update(protocol=PROTOCOL, source=model, target=model, attack=attack, size=attack_run.size,
                attack_config=dict(attack_config), canary_kind=audit.canaries.kind, num_canaries=len(canaries.ids),
                delta=audit.delta, confidence=audit.confidence,
                one_run=one_run_epsilon(scores, canaries.included, audit.canaries.guesses, audit.delta,
                                        audit.confidence))
  json_path, npz_path = result_paths(attack_run.ctx.layout, attack_run.size, model, attack)

  def write():
    io.write_npz(npz_path, ids=canaries.ids, scores=scores, included=canaries.included)
    io.write_json(json_path, result)
  hosts.on_process_zero(write)
  return result


@PROTOCOLS.register(PROTOCOL)
class CanaryAudit(Protocol):
  title = "one-run audit with canaries (Steinke et al. 2023; the run trained again with canaries)"

  def run(self, attack_run, models, attack_configs):
    ctx = attack_run.ctx
    canaries = record(ctx)
    copy = audited_run(ctx, canaries)
    results = {}
    for attack, attack_config in registry.of_contract(attack_configs, contracts.LabelledOutputsAttack).items():
      for model in copy.layout.finished_models():
        json_path, _ = result_paths(ctx.layout, attack_run.size, model, attack)
        results[(model, model, attack)] = (io.read_json(json_path) if os.path.exists(json_path) else
                                           audit_model(attack_run, copy, canaries, model, attack, attack_config))
    return results


def validate(config) -> None:
  """Checks the canaries section; errors name the field."""
  settings = config.audit.canaries
  if isinstance(settings.m, bool) or not isinstance(settings.m, int) or settings.m < 2:
    raise errors.ConfigError(f"audit.canaries.m must be a whole number >= 2, got {settings.m!r}")
  if settings.kind not in KINDS:
    raise errors.ConfigError(f"audit.canaries.kind={settings.kind!r} is unknown; expected one of {', '.join(KINDS)}")
  if isinstance(settings.guesses, bool) or not isinstance(settings.guesses, int) or not 0 <= settings.guesses <= \
      settings.m:
    raise errors.ConfigError(f"audit.canaries.guesses must be 0 (every k, corrected) or 1..audit.canaries.m "
                             f"({settings.m}), got {settings.guesses!r}")


config_sections.register("audit.canaries", "one-run auditing with canaries: the canaries protocol "
                                           "(experiments/canaries.py)", {
    "m": (256, "canaries, each included in training with probability 1/2 (unused training images)"),
    "kind": ("mislabel", "mislabel (a seeded wrong label) | noise (a uniform-noise image, a seeded label)"),
    "guesses": (0, "k: guess 'in' for the k highest-scoring canaries, abstain on the rest (0: every k, Bonferroni)"),
}, validate=validate)

reserved.RESERVATIONS.register(PROTOCOL, reserved.Reservation(draw=draw_ids))
