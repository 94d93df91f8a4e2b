"""ResNet-18/34/50 in Flax linen, after the Flax ImageNet example, with a CIFAR or an ImageNet stem.

No hyper-parameters beyond the architecture and no pmap axis names: under `jax.jit` with a batch sharded over a mesh,
BatchNorm's batch statistics are computed over the global batch (like PyTorch's SyncBatchNorm), which is what a
single-device PyTorch run of the paper computes too.

Parameter paths are readable on purpose, because pruning rules are regexes over them:
`stem_conv/kernel`, `stage2_block0/conv1/kernel`, `stage2_block0/proj_conv/kernel`, `head/kernel`.

`padding="same"` (the default, XLA's SAME) pads a stride-2 3x3 convolution of an even-sized input by 0 pixels before
and 1 after; PyTorch's `padding=1` pads 1 on both sides, so the same weights compute a shifted function.
`padding="torch"` pads every k x k convolution by k // 2 on both sides as PyTorch does, so that a converted PyTorch
model (`models/torch_convert.py`) gives the same logits; the two train alike (docs/reproduction.md).

`norm="batch"` (the default, the paper's) normalises with BatchNorm; `norm="group"` with GroupNorm (Wu & He 2018),
which has no batch statistics, so each example's output depends on that example alone, as per-example gradient
clipping (DP-SGD, defences/dp_sgd.py) needs. Each GroupNorm layer has gcd(norm_groups, channels) groups: 16 by
default (the choice of De et al. 2022 for DP-SGD ResNets), every channel count of configs/ at widths 1 to 1/4 is a
multiple of 16; fewer groups where a layer has fewer channels (width 1/8: 8 in the first stage). The parameters keep
BatchNorm's names and shapes (`stage1_block0/bn1/scale`), and `batch_stats` is empty.
"""
import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mialth_jax import errors

ModuleDef = Any
# torchvision's ResNet initialisation (kaiming normal, fan_out), so our w0 is distributed like the paper's.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(nn.Module):
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides), name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.filters, (3, 3), name="conv2")(y)
    y = self.norm(name="bn2")(y)
    if x.shape != y.shape:
      x = self.conv(self.filters, (1, 1), (self.strides, self.strides), name="proj_conv")(x)
      x = self.norm(name="proj_bn")(x)
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm(name="bn1")(self.conv(self.filters, (1, 1), name="conv1")(x)))
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides), name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.norm(name="bn3")(self.conv(self.filters * 4, (1, 1), name="conv3")(y))
    if x.shape != y.shape:
      x = self.conv(self.filters * 4, (1, 1), (self.strides, self.strides), name="proj_conv")(x)
      x = self.norm(name="proj_bn")(x)
    return nn.relu(x + y)


def torch_padded_conv(features, kernel_size, strides=(1, 1), padding=None, **kwargs) -> nn.Conv:
  """A convolution padded k // 2 on both sides of each spatial axis (unless given), as PyTorch's ResNets are."""
  padding = [(k // 2, k // 2) for k in kernel_size] if padding is None else padding
  return nn.Conv(features, kernel_size, strides, padding=padding, **kwargs)


def stage_channels(width_multiplier: float, num_stages: int) -> tuple[int, ...]:
  """Channels of each stage: round(64 * 2**k * width) in stage k (at least 1), the stem's those of stage 0.

  Each stage rounds on its own, so a width off the 1/64 grid gives a network between two on it: the narrow control
  (lottery/narrow.py) needs that resolution to match a ticket's size. On the grid (1, 1/4, 1/8, 1/16: the widths of
  configs/) stage k has 2**k times stage 0's channels, as when only stage 0 was rounded.
  """
  return tuple(max(1, round(64 * 2**k * width_multiplier)) for k in range(num_stages))


class GroupNorm(nn.Module):
  """GroupNorm with gcd(groups, channels) groups, so every channel count has a valid split; its scale and bias are
  this module's own (shared scope), at the paths BatchNorm's would have."""
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    norm = nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]), epsilon=1e-5, dtype=self.dtype)
    nn.share_scope(self, norm)
    return norm(x)


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  block_cls: Callable
  num_classes: int
  stem: str = "cifar"
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  padding: str = "same"
  norm: str = "batch"
  norm_groups: int = 16

  @nn.compact
  def __call__(self, x, train: bool = False):
    common = dict(use_bias=False, dtype=self.dtype, kernel_init=conv_init)
    conv = (functools.partial(nn.Conv, padding="SAME", **common) if self.padding == "same" else
            functools.partial(torch_padded_conv, **common))
    norm = (functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                              dtype=self.dtype) if self.norm == "batch" else
            functools.partial(GroupNorm, groups=self.norm_groups, dtype=self.dtype))
    channels = stage_channels(self.width_multiplier, len(self.stage_sizes))
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = conv(channels[0], (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    elif self.stem == "cifar":
      x = nn.relu(norm(name="stem_bn")(conv(channels[0], (3, 3), name="stem_conv")(x)))
    else:
      raise errors.ConfigError(f"model.stem={self.stem!r} is unknown; expected one of {', '.join(STEMS)}")
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = self.block_cls(channels[stage], strides, conv, norm, name=f"stage{stage + 1}_block{block}")(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


ARCHITECTURES = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
STEMS = ("cifar", "imagenet")
PADDINGS = ("same", "torch")
NORMS = ("batch", "group")


def create_model(name: str, num_classes: int, stem: str = "cifar", width_multiplier: float = 1.0,
                 dtype: str = "float32", padding: str = "same", norm: str = "batch", norm_groups: int = 16) -> ResNet:
  """Builds a ResNet from config values; unknown names are errors that list the known ones."""
  if name not in ARCHITECTURES:
    raise errors.ConfigError(f"model.name={name!r} is unknown; expected one of {', '.join(ARCHITECTURES)}")
  if dtype not in DTYPES:
    raise errors.ConfigError(f"model.dtype={dtype!r} is unknown; expected one of {', '.join(DTYPES)}")
  if stem not in STEMS:
    raise errors.ConfigError(f"model.stem={stem!r} is unknown; expected one of {', '.join(STEMS)}")
  if padding not in PADDINGS:
    raise errors.ConfigError(f"model.padding={padding!r} is unknown; expected one of {', '.join(PADDINGS)}")
  if norm not in NORMS:
    raise errors.ConfigError(f"model.norm={norm!r} is unknown; expected one of {', '.join(NORMS)}")
  if isinstance(norm_groups, bool) or not isinstance(norm_groups, int) or norm_groups < 1:
    raise errors.ConfigError(f"model.norm_groups must be a whole number >= 1, got {norm_groups!r}")
  if not width_multiplier > 0:
    raise errors.ConfigError(f"model.width_multiplier must be > 0, got {width_multiplier}")
  return ResNet(num_classes=num_classes, stem=stem, width_multiplier=width_multiplier, dtype=DTYPES[dtype],
                padding=padding, norm=norm, norm_groups=norm_groups, **ARCHITECTURES[name])


def from_config(model, num_classes: int, width_multiplier: float | None = None) -> ResNet:
  """The network of a config's `model` section (at another width if given); fields that a recorded run's config
  predates (padding, norm, norm_groups) take their defaults."""
  return create_model(model.name, num_classes, model.stem,
                      model.width_multiplier if width_multiplier is None else width_multiplier, model.dtype,
                      model.get("padding", "same"), model.get("norm", "batch"), model.get("norm_groups", 16))
