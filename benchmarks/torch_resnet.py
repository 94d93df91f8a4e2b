"""The PyTorch eager baseline: mialth_jax's PyTorch ResNet-18 (models/torch_reference.py, CIFAR stem), its SGD train
step and input normalisation.

Same architecture, initialisation family and optimiser as mialth_jax's ResNet-18 (3x3 stride-1 stem, no max-pool,
1x1 projection shortcuts, BatchNorm momentum 0.1 = Flax's 0.9, eps 1e-5; SGD momentum 0.9, Nesterov, weight decay
5e-4 added to the gradient). Needs `pip install -e '.[torch]'` (a CPU wheel is enough).
"""
import jax
import numpy as np
import torch
from absl import app
import torch.nn.functional as F

import harness
from mialth_jax.models import torch_reference


def normalise(images: torch.Tensor, memory_format) -> torch.Tensor:
  """uint8 NHWC -> float32 NCHW (x / 255 - mean) / std, in `memory_format`."""
  x = (images.float() / 255 - harness.MEAN) / harness.STD
  return x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def torch_device() -> str:
  """The GPU when JAX runs on one and PyTorch sees one, else the CPU: both frameworks always share the hardware."""
  if jax.devices()[0].platform == "gpu":
    if not torch.cuda.is_available():
      raise app.UsageError("JAX runs on a GPU but this PyTorch build sees none: install a CUDA build of torch")
    return "cuda"
  return "cpu"


class TorchTrainer:
  """Eager train steps on random uint8 NHWC images gathered by index, normalised inside the step like ours.

  On "cuda" the images stay on the GPU and `dtype="bfloat16"` runs the step under bf16 autocast (parameters fp32, as
  ours); `run` waits for the GPU before it returns.
  """

  def __init__(self, width: float, batch_size: int, *, channels_last: bool = False, num_images: int = 1024,
               seed: int = 0, device: str = "cpu", dtype: str = "float32"):
    torch.manual_seed(seed)
    self.device, self.autocast = device, dtype == "bfloat16"
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.model = torch_reference.ResNet("resnet18", 10, "cifar", "cifar", width).to(
        device, memory_format=self.memory_format).train()
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    self.images = torch.from_numpy(rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)).to(device)
    self.labels = torch.from_numpy(rng.integers(0, 10, num_images)).to(device)
    self.batches = torch.arange(num_images, device=device).split(batch_size)[:num_images // batch_size]

  def run(self, num_steps: int) -> None:
    for step in range(num_steps):
      idx = self.batches[step % len(self.batches)]
      with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast):
        loss = F.cross_entropy(self.model(normalise(self.images[idx], self.memory_format)), self.labels[idx])
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
    if self.device == "cuda":
      torch.cuda.synchronize()
