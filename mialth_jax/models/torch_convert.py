"""PyTorch ResNet-18/50 state dicts -> mialth_jax's Flax variables (`params` and `batch_stats`).

Two layouts are read, both with 1-based `layer1`..`layer4` stages and 0-based blocks:
- "torchvision": `torchvision.models.resnet18/50` (`conv1`, `bn1`, `layerS.B.downsample.{0,1}`, `fc`), with the
  ImageNet stem or the common CIFAR change (3x3 stride-1 `conv1`, no max-pool);
- "cifar": the CIFAR scripts after kuangliu/pytorch-cifar (`conv1`, `bn1`, `layerS.B.shortcut.{0,1}`, `linear`).
Convolutions go from (out, in, h, w) to (h, w, in, out), linear weights are transposed, BatchNorm's weight / bias /
running_mean / running_var become scale / bias and the batch statistics mean / var; `num_batches_tracked` is dropped,
as is a `module.` prefix (DataParallel). The model that uses the result needs `padding="torch"` (models/resnet.py)
to compute PyTorch's function: the stride-2 3x3 convolutions are padded differently under XLA's SAME.

Needs NumPy only: tensors are read through `.detach().cpu().numpy()` when they have it.
"""
import re

import numpy as np
from flax import traverse_util

from mialth_jax import errors

_STAGE = r"^layer(\d+)\.(\d+)\."
LAYOUTS = {
    "torchvision": ((r"^conv1\.", "stem_conv."), (r"^bn1\.", "stem_bn."), (r"^fc\.", "head."),
                    (_STAGE + r"downsample\.0\.", r"stage\1_block\2.proj_conv."),
                    (_STAGE + r"downsample\.1\.", r"stage\1_block\2.proj_bn."),
                    (_STAGE, r"stage\1_block\2.")),
    "cifar": ((r"^conv1\.", "stem_conv."), (r"^bn1\.", "stem_bn."), (r"^linear\.", "head."),
              (_STAGE + r"shortcut\.0\.", r"stage\1_block\2.proj_conv."),
              (_STAGE + r"shortcut\.1\.", r"stage\1_block\2.proj_bn."),
              (_STAGE, r"stage\1_block\2.")),
}
_BATCH_STATS = {"running_mean": "mean", "running_var": "var"}


def _numpy(value) -> np.ndarray:
  """A float32 copy: never the tensor's own memory, which JAX could reuse when it donates a buffer made from it."""
  if hasattr(value, "detach"):
    value = value.detach().cpu().numpy()
  return np.array(value, np.float32, copy=True)


def _flax_name(torch_name: str, layout: str) -> str:
  for pattern, replacement in LAYOUTS[layout]:
    if re.match(pattern, torch_name):
      return re.sub(pattern, replacement, torch_name)
  raise errors.ConfigError(f"state dict entry {torch_name!r} does not belong to a {layout}-layout ResNet")


def _leaf(module: str, attr: str, value: np.ndarray) -> tuple[tuple, np.ndarray]:
  """(collection, *module path, leaf name) and the value in Flax's layout."""
  path = tuple(module.split("."))
  if attr in _BATCH_STATS:
    return ("batch_stats", *path, _BATCH_STATS[attr]), value
  if attr == "bias":
    return ("params", *path, "bias"), value
  if attr != "weight":
    raise errors.ConfigError(f"state dict entry {module}.{attr} is not a ResNet parameter or buffer")
  if value.ndim == 4:
    return ("params", *path, "kernel"), value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    return ("params", *path, "kernel"), value.T
  return ("params", *path, "scale"), value


def flax_variables(state_dict, template, layout: str = "torchvision") -> dict:
  """The Flax variables {"params", "batch_stats"} of a PyTorch ResNet state dict, checked against `template` (the
  model's variables or their `jax.eval_shape`): every leaf filled, every shape equal, nothing left over."""
  if layout not in LAYOUTS:
    raise errors.ConfigError(f"layout={layout!r} is unknown; expected one of {', '.join(LAYOUTS)}")
  converted = {}
  for torch_name, value in state_dict.items():
    torch_name = torch_name.removeprefix("module.")
    if torch_name.endswith("num_batches_tracked"):
      continue
    module, attr = _flax_name(torch_name, layout).rsplit(".", 1)
    key, array = _leaf(module, attr, _numpy(value))
    converted[key] = array
  expected = traverse_util.flatten_dict({k: template[k] for k in ("params", "batch_stats")})
  missing = sorted(set(expected) - set(converted))
  extra = sorted(set(converted) - set(expected))
  if missing or extra:
    names = lambda keys: ", ".join("/".join(k) for k in keys[:3]) + (" ..." if len(keys) > 3 else "")  # noqa: E731
    raise errors.ConfigError(f"the state dict does not fit the model ({layout} layout): "
                             + "; ".join(f"{what} {names(keys)}" for what, keys in
                                         (("missing", missing), ("unexpected", extra)) if keys))
  for key, array in converted.items():
    if array.shape != tuple(expected[key].shape):
      raise errors.ConfigError(f"state dict entry for {'/'.join(key)} has shape {array.shape}; the model expects "
                               f"{tuple(expected[key].shape)}")
  return traverse_util.unflatten_dict(converted)
