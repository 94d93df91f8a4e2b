"""Confidence extraction (eval-mode inference) with `inference.predict_logits` vs PyTorch eager, CIFAR ResNet-18.

  python benchmarks/extraction_vs_torch.py [--widths=0.25,1.0 --num_images=2048 --full_width_images=512 --reps=3]

JAX: `inference.make_logits_fn` + `inference.predict_logits` on host uint8 images (batches of 512 copied to the
device, normalised, forward with running BatchNorm statistics, logits gathered to numpy) on every JAX device (the 1
real CPU device unless XLA_FLAGS says otherwise). PyTorch: the same architecture, `model.eval()` + `torch.no_grad()`,
batches of 512 from a uint8 tensor, normalised, logits to numpy, torch.set_num_threads(2), NCHW and channels_last, on
the GPU when JAX runs on one. Timed interleaved after warm-up; the ratio is the
median of per-repetition ratios. Target: JAX/PyTorch images/s >= 0.8. Appends one JSON line to
benchmarks/results.jsonl.
"""
import numpy as np
import torch
from absl import app, flags

import harness
import torch_resnet
from mialth_jax import inference
from mialth_jax.models import resnet, torch_reference

flags.DEFINE_list("widths", ["0.25", "1.0"], "width multipliers of ResNet-18")
flags.DEFINE_integer("num_images", 2048, "images extracted per repetition (narrow networks)")
flags.DEFINE_integer("full_width_images", 512, "images per repetition at width >= 0.5 (a pass takes seconds)")
flags.DEFINE_integer("batch_size", 512, "inference batch (config.attacks.batch_size)")
flags.DEFINE_integer("reps", 3, "interleaved repetitions")
flags.DEFINE_integer("threads", 2, "torch.set_num_threads")
F = flags.FLAGS
TARGET = 0.8


class JaxExtractor:
  """Logits of host uint8 images through the package's exact sharded inference."""

  def __init__(self, width: float, images: np.ndarray):
    model = resnet.create_model("resnet18", 10, "cifar", width)
    self.mesh = inference.make_mesh()
    self.variables = harness.init_variables(model, 0)
    self.logits_fn = inference.make_logits_fn(model, np.full(3, harness.MEAN, np.float32),
                                              np.full(3, harness.STD, np.float32), self.mesh)
    self.images = images

  def run(self) -> np.ndarray:
    return inference.predict_logits(self.logits_fn, self.variables, self.images, np.arange(len(self.images)),
                                    F.batch_size, self.mesh)


class TorchExtractor:
  """model.eval() + no_grad logits of uint8 NHWC images, normalised per batch like ours."""

  def __init__(self, width: float, images: np.ndarray, channels_last: bool = False):
    self.device = torch_resnet.torch_device()   # on the GPU when JAX runs on one
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.model = torch_reference.ResNet("resnet18", 10, "cifar", "cifar", width).to(
        self.device, memory_format=self.memory_format).eval()
    self.images = torch.from_numpy(images)

  def run(self) -> np.ndarray:
    with torch.no_grad():
      return np.concatenate([
          self.model(torch_resnet.normalise(batch.to(self.device), self.memory_format)).cpu().numpy()
          for batch in self.images.split(F.batch_size)])


def compare(width: float) -> dict:
  """Interleaved images/s of JAX, PyTorch NCHW and PyTorch channels_last extraction at one width."""
  num = F.num_images if width < 0.5 else F.full_width_images
  images = np.random.default_rng(0).integers(0, 256, (num, 32, 32, 3), dtype=np.uint8)
  candidates = {"jax": JaxExtractor(width, images), "torch": TorchExtractor(width, images),
                "torch_channels_last": TorchExtractor(width, images, channels_last=True)}
  for c in candidates.values():
    c.run()
  wall, cpu = harness.interleaved({k: c.run for k, c in candidates.items()}, F.reps)
  ips = {k: num / harness.median(v) for k, v in wall.items()}
  ratio, ratio_cl = harness.ratio(wall, "jax", "torch"), harness.ratio(wall, "jax", "torch_channels_last")
  gflop = harness.convention_gflop(width)
  print(f"\nResNet-18 width {width:g}, {num} images in batches of {F.batch_size}, fp32, eval mode, "
        f"{F.reps} interleaved reps:")
  for k, v in ips.items():
    print(f"  {k:<20} {v:8.1f} img/s  ({v * gflop:.1f} GFLOP/s by the convention, "
          f"{1e3 * harness.median(cpu[k]) / num:.2f} CPU ms/img)")
  print(f"  ratio JAX/PyTorch (NCHW) = {ratio:.2f}  target >= {TARGET}: {harness.verdict(ratio, TARGET)}")
  print(f"  ratio JAX/PyTorch (channels_last) = {ratio_cl:.2f}  target >= {TARGET}: "
        f"{harness.verdict(ratio_cl, TARGET)}")
  return {"width": width, "num_images": num, "images_per_s": ips, "ratio": ratio, "ratio_channels_last": ratio_cl,
          "cpu_ratio": harness.ratio(cpu, "jax", "torch"), "met": min(ratio, ratio_cl) >= TARGET}


def main(argv):
  del argv
  torch.set_num_threads(F.threads)
  setting = harness.setting(torch=torch.__version__, torch_threads=torch.get_num_threads(), batch_size=F.batch_size,
                            dtype="float32", image="32x32x3", flops="1.11 GFLOP fwd/image x width^2")
  harness.print_setting(setting)
  results = [compare(float(w)) for w in F.widths]
  harness.append_result({"benchmark": "extraction_vs_torch", "target": TARGET, **setting,
                         "load_avg_end": harness.load_avg(), "results": results})


if __name__ == "__main__":
  app.run(main)
