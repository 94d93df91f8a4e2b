"""The per-example section's figures (report/per_example.py): image grids placed pixel for pixel, and exposure scatters.

An image grid draws each example unresampled (`Figure.figimage`, each pixel a scale x scale block) at a known place,
so the PNG shows exactly the images of the ids listed under them; `image_grid` returns where each one lies.
"""
import dataclasses

import numpy as np

from mialth_jax.report import plots
from mialth_jax.utils import io

DPI = 100
TILE = 72          # an image is enlarged by a whole factor to about this many pixels a side
CAPTION = 38       # pixels under each image for its three caption lines
TITLE = 30         # pixels above the grid for its title
PAD = 16           # pixels between images


@dataclasses.dataclass(frozen=True)
class Grid:
  path: str
  ids: list            # the ids drawn, in order
  boxes: list          # (top, left, height, width) of each image in the PNG's pixels, rows from the top
  scale: int           # each source pixel is a scale x scale block


def enlarged(image: np.ndarray, scale: int) -> np.ndarray:
  """uint8 [H * scale, W * scale, 3] of an image [H, W, 1 or 3] (grey repeated into three channels)."""
  rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
  return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1).astype(np.uint8)


def image_grid(images: np.ndarray, ids, captions: list[str], title: str, path: str, columns: int = 8) -> Grid:
  """A PNG of images [K, H, W, ch] (uint8), each with its caption under it, `columns` a row."""
  count, height, width = images.shape[:3]
  scale = max(1, TILE // max(height, width))
  cell_w, cell_h = width * scale + PAD, height * scale + CAPTION
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  fig_w, fig_h = columns * cell_w + PAD, rows * cell_h + TITLE
  fig = plots.plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
  fig.text(0.5, 1 - 6 / fig_h, title, ha="center", va="top", fontsize=9)
  boxes = []
  for i, (image, caption) in enumerate(zip(images, captions)):
    row, column = divmod(i, columns)
    left, top = PAD + column * cell_w, TITLE + row * cell_h
    bottom = fig_h - top - height * scale  # figimage counts from the bottom
    fig.figimage(enlarged(image, scale), xo=left, yo=bottom, origin="upper")
    fig.text((left + width * scale / 2) / fig_w, (bottom - 2) / fig_h, caption, ha="center", va="top", fontsize=6.5,
             linespacing=1.1)
    boxes.append((top, left, height * scale, width * scale))
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=DPI, format="png")
  plots.plt.close(fig)
  return Grid(path, [int(i) for i in ids], boxes, scale)


def exposure_scatter(dense: np.ndarray, pruned: dict, attack: str, path: str) -> str:
  """One panel per non-dense kind: each example's exposure under dense (x) and under the kind (y); red where it rises
  detectably, blue where it falls (BH), the diagonal y = x."""
  kinds = list(pruned)
  columns = min(3, len(kinds))
  rows = -(-len(kinds) // columns)
  fig, axes = plots.plt.subplots(rows, columns, figsize=(4.6 * columns, 4.4 * rows), squeeze=False)
  for ax in axes.flat[len(kinds):]:
    ax.set_visible(False)
  for ax, kind in zip(axes.flat, kinds):
    found = pruned[kind]
    y = found["exposure"]
    kept = np.isfinite(dense) & np.isfinite(y)
    other = kept & ~found["rises"] & ~found["falls"]
    ax.scatter(dense[other], y[other], s=3, color="0.6", alpha=0.5, label="no detectable change", rasterized=True)
    ax.scatter(dense[found["rises"]], y[found["rises"]], s=7, color="tab:red", label=f"rises ({found['rises'].sum()})")
    ax.scatter(dense[found["falls"]], y[found["falls"]], s=7, color="tab:blue", label=f"falls ({found['falls'].sum()})")
    low, high = np.nanmin([dense[kept].min(), y[kept].min()]), np.nanmax([dense[kept].max(), y[kept].max()])
    ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set(xlabel=f"exposure under dense ({attack} IN - OUT)", ylabel=f"exposure under {kind}", title=kind)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
  return plots.save(fig, path)
