"""What every model of a run shares, built once per launch: data, member split, network, mesh, optimiser, and the
compiled functions (the train step is compiled once per run and recipe loss, not once per model)."""
import dataclasses
import functools

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from mialth_jax import errors, inference, run_dir
from mialth_jax.data import load_dataset, splits as splits_lib
from mialth_jax.data.examples import ExampleSource
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import stop_at as stop_at_lib, masks
from mialth_jax.lottery import train as train_lib
from mialth_jax.lottery import train_state as state_lib
from mialth_jax.models import resnet
from mialth_jax.utils import checkpoint


@dataclasses.dataclass
class Context:
  """Everything the models of one run share."""
  config: ml_collections.ConfigDict
  layout: RunLayout
  dataset: object
  splits: splits_lib.Splits
  model: resnet.ResNet
  mesh: jax.sharding.Mesh
  data: train_lib.TrainData
  total_steps: int
  steps_per_epoch: int
  variable_shapes: dict
  tx: object = None
  log_prefix: str = ""      # before model names in progress lines (a protocol's own run folder, e.g. "x_n898/")
  _jitted: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def workdir(self) -> str:
    return self.layout.workdir

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def abstract_variables(self):
    """Target tree for restoring {params, batch_stats}, replicated over the mesh."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
                        self.variable_shapes)

  def restore_variables(self, path: str) -> dict:
    """{params, batch_stats} of the checkpoint at `path`, replicated over the mesh."""
    return checkpoint.restore(path, self.abstract_variables())

  def dense_mask(self) -> dict:
    """The all-ones mask of the config's prunable weights (numpy)."""
    lottery = self.config.lottery
    is_prunable = masks.prunable_predicate(lottery.prunable, lottery.keep_first_conv, lottery.keep_classifier)
    return masks.dense_mask(self.variable_shapes["params"], is_prunable)

  def load_mask(self, name: str) -> dict:
    """The mask of the finished model `name` (numpy)."""
    return jax.device_get(checkpoint.restore(self.layout.mask(name), self.dense_mask()))

  def init_variables(self, seed: int) -> dict:
    """Fresh {params, batch_stats} from `seed`, replicated over the mesh."""
    variables = self.compiled("init", lambda: jax.jit(
        lambda key: self.model.init(key, np.zeros((1, *self.dataset.image_shape), np.uint8)),
        out_shardings=self.replicated))(jax.random.PRNGKey(seed))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}  # {}: GroupNorm

  def loop(self, name: str = "", **overrides) -> train_lib.LoopConfig:
    """The train loop's settings for model `name`; the fields the train step reads are the same for every model."""
    train = self.config.train
    return train_lib.LoopConfig(
        name=self.log_prefix + name, seed=self.config.seed, total_steps=self.total_steps,
        steps_per_epoch=self.steps_per_epoch,
        batch_size=train.batch_size, augment=self.config.data.augment,
        eval_every_steps=max(1, int(round(train.eval_every_epochs * self.steps_per_epoch))),
        log_every_steps=max(1, train.log_every_steps), checkpoint_every_steps=self.config.checkpoint_every_steps,
        eval_batch_size=self.config.attacks.batch_size, stop_at=stop_at_lib.parse(train.get("stop_at", "")),
        keep_every_steps=train.get("keep_every_epochs", 0) * self.steps_per_epoch,
        keep_dir=self.layout.kept(name) if name else "", **overrides)

  def train_step(self, loss_fn=train_lib.cross_entropy):
    """The jitted train step for a recipe's loss, compiled on first use, then reused (it is traced again only for a
    model whose `TrainState.extra` turns other step hooks on)."""
    return self.compiled(("step", loss_fn), lambda: train_lib.make_jitted_step(
        self.model, self.tx, self.loop(), self.data, self.mesh,
        step_fn=functools.partial(train_lib.train_step, loss_fn=loss_fn)))

  def start_state(self, variables: dict, mask, first_step: int, extra=None) -> state_lib.TrainState:
    """The train state at `first_step`: parameters masked and optimiser state built inside one jitted call."""
    start = self.compiled("start", lambda: jax.jit(
        lambda v, m, step, e: state_lib.create_state(masks.apply_mask(v["params"], m), v["batch_stats"], m,
                                                     self.tx, step, e),
        out_shardings=self.replicated))
    return start(variables, mask, np.int32(first_step), extra)

  @property
  def logits_fn(self):
    return inference.make_logits_fn(self.model, self.data.mean, self.data.std, self.mesh)

  def compiled(self, key, build):
    """`build()`'s result (a compiled function, or arrays put on device), made once per run and `key`."""
    if key not in self._jitted:
      self._jitted[key] = build()
    return self._jitted[key]


def channel_stats(dataset) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of the train split in [0, 1] (ImageNet's published values when streamed)."""
  if not dataset.in_memory:
    return np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
  x = dataset.x_train.reshape(-1, dataset.image_shape[-1]).astype(np.float64) / 255.0
  return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-3).astype(np.float32)


def build(config: ml_collections.ConfigDict, layout: RunLayout, dataset, splits: splits_lib.Splits,
          for_training: bool = True) -> Context:
  """The context of a run whose data and member split are known; reads and writes nothing in the run folder.

  for_training=False (reading a finished run) skips the checks that only training needs (the batch must divide over
  this machine's devices; inference pads its batches for any device count).
  """
  model = resnet.from_config(config.model, dataset.num_classes)
  total_steps, steps_per_epoch = state_lib.num_train_steps(config.train, len(splits.members))
  if config.lottery.rewind_step >= total_steps:
    raise errors.ConfigError(f"lottery.rewind_step={config.lottery.rewind_step} must be below the {total_steps} "
                             "train steps")
  mesh = inference.make_mesh()
  if for_training and config.train.batch_size % mesh.size:
    raise errors.ConfigError(f"train.batch_size={config.train.batch_size} is not a multiple of the {mesh.size} "
                             "devices")
  mean, std = channel_stats(dataset)
  data = train_data(dataset, splits.members, mean, std, NamedSharding(mesh, P()))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, *dataset.image_shape), np.uint8)))
  tx = state_lib.make_optimizer(config.train, total_steps, steps_per_epoch)
  return Context(config, layout, dataset, splits, model, mesh, data, total_steps, steps_per_epoch,
                 {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}, tx)


def setup(config: ml_collections.ConfigDict, workdir: str, dataset=None,
          splits: splits_lib.Splits | None = None) -> Context:
  """Loads data, builds the context, checks the config against the workdir and records config.json / splits.npz.

  `splits` overrides the config's member draw (`splits_lib.draw`; a protocol's own models may train on members it
  chooses).
  """
  dataset = dataset or load_dataset(config.data)
  layout = RunLayout(workdir)
  splits = splits or splits_lib.draw(config, dataset)
  ctx = build(config, layout, dataset, splits)
  writes = jax.process_index() == 0  # the one process that writes JSON and npz files
  run_dir.prepare(config, workdir, write=writes)
  splits_lib.record(layout.splits, splits, write=writes)
  return ctx


class MemberSource:
  """Streamed members: `source[positions]` reads the images of members[positions] (global ids)."""

  def __init__(self, images, members: np.ndarray):
    self.images = images
    self.members = members

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
