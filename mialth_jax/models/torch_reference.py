"""PyTorch ResNet-18/50 in the torchvision and the kuangliu/pytorch-cifar layouts, for parity checks against ours.

Needs torch (`pip install -e '.[torch]'`). The two layouts differ only in names (`downsample` / `fc` vs
`shortcut` / `linear`), which is what `torch_convert.LAYOUTS` reads. Channels are round(64 * 2**k * width) in stage k,
as in models/resnet.py (`resnet.stage_channels`); convolutions are initialised as torchvision does (kaiming normal,
fan_out), BatchNorm to scale 1 and bias 0, the classifier with PyTorch's default (uniform +-1/sqrt(fan_in)).

torch is imported on first use only (`ResNet`, `Block`, `to_nchw`), so this module imports without it.
"""
import functools

import numpy as np

from mialth_jax.models import resnet

_NAMES = {"torchvision": ("downsample", "fc"), "cifar": ("shortcut", "linear")}


@functools.cache
def _classes() -> dict:
  """{"Block": ..., "ResNet": ...}: the nn.Module classes, defined on first use (this imports torch)."""
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  def _conv_bn(in_channels: int, channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, channels, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(channels)]

  class Block(nn.Module):
    """BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1 to 4x channels), projected shortcut when the
    shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int, bottleneck: bool, shortcut_name: str):
      super().__init__()
      kernels = (1, 3, 1) if bottleneck else (3, 3)
      widths = (channels, channels, 4 * channels) if bottleneck else (channels, channels)
      strides = (1, stride, 1) if bottleneck else (stride, 1)
      previous = in_channels
      for i, (kernel, width, s) in enumerate(zip(kernels, widths, strides), 1):
        conv, bn = _conv_bn(previous, width, kernel, s)
        setattr(self, f"conv{i}", conv)
        setattr(self, f"bn{i}", bn)
        previous = width
      self.num_convs = len(kernels)
      self.shortcut_name = shortcut_name
      projected = stride != 1 or in_channels != previous
      setattr(self, shortcut_name, nn.Sequential(*(_conv_bn(in_channels, previous, 1, stride) if projected else [])))

    def forward(self, x):
      y = x
      for i in range(1, self.num_convs + 1):
        y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
        if i < self.num_convs:
          y = F.relu(y)
      return F.relu(y + getattr(self, self.shortcut_name)(x))

  class ResNet(nn.Module):
    """ResNet-18 (`bottleneck=False`) or -50 in `layout`'s names, with the CIFAR or the ImageNet stem."""

    def __init__(self, name: str, num_classes: int, layout: str = "torchvision", stem: str = "cifar",
                 width: float = 1.0, in_channels: int = 3):
      super().__init__()
      shortcut_name, self.head_name = _NAMES[layout]
      bottleneck, stage_sizes = {"resnet18": (False, (2, 2, 2, 2)), "resnet50": (True, (3, 4, 6, 3))}[name]
      stage_widths = resnet.stage_channels(width, len(stage_sizes))
      kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)
      self.conv1 = nn.Conv2d(in_channels, stage_widths[0], kernel, stride, kernel // 2, bias=False)
      self.bn1 = nn.BatchNorm2d(stage_widths[0])
      self.pool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
      channels = stage_widths[0]
      for stage, num_blocks in enumerate(stage_sizes):
        blocks = []
        for block in range(num_blocks):
          blocks.append(Block(channels, stage_widths[stage], 2 if stage > 0 and block == 0 else 1, bottleneck,
                              shortcut_name))
          channels = stage_widths[stage] * (4 if bottleneck else 1)
        setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
      setattr(self, self.head_name, nn.Linear(channels, num_classes))
      for module in self.modules():
        if isinstance(module, nn.Conv2d):
          nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
      x = self.pool(F.relu(self.bn1(self.conv1(x))))
      for stage in range(1, 5):
        x = getattr(self, f"layer{stage}")(x)
      return getattr(self, self.head_name)(x.mean((2, 3)))

  return {"Block": Block, "ResNet": ResNet}


def __getattr__(name: str):
  """`torch_reference.ResNet` and `.Block`: the classes, built (and torch imported) when first asked for."""
  if name in ("Block", "ResNet"):
    return _classes()[name]
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_nchw(images_nhwc, mean, std):
  """uint8 NHWC images (NumPy) -> float32 NCHW torch.Tensor (x / 255 - mean) / std, as augment.normalise computes in
  NHWC."""
  import torch  # pylint: disable=import-outside-toplevel

  x = (torch.from_numpy(np.array(images_nhwc)).float() / 255 - torch.as_tensor(mean)) / torch.as_tensor(std)
  return x.permute(0, 3, 1, 2).contiguous()
