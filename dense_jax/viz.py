"""Drawing: the one module for every figure the project makes (the trainer's PNGs and TensorBoard images,
`python -m dense_jax.evaluate`, the dataset figure, colabs), so a class has the same colour everywhere.

Pictures are NumPy uint8 RGB arrays `(H, W, 3)`:

  palette(num_classes)        (256, 3) uint8 colour per class id; 255 (ignore) black
  colour_labels(labels, n)    class ids -> colours
  id_palette(n, seed)         (n, 3) float colours in [0, 1] for ids (instances, segments), id 0 black
  overlay(image, colours, a)  alpha blend of a colour map over an image
  instance_outlines(masks)    (H, W) bool: pixels on the border of any instance mask
  depth_colours(depth)        log-depth through a colour map, invalid (<= 0) black
  normals_colours(normals)    unit normals -> RGB ((n * (1, -1, 1) + 1) / 2: red = right, green = up,
                              blue = towards the camera), invalid (zero) black
  draw_keypoints(image, kps)  a small cross (visible) or square (occluded) per keypoint
  place_centred(picture, hw)  a smaller picture centred on a black (H, W) canvas (the valid U-Net)
  to_uint8(image)             [0, 1] float -> uint8
  grid(rows)                  rows of equally sized panels -> one picture
  prediction_grid(...)        image | ground truth | prediction per example
  panoptic_colours(ids, cls)  a panoptic map in its classes' hues

Figures written as files (matplotlib's object API on an Agg canvas, `matplotlib.figure.Figure`, so they
work without a display and never touch pyplot's global backend or figure list):

  normalize_rows(confusion)   C[i, j] / sum_j C[i, j]: the fraction of the pixels of true class i
                              predicted as j (each row sums to one, the diagonal is the per-class recall);
                              a class absent from the labels has an all-zero row, not NaN
  plot_confusion_matrix(...)  that matrix as a heat map PNG; absent classes drawn empty, "(absent)"
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dense_jax import paths

_BASE_COLOURS = np.array([[128, 128, 128], [70, 130, 230], [60, 170, 60], [170, 80, 60], [240, 200, 40],
                          [220, 60, 200], [40, 220, 220], [250, 130, 30], [150, 90, 240], [255, 255, 255]])


def palette(num_classes: int) -> np.ndarray:
  """`(256, 3)` uint8 colours: a fixed, well-spread colour per class id; 255 (ignore) is black."""
  rng = np.random.default_rng(7)
  colours = np.zeros((256, 3), np.uint8)
  colours[:min(num_classes, len(_BASE_COLOURS))] = _BASE_COLOURS[:num_classes]
  if num_classes > len(_BASE_COLOURS):
    colours[len(_BASE_COLOURS):num_classes] = rng.integers(30, 256, (num_classes - len(_BASE_COLOURS), 3))
  colours[255] = 0
  return colours


def colour_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """`(..., 3)` uint8 colours of class ids (`palette`); ids outside [0, 255] are clipped."""
  return palette(num_classes)[np.clip(np.asarray(labels), 0, 255)]


def id_palette(n: int, seed: int = 3) -> np.ndarray:
  """`(max(n, 1), 3)` float colours in [0.15, 1] for ids (instances, panoptic segments); id 0 black."""
  rng = np.random.default_rng(seed)
  pal = rng.uniform(0.15, 1.0, size=(max(n, 1), 3))
  pal[0] = (0.0, 0.0, 0.0)
  return pal


def to_uint8(image: np.ndarray) -> np.ndarray:
  """A float image in [0, 1] (clipped) or a uint8 image -> uint8."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.65, where: np.ndarray | None = None
            ) -> np.ndarray:
  """`(1 - alpha) * image + alpha * colours` (uint8), only at `where` (default everywhere)."""
  img = to_uint8(image).astype(np.float32)
  col = to_uint8(colours).astype(np.float32)
  out = (1 - alpha) * img + alpha * col
  if where is not None:
    out = np.where(np.asarray(where)[..., None], out, img)
  return np.round(out).astype(np.uint8)


def instance_outlines(masks: np.ndarray, num_instances: int | None = None) -> np.ndarray:
  """`(H, W)` bool: pixels of an instance mask `(N, H, W)` with a 4-neighbour outside that mask."""
  masks = np.asarray(masks)[:num_instances] > 0
  if masks.size == 0:
    return np.zeros(masks.shape[1:], bool)
  padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
  inner = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
  return np.any(masks & ~inner, axis=0)


def depth_colours(depth: np.ndarray, cmap: str = "viridis_r") -> np.ndarray:
  """`(H, W, 3)` uint8: log depth mapped through `cmap` between the valid pixels' min and max (near =
  bright with 'viridis_r'); invalid pixels (depth <= 0 or not finite) black."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  depth = np.asarray(depth, np.float64)
  valid = np.isfinite(depth) & (depth > 0)
  out = np.zeros(depth.shape + (3,), np.uint8)
  if not valid.any():
    return out
  logd = np.log(np.where(valid, depth, 1.0))
  lo, hi = logd[valid].min(), logd[valid].max()
  t = (logd - lo) / (hi - lo) if hi > lo else np.zeros_like(logd)
  rgb = matplotlib.colormaps[cmap](t)[..., :3]
  out[valid] = (rgb[valid] * 255).astype(np.uint8)
  return out


def normals_colours(normals: np.ndarray) -> np.ndarray:
  """`(H, W, 3)` uint8 from unit normals (x right, y down, z towards the camera): RGB =
  `(n * (1, -1, 1) + 1) / 2` (green = up); zero (invalid) normals black."""
  n = np.asarray(normals, np.float64)
  valid = np.linalg.norm(n, axis=-1, keepdims=True) > 0
  rgb = np.where(valid, (n * np.array([1.0, -1.0, 1.0]) + 1.0) / 2.0, 0.0)
  return to_uint8(rgb)


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, num_instances: int | None = None,
                   visible_colour=(255, 255, 0), occluded_colour=(255, 0, 0)) -> np.ndarray:
  """A copy of `image` with keypoints `(N, K, 3)` (x, y, visibility; pixel units, centres at +0.5)
  drawn: a 3×3 cross for visibility 2, a 3×3 square outline for 1, nothing for 0."""
  out = to_uint8(image).copy()
  h, w = out.shape[:2]
  cross = [(0, 0), (-1, -1), (1, 1), (-1, 1), (1, -1)]
  square = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
  for inst in np.asarray(keypoints)[:num_instances]:
    for x, y, v in inst:
      if v <= 0:
        continue
      cy, cx = int(np.floor(y)), int(np.floor(x))
      for dy, dx in (cross if v >= 2 else square):
        if 0 <= cy + dy < h and 0 <= cx + dx < w:
          out[cy + dy, cx + dx] = visible_colour if v >= 2 else occluded_colour
  return out


def place_centred(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`picture (h, w, 3)` centred on a black `(H, W, 3)` canvas (h <= H, w <= W): a prediction of the
  valid-convolution U-Net (the centre of its input) drawn in register with the image."""
  h, w = size
  ph, pw = picture.shape[:2]
  if ph == h and pw == w:
    return to_uint8(picture)
  canvas = np.zeros((h, w, 3), np.uint8)
  dh, dw = (h - ph) // 2, (w - pw) // 2
  canvas[dh:dh + ph, dw:dw + pw] = to_uint8(picture)
  return canvas


def grid(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
  """One uint8 picture: each row's panels side by side, rows stacked (panels of one size)."""
  return np.concatenate([np.concatenate([to_uint8(p) for p in row], axis=1) for row in rows], axis=0)


def prediction_grid(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                    num_classes: int) -> np.ndarray:
  """`(n·H, 3·W, 3)` uint8: per example, image | ground truth | prediction, class colours (`palette`);
  label maps smaller than the image (the valid U-Net) are drawn centred on black."""
  colours = palette(num_classes)
  rows = []
  for image, label, pred in zip(images, labels, predictions):
    hw = image.shape[:2]
    rows.append([to_uint8(image), place_centred(colours[np.clip(label, 0, 255)], hw),
                 place_centred(colours[np.clip(pred, 0, 255)], hw)])
  return grid(rows)


def panoptic_colours(ids: np.ndarray, classes: np.ndarray, num_classes: int, seed: int = 11) -> np.ndarray:
  """`(H, W, 3)` uint8 picture of a panoptic map: each segment in its class's hue (`palette`), segments
  of one class told apart by a per-id brightness in [0.55, 1] (id-seeded, so a map is drawn the same way
  every time), boundaries between segments dark; void (id 0) black.

  ids: int `(H, W)` segment ids, 0 = void; classes: int `(H, W)` the class of each pixel's segment.
  """
  ids, classes = np.asarray(ids), np.asarray(classes)
  if ids.shape != classes.shape or ids.ndim != 2:
    raise ValueError(f"ids, classes: expected two (H, W) maps of one shape, got {ids.shape} and {classes.shape}")
  base = palette(num_classes)[np.clip(classes, 0, 255)].astype(np.float32)
  levels = np.random.default_rng(seed).uniform(0.55, 1.0, size=int(max(ids.max(initial=0), 0)) + 1)
  picture = base * levels[np.clip(ids, 0, None)][..., None]
  edge = np.zeros(ids.shape, bool)
  edge[1:] |= ids[1:] != ids[:-1]
  edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
  picture[edge] *= 0.35
  picture[ids <= 0] = 0
  return np.clip(picture, 0, 255).astype(np.uint8)


def normalize_rows(confusion) -> np.ndarray:
  """Row-normalised float64 copy of a square `confusion` matrix (rows of zeros stay zero)."""
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"confusion: expected a square matrix, got shape {c.shape}")
  if np.any(c < 0):
    raise ValueError("confusion: expected non-negative counts, got negative entries")
  support = c.sum(axis=1, keepdims=True)
  return np.divide(c, support, out=np.zeros_like(c), where=support > 0)


def plot_confusion_matrix(confusion, path: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                          title: str = "", annotate: bool | None = None, dpi: int = 110) -> paths.Path:
  """Saves the row-normalised `confusion` (rows = true class, columns = predicted) as a PNG at `path`.

  Args:
    confusion: `(K, K)` counts.
    path: the PNG to write (parent directories are created).
    class_names: K labels for the axes (default the class ids).
    title: drawn above the matrix (the pixel count is appended).
    annotate: write the percentage into each cell; default when K <= 25 (beyond that cells are too small).
    dpi: resolution; the figure grows with K so labels stay legible.
  Returns the path written.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  counts = np.asarray(confusion)
  norm = normalize_rows(counts)
  k = norm.shape[0]
  names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
  if len(names) != k:
    raise ValueError(f"class_names: expected {k} names, got {len(names)}")
  support = counts.sum(axis=1)
  row_names = [n if s > 0 else f"{n} (absent)" for n, s in zip(names, support)]
  annotate = k <= 25 if annotate is None else annotate

  side = min(3.0 + 0.45 * k, 40.0)
  fig = Figure(figsize=(side + 1.2, side))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class (cells: %)")
  ax.set_xticks(range(k), names, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
  ax.set_yticks(range(k), row_names, fontsize=8)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(f"{title + chr(10) if title else ''}row-normalised confusion, {int(counts.sum()):,} pixels",
               fontsize=9)
  if annotate:
    for i in range(k):
      if support[i] == 0:
        continue
      for j in range(k):
        value = norm[i, j]
        if value >= 0.005:
          ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 0.6 else "black")
  fig.tight_layout()
  path = paths.as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, dpi=dpi, format=path.suffix[1:] or "png")
  return path
