"""The Python API: a finished run's models as functions of images, its member split, and attacks on any logits.

  import numpy as np
  import mialth_jax

  run = mialth_jax.load_run("runs/default")       # read-only: nothing is written into the run folder
  dense, ticket = run.model("dense"), run.model("ticket_s80")
  logits = dense(run.images(run.test))            # raw uint8 images in: normalisation is part of the model
  print((logits.argmax(1) == run.labels(run.test)).mean(), dense.summary["test_accuracy"])   # the same number
  ticket.mask                                     # bool pytree like ticket.params: False where a weight was pruned

  ids = np.concatenate([run.members, run.test])
  is_member, logits, labels = np.isin(ids, run.members), dense(run.images(ids)), run.labels(ids)
  fit = np.random.default_rng(0).permutation(len(ids)) < len(ids) // 2       # half to fit, half to evaluate
  metrics = mialth_jax.attack_logits(logits[fit], labels[fit], is_member[fit],
                                     logits[~fit], labels[~fit], is_member[~fit], attack="threshold_loss")
  metrics["roc_auc"], metrics["roc_auc_ci"], metrics["tpr_at_fpr_0.01"]

Examples are named by global ids (data.examples): train-split indices first, then test-split indices shifted by the
train split's size. A model is the run's own `attacks.target.Target` (its checkpoint, its mean / std, eval-mode
BatchNorm, the exact sharded forward pass of `inference`), so its logits are those the run's attacks saw.
"""
import dataclasses
import functools
import os

import ml_collections
import numpy as np

from mialth_jax import inference, plugins
from mialth_jax.attacks import registry
from mialth_jax.attacks.inputs import AttackError, AttackInputs
from mialth_jax.attacks.target import Target
from mialth_jax.data.base import DataError
from mialth_jax.data.examples import ExampleSource
from mialth_jax.experiments import targets
from mialth_jax.layout import RunLayout
from mialth_jax.lottery import context as context_lib
from mialth_jax.utils import checkpoint, io


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """A trained model of a run: `model(uint8 images [N, H, W, C]) -> float32 logits [N, C]`.

  `variables` ({params, batch_stats}) are the final checkpoint's, replicated over the devices; training kept pruned
  weights at exact zeros, so `params` needs no masking. `mask` is the stored mask: a bool array on each prunable leaf
  (False: pruned), a scalar True on the others (BatchNorm, biases), so `jax.tree.map(f, params, mask)` works as is.
  """
  name: str
  summary: dict = dataclasses.field(repr=False)   # its summary.json: kind, sparsity, test / train accuracy, ...
  mask: dict = dataclasses.field(repr=False)
  target: Target = dataclasses.field(repr=False)

  @property
  def variables(self) -> dict:
    return self.target.variables

  @property
  def params(self) -> dict:
    return self.target.variables["params"]

  def __call__(self, images) -> np.ndarray:
    """Logits of `images` (uint8, as `Run.images` gives them), batched and sharded over every device, in order."""
    t, images = self.target, np.asarray(images)
    shape = tuple(t.source.dataset.image_shape)
    if images.dtype != np.uint8 or images.shape[1:] != shape:
      raise DataError(f"images: expected uint8 images of shape [N, {', '.join(map(str, shape))}] (as Run.images "
                      f"gives them; the model normalises them itself), got {images.dtype} {images.shape}")
    if not len(images):
      return np.zeros((0, t.model.num_classes), np.float32)
    logits_fn = inference.make_logits_fn(t.model, t.mean, t.std, t.mesh)
    return inference.predict_logits(logits_fn, t.variables, images, np.arange(len(images)), t.batch_size, t.mesh)


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """A run folder, read-only: its config, finished models, member split and attack results."""
  context: context_lib.Context
  attacks: list        # attacks/summary.json: one metrics dict per protocol, size, model pair and attack ([]: none)

  def __repr__(self) -> str:
    return f"Run({self.workdir!r}, models={list(self.models)})"

  @property
  def workdir(self) -> str:
    return self.context.workdir

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.context.config

  @functools.cached_property
  def models(self) -> dict[str, dict]:
    """{name: summary.json} of every finished model, dense first."""
    return self.context.layout.summaries()

  @property
  def num_examples(self) -> int:
    return len(self.context.dataset.y_train) + len(self.context.dataset.y_test)

  # Global ids of the member split (splits.npz).
  members = property(lambda self: self.context.splits.members)           # the training images the models saw
  unused_train = property(lambda self: self.context.splits.unused_train)  # training images never trained on
  test = property(lambda self: self.context.splits.test + len(self.context.dataset.y_train))

  @property
  def nonmembers(self) -> np.ndarray:
    """Every example no model of the run trained on: the unused training images and the test images."""
    return np.concatenate([self.unused_train, self.test])

  def images(self, ids) -> np.ndarray:
    """uint8 images [N, H, W, C] of the global ids `ids`, in order (not normalised: models do that)."""
    return self._source[self._check_ids(ids)]

  def labels(self, ids) -> np.ndarray:
    """int32 labels of the global ids `ids`, in order."""
    return self._source.labels(self._check_ids(ids))

  def model(self, name: str) -> Model:
    """The finished model `name` ("dense", "ticket_s80", ...: a key of `models`)."""
    if name not in self.models:
      raise checkpoint.CheckpointError(f"{self.context.layout.model_dir(name)}: no finished model there; finished: "
                                       f"{', '.join(self.models) or 'none'}")
    # model_target only reads: its output cache is written by `Target.outputs`, which Model never calls.
    target = targets.model_target(self.context, name)
    target.variables  # pylint: disable=pointless-statement  (read now: a damaged checkpoint fails here, not later)
    return Model(name, self.models[name], self.context.load_mask(name), target)

  @functools.cached_property
  def _source(self) -> ExampleSource:
    return ExampleSource(self.context.dataset)

  def _check_ids(self, ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):  # np.asarray([]) is float
      raise DataError(f"ids: expected a 1-D array of integer example ids, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= self.num_examples):
      raise DataError(f"ids: example ids lie in [0, {self.num_examples}), got [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def load_run(workdir: str) -> Run:
  """The run in `workdir` (as `launch.main --workdir` made it); reads its files and writes nothing there."""
  plugins.load()
  context = targets.open_run(workdir, "load_run")
  summary = RunLayout(workdir).attacks_summary
  return Run(context, io.read_json(summary) if os.path.exists(summary) else [])


def _attack_inputs(part: str, logits, labels, is_member) -> tuple[AttackInputs, np.ndarray]:
  """AttackInputs and bool membership of one part ("train" / "test"); errors name the argument."""
  try:
    inputs = AttackInputs.from_logits(np.asarray(logits), np.asarray(labels))
  except AttackError as e:
    raise AttackError(f"{part}_logits / {part}_labels: {e}") from e
  is_member = np.asarray(is_member)
  if is_member.shape != (len(inputs),) or not np.isin(is_member, (0, 1)).all():
    raise AttackError(f"{part}_is_member: expected {len(inputs)} bools (one per row of {part}_logits), got "
                      f"{is_member.dtype} {is_member.shape}")
  is_member = is_member.astype(bool)
  if is_member.all() or not is_member.any():
    raise AttackError(f"{part}_is_member: needs members and non-members, got {int(is_member.sum())} members of "
                      f"{len(is_member)}")
  return inputs, is_member


def attack_logits(train_logits, train_labels, train_is_member, test_logits, test_labels, test_is_member,
                  attack: str = "threshold_loss", *, num_bootstrap: int = 1000, bootstrap_seed: int = 0,
                  **options) -> dict:
  """Fits the attack `attack` (an `attacks.registry.ATTACKS` type) on the train part's logits [N, C], labels [N]
  and membership [N], and returns its metrics on the test part: accuracy, precision, recall, F1, ROC AUC, advantage,
  TPR at 0.1 % / 1 % FPR, 95 % bootstrap intervals (`*_ci`), per-class accuracy.

  `options` are the attack's own (e.g. per_class=True, or hidden=(64,) for optax_mlp); the result is
  `registry.run_attack`'s, which also gives per-example scores.
  """
  plugins.load()
  train, train_member = _attack_inputs("train", train_logits, train_labels, train_is_member)
  test, test_member = _attack_inputs("test", test_logits, test_labels, test_is_member)
  if train.num_classes != test.num_classes:
    raise AttackError(f"test_logits: {test.num_classes} classes, but train_logits has {train.num_classes}")
  metrics, _ = registry.run_attack({"type": attack, **options}, train, train_member, test, test_member,
                                   num_bootstrap=num_bootstrap, seed=bootstrap_seed)
  return metrics
