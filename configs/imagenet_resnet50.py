"""ResNet-50 lottery tickets on ImageNet (imagenet2012 via tfds, 224x224 crops), and membership inference.

  python -m launch.main --config=configs/imagenet_resnet50.py --workdir=runs/imagenet_r50 --config.data.data_dir=DIR

Accelerator-sized: 1.28 M members, 90 epochs, bfloat16 compute, batch 1024. Prepare the data once as in
docs/tfds.md. Images are decoded and cropped on the host and streamed to the devices two batches ahead.
"""
from mialth_jax.experiments import presets


def get_config(arg: str | None = None):
  return presets.image_classification("imagenet2012", "resnet50", arg)
