"""The lottery pipeline: w0 -> dense -> prune -> rewind -> retrain, for every requested ticket and control.

Each model is a phase that returns at once if its `summary.json` exists and resumes from its latest checkpoint
otherwise. Every ticket starts from parameters read back from the Orbax checkpoint of w0 (or of the late-rewind point),
never from a live buffer: the train step donates its input, so live copies of w0 would be deleted anyway.
"""
import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from mialth_jax import config_lib, inference, run_dir
from mialth_jax.data import load_dataset, splits as splits_lib
from mialth_jax.data.examples import ExampleSource
from mialth_jax.lottery import checkpoint, masks
from mialth_jax.lottery import train as train_lib
from mialth_jax.lottery import train_state as state_lib
from mialth_jax.models import resnet
from mialth_jax.utils import io


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One model to train: how its mask is made and where its weights start."""
  name: str
  kind: str                 # dense | ticket | imp | random_prune | random_reinit
  sparsity: float = 0.0
  mask_from: str = ""       # the finished model whose weights (and mask) are pruned
  rule: str = ""
  init: str = "rewind"      # rewind (w0 or the late-rewind point) | reinit (a fresh random init)


def sparsity_tag(sparsity: float) -> str:
  return f"s{sparsity * 100:g}"


def plan(lottery: ml_collections.ConfigDict) -> list[ModelSpec]:
  """The models a config asks for, in training order (each after the model it prunes)."""
  specs = [ModelSpec("dense", "dense")]
  if lottery.method == "oneshot":
    tickets = [ModelSpec(f"ticket_{sparsity_tag(s)}", "ticket", s, "dense", lottery.rule)
               for s in lottery.sparsities]
  else:
    tickets = [ModelSpec(f"imp_r{r}", "imp", masks.imp_sparsity(lottery.imp_fraction, r),
                         "dense" if r == 1 else f"imp_r{r - 1}", lottery.rule)
               for r in range(1, lottery.imp_rounds + 1)]
  specs += tickets
  for control in lottery.controls:
    for t in tickets:
      tag = sparsity_tag(t.sparsity)
      if control == "random_prune":
        specs.append(ModelSpec(f"random_prune_{tag}", "random_prune", t.sparsity, "dense", "random"))
      else:
        specs.append(ModelSpec(f"random_reinit_{tag}", "random_reinit", t.sparsity, t.name, "same", "reinit"))
  return specs


@dataclasses.dataclass
class Context:
  """Everything the phases share, built once per launch."""
  config: ml_collections.ConfigDict
  workdir: str
  dataset: object
  splits: splits_lib.Splits
  model: resnet.ResNet
  mesh: jax.sharding.Mesh
  data: train_lib.TrainData
  total_steps: int
  steps_per_epoch: int
  variable_shapes: dict

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def abstract_variables(self):
    """Target tree for restoring {params, batch_stats}, replicated over the mesh."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
                        self.variable_shapes)


def channel_stats(dataset) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of the train split in [0, 1] (ImageNet's published values when streamed)."""
  if not dataset.in_memory:
    return np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
  x = dataset.x_train.reshape(-1, dataset.image_shape[-1]).astype(np.float64) / 255.0
  return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-3).astype(np.float32)


def setup(config: ml_collections.ConfigDict, workdir: str, dataset=None,
          splits: splits_lib.Splits | None = None) -> Context:
  """Loads data, records the member split, builds the model and mesh, and checks the config against the workdir.

  `splits` overrides the config's member draw (shadow models train on members chosen by the attack protocol).
  """
  config_lib.validate(config)
  dataset = dataset or load_dataset(config.data)
  model = resnet.create_model(config.model.name, dataset.num_classes, config.model.stem,
                              config.model.width_multiplier, config.model.dtype)
  splits_path = os.path.join(workdir, "splits.npz")
  splits = splits or splits_lib.make_splits(len(dataset.y_train), len(dataset.y_test), config.data.num_train,
                                            config.seed)
  total_steps, steps_per_epoch = state_lib.num_train_steps(config.train, len(splits.members))
  if config.lottery.rewind_step >= total_steps:
    raise ValueError(f"lottery.rewind_step={config.lottery.rewind_step} must be below the {total_steps} train steps")
  mesh = inference.make_mesh()
  if config.train.batch_size % mesh.size:
    raise ValueError(f"train.batch_size={config.train.batch_size} is not a multiple of the {mesh.size} devices")
  run_dir.prepare(config, workdir)
  splits_lib.record(splits_path, splits, write=jax.process_index() == 0)
  mean, std = channel_stats(dataset)
  data = train_data(dataset, splits.members, mean, std, NamedSharding(mesh, P()))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, *dataset.image_shape), np.uint8)))
  return Context(config, workdir, dataset, splits, model, mesh, data, total_steps, steps_per_epoch,
                 {"params": shapes["params"], "batch_stats": shapes["batch_stats"]})


class MemberSource:
  """Streamed members: `source[positions]` reads the images of members[positions] (global ids)."""

  def __init__(self, images, members: np.ndarray):
    self.images, self.members = images, members

  def __len__(self) -> int:
    return len(self.members)

  def __getitem__(self, positions: np.ndarray) -> np.ndarray:
    return self.images[self.members[np.asarray(positions)]]


def train_data(dataset, members: np.ndarray, mean, std, replicated: NamedSharding) -> train_lib.TrainData:
  """Members (global ids) on device when the dataset is in memory, streamed from its source otherwise."""
  source = ExampleSource(dataset)
  labels = source.labels(members)
  common = dict(host_labels=labels, test_images=dataset.x_test, test_labels=dataset.y_test, mean=mean, std=std)
  if not dataset.in_memory:
    return train_lib.TrainData(images=None, labels=None, host_images=MemberSource(source, members), **common)
  images = source[members]
  return train_lib.TrainData(images=inference.global_array(images, replicated),
                             labels=inference.global_array(labels, replicated), host_images=images, **common)


def init_variables(ctx: Context, seed: int) -> dict:
  """Fresh {params, batch_stats} from `seed`, replicated over the mesh."""
  init = jax.jit(lambda key: ctx.model.init(key, np.zeros((1, *ctx.dataset.image_shape), np.uint8)),
                 out_shardings=ctx.replicated)
  variables = init(jax.random.PRNGKey(seed))
  return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def w0_path(workdir: str) -> str:
  return os.path.join(workdir, "w0")


def rewind_path(ctx: Context) -> str:
  """Where tickets rewind to: w0, or the late-rewind checkpoint saved during dense training."""
  if ctx.config.lottery.rewind_step:
    return os.path.join(ctx.workdir, "rewind")
  return w0_path(ctx.workdir)


def ensure_w0(ctx: Context) -> None:
  """Saves w0 (params + batch statistics at step 0) as its own Orbax checkpoint, once."""
  if not checkpoint.exists(w0_path(ctx.workdir)):
    checkpoint.save(w0_path(ctx.workdir), init_variables(ctx, ctx.config.seed))


def make_mask(ctx: Context, spec: ModelSpec) -> dict:
  """The mask of `spec` (numpy bool pytree), computed from the finished model it prunes."""
  lottery = ctx.config.lottery
  is_prunable = masks.prunable_predicate(lottery.prunable, lottery.keep_first_conv, lottery.keep_classifier)
  dense = masks.dense_mask(ctx.variable_shapes["params"], is_prunable)
  if spec.kind == "dense":
    return dense
  source = run_dir.model_dir(ctx.workdir, spec.mask_from)
  if spec.kind == "random_reinit":
    return load_mask(source, dense)
  params = checkpoint.restore(os.path.join(source, "final"), ctx.abstract_variables())["params"]
  prior = load_mask(source, dense) if spec.kind == "imp" else dense
  return masks.prune(jax.device_get(params), prior, spec.sparsity, spec.rule, seed=ctx.config.seed)


def load_mask(model_path: str, like: dict) -> dict:
  return jax.device_get(checkpoint.restore(os.path.join(model_path, "mask"), like))


def start_variables(ctx: Context, spec: ModelSpec, mask: dict) -> dict:
  """The model's starting {params, batch_stats}: restore(w0 or rewind point) masked, or a masked fresh init."""
  if spec.init == "reinit":
    variables = init_variables(ctx, ctx.config.seed + 1)
  else:
    variables = checkpoint.restore(
        w0_path(ctx.workdir) if spec.kind == "dense" else rewind_path(ctx), ctx.abstract_variables())
  return {"params": masks.apply_mask(variables["params"], mask), "batch_stats": variables["batch_stats"]}


def loop_config(ctx: Context, spec: ModelSpec) -> train_lib.LoopConfig:
  train = ctx.config.train
  rewind_step = ctx.config.lottery.rewind_step
  return train_lib.LoopConfig(
      name=spec.name, seed=ctx.config.seed, total_steps=ctx.total_steps, steps_per_epoch=ctx.steps_per_epoch,
      batch_size=train.batch_size, augment=ctx.config.data.augment,
      eval_every_steps=max(1, int(round(train.eval_every_epochs * ctx.steps_per_epoch))),
      log_every_steps=max(1, train.log_every_steps), checkpoint_every_steps=ctx.config.checkpoint_every_steps,
      eval_batch_size=ctx.config.attacks.batch_size,
      save_at_step=rewind_step if spec.kind == "dense" and rewind_step else -1,
      save_at_step_path=os.path.join(ctx.workdir, "rewind"))


def train_model(ctx: Context, spec: ModelSpec) -> dict:
  """Trains one model to completion (or resumes it) and writes its folder; returns its summary."""
  out = run_dir.model_dir(ctx.workdir, spec.name)
  summary_path = os.path.join(out, "summary.json")
  if os.path.exists(summary_path):
    logging.info("[%s] already finished", spec.name)
    return io.read_json(summary_path)
  started = time.time()
  mask = make_mask(ctx, spec)
  if not checkpoint.exists(os.path.join(out, "mask")):
    checkpoint.save(os.path.join(out, "mask"), mask)
  report = masks.sparsity_report(mask)
  io.write_json(os.path.join(out, "sparsity_report.json"), report)
  tx = state_lib.make_optimizer(ctx.config.train, ctx.total_steps, ctx.steps_per_epoch)
  device_mask = inference.global_array_tree(mask, ctx.replicated)
  start = start_variables(ctx, spec, device_mask)
  first_step = 0 if spec.kind == "dense" else ctx.config.lottery.rewind_step
  state = state_lib.create_state(start["params"], start["batch_stats"], device_mask, tx, first_step)
  logging.info("[%s] %s, sparsity %.4f (%d of %d prunable weights kept), steps %d..%d", spec.name, spec.kind,
               report["sparsity"], report["kept"], report["total"], first_step, ctx.total_steps)
  state, final_eval = train_lib.run_loop(state, ctx.model, tx, loop_config(ctx, spec), ctx.data, ctx.mesh, out,
                                         io.MetricsLog(os.path.join(out, "metrics.jsonl")))
  final_path = os.path.join(out, "final")
  if not checkpoint.exists(final_path):
    checkpoint.save(final_path, {"params": state.params, "batch_stats": state.batch_stats})
  summary = {"name": spec.name, "kind": spec.kind, "sparsity": report["sparsity"], "rule": spec.rule,
             "pruned_from": spec.mask_from, "init": spec.init, "rewind_step": ctx.config.lottery.rewind_step,
             "steps": ctx.total_steps, "devices": ctx.mesh.size, "platform": ctx.mesh.devices.flat[0].platform,
             "wall_seconds": time.time() - started, **final_eval}
  if jax.process_index() == 0:
    io.write_json(summary_path, summary)
  return summary


def log_model_size(ctx: Context) -> None:
  """Parameter count and forward FLOPs per image (XLA's cost analysis; 2 FLOPs per multiply-add)."""
  num_params = sum(x.size for x in jax.tree.leaves(ctx.variable_shapes["params"]))
  image = jax.ShapeDtypeStruct((1, *ctx.dataset.image_shape), np.uint8)
  lowered = jax.jit(lambda v, x: ctx.model.apply(v, x)).lower(ctx.variable_shapes, image)
  flops = (lowered.cost_analysis() or {}).get("flops", float("nan"))
  logging.info("model %s: %d parameters, %.3g forward FLOPs per image; %d members, %d test images, %d devices, "
               "%d steps (%d per epoch)", ctx.config.model.name, num_params, flops, len(ctx.splits.members),
               len(ctx.dataset.y_test), ctx.mesh.size, ctx.total_steps, ctx.steps_per_epoch)


def run_models(ctx: Context) -> dict:
  """Runs (or finishes) every phase of the lottery pipeline; returns {model name: summary}."""
  log_model_size(ctx)
  ensure_w0(ctx)
  summaries = {spec.name: train_model(ctx, spec) for spec in plan(ctx.config.lottery)}
  if jax.process_index() == 0:
    io.write_json(os.path.join(ctx.workdir, "lottery_summary.json"), summaries)
  for name, s in summaries.items():
    logging.info("%-22s sparsity %.3f  test acc %.4f  train acc %.4f", name, s["sparsity"], s["test_accuracy"],
                 s["train_accuracy"])
  return summaries


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`run_models` for a config and workdir (the lottery half of a launch, usable from Python)."""
  return run_models(setup(config, workdir))
