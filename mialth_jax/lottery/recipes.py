"""Training recipes: how each kind of model of a run is made. One class plus one `RECIPES.register` per recipe.

A recipe says which models it adds to a run (`plan`), and for each: its mask, its starting point, its first step,
its loss, its loop settings (e.g. its own batch selection), the checks of its settings against the run's data, what
its summary.json adds, and its extra training state (`extra`: the slots of the train-step hooks it turns on,
lottery/step_hooks.py, e.g. a second network trained alongside). The pipeline runs every recipe through the same loop
and the one train step; recipes that share a loss share its compilation. A way of pruning is a recipe plus a
`lottery.method` name in `METHOD_RECIPES`; a way of choosing the weights to remove from trained ones is a
`lottery.rule` in `masks.RULES`; it plans its models when lottery.method names it or lottery.controls lists it
(`selected`: several side by side). A recipe whose mask reads only one model's own seed, w0, members and finished
models (`OwnMask`) can be repeated on other models trained like the run's (reference models side by side).

  dense          the unpruned model, trained from w0
  ticket         one-shot lottery ticket (Bagmar et al.'s Algorithm 1): prune the trained dense model by magnitude,
                 rewind the survivors to w0 (or to the late-rewind point), retrain with the mask held
  imp            iterative magnitude pruning: round r prunes round r-1's survivors, then rewinds
  random_prune   control: a ticket's per-layer counts, positions drawn at random, rewound to w0
  random_reinit  control: a ticket's mask on a fresh random initialisation
"""
import dataclasses

import jax
import ml_collections

from mialth_jax import errors
from mialth_jax.lottery import masks, own_model
from mialth_jax.lottery import train as train_lib
from mialth_jax.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One model to train: its recipe (`kind`), and how its mask is made and where its weights start."""
  name: str
  kind: str                 # the recipe's name in RECIPES
  sparsity: float = 0.0
  mask_from: str = ""       # the finished model whose weights (and mask) are pruned
  rule: str = ""
  init: str = "rewind"      # rewind (w0 or the late-rewind point) | reinit (a fresh random init) | trained
  options: tuple = ()       # a recipe's own settings as (name, value) pairs, e.g. (("lambda", 1.0),)

  def option(self, name: str):
    """The value of one of `options` (a KeyError names a recipe bug: plans set the options their recipe reads)."""
    return dict(self.options)[name]


def sparsity_tag(sparsity: float) -> str:
  return f"s{sparsity * 100:g}"


class Recipe:
  """The defaults: a dense mask, w0 as the start, step 0, cross-entropy, no extra state."""
  loss = staticmethod(train_lib.cross_entropy)

  def plan(self, config: ml_collections.ConfigDict, planned: list[ModelSpec]) -> list[ModelSpec]:
    """The models this recipe adds to a run, given those planned before it (each after the model it prunes)."""
    return []

  def mask(self, ctx, spec: ModelSpec) -> dict:
    return ctx.dense_mask()

  def start(self, ctx, spec: ModelSpec) -> dict:
    """Unmasked starting {params, batch_stats}; the pipeline applies the mask inside jit."""
    return ctx.restore_variables(ctx.layout.w0)

  def first_step(self, ctx, spec: ModelSpec) -> int:
    return 0

  def extra(self, ctx, spec: ModelSpec):
    """Initial `TrainState.extra`: {step-hook name: that hook's state} for the hooks this model trains with, or
    None (lottery/step_hooks.py)."""
    return None

  def loop_overrides(self, ctx, spec: ModelSpec) -> dict:
    """Changes to the train loop's settings for this model (`train.LoopConfig` fields)."""
    return {}

  def check(self, ctx, spec: ModelSpec) -> None:
    """Refuses (errors.ConfigError) settings that only the run's data can judge (e.g. against the number of
    members); called for every planned model before the first one trains."""

  def summary(self, ctx, spec: ModelSpec, steps: int) -> dict:
    """What this model's summary.json adds to the pipeline's fields, once it has trained to step `steps` (e.g. a
    private model's guarantee)."""
    return {}


RECIPES = Registry("training recipe")


class OwnMask(Recipe):
  """A recipe whose mask (`own_mask`) reads nothing of a model but its own seed, w0, members and finished models
  (own_model.OwnModel), and that starts from its w0 (first_step 0) or its rewind point (lottery.rewind_step)."""

  def own_mask(self, ctx, spec: ModelSpec, model: own_model.OwnModel) -> dict:
    raise NotImplementedError

  def mask(self, ctx, spec: ModelSpec) -> dict:
    return self.own_mask(ctx, spec, own_model.RunModel(ctx))


def rewind_path(ctx) -> str:
  """Where tickets rewind to: w0, or the late-rewind checkpoint saved during dense training."""
  return ctx.layout.rewind if ctx.config.lottery.rewind_step else ctx.layout.w0


def pruned_mask(ctx, spec: ModelSpec, prior: dict) -> dict:
  """`prior` pruned further to `spec.sparsity` by `spec.rule`, ranking the final weights of `spec.mask_from`."""
  params = ctx.restore_variables(ctx.layout.final(spec.mask_from))["params"]
  return masks.prune(jax.device_get(params), prior, spec.sparsity, spec.rule, seed=ctx.config.seed)


class Rewound(Recipe):
  """Starts from the rewind point (w0, or step lottery.rewind_step of dense training) at that step."""

  def start(self, ctx, spec: ModelSpec) -> dict:
    return ctx.restore_variables(rewind_path(ctx))

  def first_step(self, ctx, spec: ModelSpec) -> int:
    return ctx.config.lottery.rewind_step


class Pruned(Rewound, OwnMask):
  """Prunes the final weights of `spec.mask_from` to `spec.sparsity` by `spec.rule`, then rewinds. The pruning starts
  from the dense mask, or (`prunes_survivors`) from the mask of `spec.mask_from`, so only its survivors are ranked;
  random positions are drawn with the model's own seed."""
  prunes_survivors = False

  def own_mask(self, ctx, spec: ModelSpec, model: own_model.OwnModel) -> dict:
    prior = model.mask(spec.mask_from) if self.prunes_survivors else ctx.dense_mask()
    return masks.prune(model.final_params(spec.mask_from), prior, spec.sparsity, spec.rule, seed=model.seed)


class FromTrained(Recipe):
  """Starts from the final weights of the finished model `spec.mask_from` (fine-tuning after pruning: no rewind)."""

  def start(self, ctx, spec: ModelSpec) -> dict:
    return ctx.restore_variables(ctx.layout.final(spec.mask_from))


@RECIPES.register("dense")
class Dense(OwnMask):
  title = "dense"

  def own_mask(self, ctx, spec, model):
    return ctx.dense_mask()

  def plan(self, config, planned):
    return [ModelSpec("dense", "dense")]

  def loop_overrides(self, ctx, spec):
    """Late rewinding: dense training saves its state at lottery.rewind_step for the tickets to rewind to."""
    rewind_step = ctx.config.lottery.rewind_step
    return {"save_at_step": rewind_step if rewind_step else -1, "save_at_step_path": ctx.layout.rewind}


@RECIPES.register("ticket")
class OneShotTicket(Pruned):
  title = "lottery ticket"

  def plan(self, config, planned):
    if not selected(config, "ticket"):
      return []
    return [ModelSpec(f"ticket_{sparsity_tag(s)}", "ticket", s, "dense", config.lottery.rule)
            for s in config.lottery.sparsities]


@RECIPES.register("imp")
class IterativeTicket(Pruned):
  title = "lottery ticket (IMP)"
  prunes_survivors = True  # round r prunes round r-1's survivors

  def plan(self, config, planned):
    lottery = config.lottery
    if not selected(config, "imp"):
      return []
    return [ModelSpec(f"imp_r{r}", "imp", masks.imp_sparsity(lottery.imp_fraction, r),
                      "dense" if r == 1 else f"imp_r{r - 1}", lottery.rule) for r in range(1, lottery.imp_rounds + 1)]


# lottery.method -> the recipe that makes its pruned models; a module adding a way of pruning registers its method here
METHOD_RECIPES = Registry("pruning method")
METHOD_RECIPES.register("oneshot", "ticket", about="the paper's Algorithm 1")
METHOD_RECIPES.register("imp", "imp", about="iterative")


def selected(config: ml_collections.ConfigDict, kind: str) -> bool:
  """Whether a pruning method's recipe `kind` plans its models: lottery.method or lottery.controls names it."""
  return METHOD_RECIPES.get(config.lottery.method) == kind or kind in config.lottery.controls


def ticket_kinds() -> tuple[str, ...]:
  """The recipes whose models are the run's pruned models (tickets): those of every registered lottery.method. The
  report and the verdict compare them with dense; controls are made for them."""
  return tuple(METHOD_RECIPES.values())


def tickets(planned: list[ModelSpec]) -> list[ModelSpec]:
  """The lottery tickets among the planned models (the models that controls are made for)."""
  return [s for s in planned if s.kind in ticket_kinds()]


@RECIPES.register("random_prune")
class RandomPrune(Pruned):
  title = "random pruning (control)"

  def plan(self, config, planned):
    return [ModelSpec(f"random_prune_{sparsity_tag(t.sparsity)}", "random_prune", t.sparsity, "dense", "random")
            for t in tickets(planned)]


@RECIPES.register("random_reinit")
class RandomReinit(Rewound):
  title = "random reinitialisation (control)"

  def plan(self, config, planned):
    return [ModelSpec(f"random_reinit_{sparsity_tag(t.sparsity)}", "random_reinit", t.sparsity, t.name, "same",
                      "reinit") for t in tickets(planned)]

  def mask(self, ctx, spec):
    return ctx.load_mask(spec.mask_from)

  def start(self, ctx, spec):
    return ctx.init_variables(ctx.config.seed + 1)


CONTROLS = ("random_prune", "random_reinit")


def check_planned(config: ml_collections.ConfigDict, names, field: str) -> None:
  """Refuses, naming `field`, model names that the config's recipes do not plan."""
  planned = [spec.name for spec in plan(config)]
  unknown = [name for name in names if name not in planned]
  if unknown:
    raise errors.ConfigError(f"{field}: {', '.join(unknown)} not among this run's models ({', '.join(planned)})")


def plan(config: ml_collections.ConfigDict) -> list[ModelSpec]:
  """The models a config asks for, in training order: dense, the method's tickets, then each recipe of
  `lottery.controls` (any registered recipe, another method's too) in order; two models of one name are refused."""
  specs, method = [], METHOD_RECIPES.lookup(config.lottery.method, "lottery.method")
  for kind in dict.fromkeys(("dense", method, *config.lottery.controls)):  # a recipe listed twice plans once
    specs += RECIPES.lookup(kind, "lottery.controls")().plan(config, specs)
  names = [s.name for s in specs]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise errors.ConfigError(f"lottery.controls: {', '.join(twice)} would be planned twice (random_prune and "
                             "random_reinit name theirs by sparsity: list them before other pruning methods)")
  return specs

