"""The zoo protocol: attacks calibrated on many reference models (LiRA, Carlini et al. 2022; RMIA, Zarifzadeh et al.
2024), each model trained on exactly as many random examples of the dataset as the target's members, for the
target's steps (`lottery.zoo`).

A target model is attacked with the zoo of its own kind: dense with the dense zoo, a ticket with the zoo tickets of
its kind and sparsity (each zoo model pruned from its own dense model, or an IMP round from its own previous round,
and rewound to its own w0 or late-rewind point, as the target was), chosen by the summary.json fields (kind,
sparsity). The attack scores the target's outputs on attack-test under the zoo's queries (identity and flip); RMIA
compares with a population of attack-train non-members. Members are predicted by the attack's own rule (no threshold
is fitted on the target), so attack-train is used only as RMIA's population.

Then every zoo model is a target too (`zoo_targets`: leave-one-out over the zoo, on the pool, the run's
model joining as one more target): the model-level comparison of tickets with dense.
"""
import os

import numpy as np
from absl import logging

from mialth_jax import errors, layout as layout_lib
from mialth_jax.attacks import contracts, reference as reference_lib, registry
from mialth_jax.data import augment
from mialth_jax.data.examples import ExampleSource
from mialth_jax.experiments import attack_runs, fit_curves, zoo_targets
from mialth_jax.experiments.protocols import PROTOCOLS, Protocol
from mialth_jax.lottery import zoo_pipeline
from mialth_jax.utils import config_sections, io
from mialth_jax.utils.registry import Registry

# Features that decide the zoo's membership before it trains (its recorded shadows/zoo.json, keep.npy, seeds.npy and
# ids.npy, which lottery.zoo_pipeline then reads instead of drawing its own), in registration order: name -> fn(ctx).
BEFORE_TRAINING = Registry("zoo membership")

# Analyses of what the zoo stores, run in registration order after its leave-one-out targets and fit curves:
# name -> fn(ctx, zoo_summaries {kind: summary}, reference_of(kind) -> ReferenceOutputs, attack_configs) -> None.
AFTER_TARGETS = Registry("zoo analysis")


def reference_outputs(ctx, zoo_name: str) -> reference_lib.ReferenceOutputs:
  """The zoo of one kind as ReferenceOutputs (read from shadows/: logits [S, N, A, C], keep [S, N])."""
  layout = ctx.layout
  ids = np.load(layout.zoo("ids.npy"))
  return reference_lib.ReferenceOutputs(ids=ids, labels=ExampleSource(ctx.dataset).labels(ids),
                                        logits=np.load(layout.zoo(zoo_name, "logits.npy")),
                                        keep=np.load(layout.zoo("keep.npy")))


@PROTOCOLS.register("zoo")
class Zoo(Protocol):
  title = "zoo protocol (LiRA / RMIA, calibrated on reference models trained on random subsets of the data)"
  in_verdict = True

  def run(self, attack_run, models, attack_configs):
    configs = registry.of_contract(attack_configs, contracts.ReferenceAttack)
    if not configs:
      return {}
    ctx, layout = attack_run.ctx, attack_run.ctx.layout
    for decide in BEFORE_TRAINING.values():
      decide(ctx)
    zoo_summaries = zoo_pipeline.train_zoo(ctx)
    queries = tuple(ctx.config.zoo.queries)
    test_ids = attack_run.part("test")[0]
    train_ids, train_member = attack_run.part("train")
    population_ids = train_ids[~train_member]
    summaries = layout.summaries()
    source = ExampleSource(ctx.dataset)
    references = {}  # one ReferenceOutputs per zoo kind: phi of every pool example is computed once
    results = {}
    for name in models:
      matching = layout_lib.select(zoo_summaries, kind=summaries[name]["kind"], sparsity=summaries[name]["sparsity"])
      if not matching:
        logging.info("zoo protocol: no zoo of %s's kind (%s); not attacked", name, summaries[name]["kind"])
        continue
      if matching[0] not in references:
        references[matching[0]] = reference_outputs(ctx, matching[0])
      reference = references[matching[0]]
      target = attack_run.target(name)
      examples = (target.query_logits(test_ids, queries), source.labels(test_ids), reference.rows(test_ids))
      population = (target.query_logits(population_ids, queries), source.labels(population_ids),
                    reference.rows(population_ids))
      for attack_name, attack_config in configs.items():
        json_path, _ = layout.result(attack_run.size, "zoo", name, name, attack_name)
        if not os.path.exists(json_path):
          attack = registry.make_attack(dict(attack_config)).fit_reference(reference)
          scores = attack.score_examples(*examples, population=population)
          rule = attack.decision_threshold  # the attack's own rule (predict_examples); None: a score-only attack
          fitted = attack_runs.Scored(scores, None if rule is None else scores > rule)
          attack_run.record("zoo", name, target, attack_name, attack_config, fitted, attack.fitted_settings)
        results[(name, name, attack_name)] = io.read_json(json_path)
    reference_of = lambda kind: references.get(kind) or reference_outputs(ctx, kind)  # noqa: E731
    zoo_targets.attack_all(attack_run, zoo_summaries, reference_of, configs)
    fit_curves.record_all(ctx, zoo_summaries, reference_of, configs)
    for analyse in AFTER_TARGETS.values():
      analyse(ctx, zoo_summaries, reference_of, configs)
    return results


def validate(config) -> None:
  """The zoo section, and that attacks calibrated on reference models run under the zoo protocol."""
  zoo = config.zoo
  calibrated = registry.of_contract(config.attacks.models.to_dict(), contracts.ReferenceAttack)
  if zoo.sparsities and config.lottery.method != "oneshot":
    raise errors.ConfigError(f"zoo.sparsities={tuple(zoo.sparsities)}: chooses among the one-shot tickets of "
                             f"lottery.sparsities; with lottery.method={config.lottery.method} the zoo trains every "
                             "round (each pruned from the one before): leave zoo.sparsities empty")
  for s in zoo.sparsities:
    if s not in config.lottery.sparsities:
      raise errors.ConfigError(f"zoo.sparsities: {s} is not one of lottery.sparsities "
                               f"{tuple(config.lottery.sparsities)}")
  if any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < zoo.num_models for k in zoo.reference_counts):
    raise errors.ConfigError(f"zoo.reference_counts: expected whole numbers in [1, zoo.num_models - 1 = "
                             f"{zoo.num_models - 1}], got {tuple(zoo.reference_counts)}")
  if isinstance(zoo.curve_every_epochs, bool) or not isinstance(zoo.curve_every_epochs, int) or \
      zoo.curve_every_epochs < 0:
    raise errors.ConfigError(f"zoo.curve_every_epochs: expected a whole number of epochs >= 0, got "
                             f"{zoo.curve_every_epochs!r}")
  if zoo.curve_every_epochs and ("identity" not in zoo.curve_queries or not set(zoo.curve_queries) <= set(zoo.queries)):
    raise errors.ConfigError(f"zoo.curve_queries={tuple(zoo.curve_queries)}: expected a subset of zoo.queries "
                             f"{tuple(zoo.queries)} holding 'identity' (the fit along training is read from it)")
  if zoo.curve_every_epochs and zoo.curve_attack not in calibrated:
    raise errors.ConfigError(f"zoo.curve_attack={zoo.curve_attack!r}: expected one of the attacks of attacks.models "
                             f"that learn from reference models ({', '.join(calibrated) or 'none configured'})")
  if zoo.num_models < 2 or any(q not in augment.QUERIES for q in zoo.queries):
    raise errors.ConfigError(f"zoo.num_models must be >= 2 and zoo.queries a subset of {', '.join(augment.QUERIES)}; "
                             f"got {zoo.num_models} and {tuple(zoo.queries)}")
  if config.train.stop_at and "zoo" in config.attacks.protocols:
    raise errors.ConfigError(f"train.stop_at={config.train.stop_at!r}: the zoo trains its models in one program for "
                             "the same steps; stop_at is not supported with the zoo protocol")
  if calibrated and "zoo" not in config.attacks.protocols:
    raise errors.ConfigError(f"attacks.models: {', '.join(calibrated)} learn from reference models and run only "
                             "under the zoo protocol; add 'zoo' to attacks.protocols")


config_sections.register("zoo", "reference models of the zoo protocol (LiRA, RMIA attacks)", {
    "num_models": (16, "S models, each on as many seeded random examples (of all) as the members"),
    "queries": (("identity", "flip"), "test-time queries of each image (augment.QUERIES)"),
    "sparsities": ((), "one-shot ticket zoos to train: a subset of lottery.sparsities (empty: all of them; "
                       "lottery.method=imp: every round)"),
    "curve_every_epochs": (0, "keep the zoo's weights and pool logits every this many epochs, for leakage along "
                              "training (experiments.fit_curves; 0: only the final ones)"),
    "curve_queries": (("identity",), "the queries of the pool logits kept at each curve step, and of every curve point "
                                      "(the final step's too: a subset of zoo.queries)"),
    "curve_attack": ("lira_fixed_var", "the reference attack (a name in attacks.models) that attacks every zoo model "
                                       "along training (zoo.curve_every_epochs > 0)"),
    "reference_counts": ((), "also attack each zoo model with only k random others as references, for each k here "
                             "(LiRA vs RMIA against the number of reference models; empty: not measured)"),
}, validate=validate)
