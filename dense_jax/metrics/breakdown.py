"""Where a segmentation is right or wrong: mIoU near label boundaries and by object size.

Every breakdown is a confusion matrix (rows true class, columns predicted, as in
`dense_jax.metrics.segmentation`) restricted to a *region* of pixels; pixels outside the region are
treated like ignore-label pixels. Regions, per image of a batch:

* `band` — the boundary band of radius r: pixels p for which the `(2r+1)×(2r+1)` window centred on p
  holds two different (non-ignore) labels,

      band[p] = max_{q ∈ W_r(p)} label[q]  !=  min_{q ∈ W_r(p)} label[q]

  (a max-pool and a min-pool — i.e. a dilation and an erosion — of the label map; ignore-label pixels
  and the outside of the image are left out of both). So `band` holds the pixels within Chebyshev
  distance r of a pixel of another class, on both sides of each boundary (the "trimap" of Kohli et al.
  2009 that DeepLab reports against). r = 0 gives an empty band.
* `interior` — the valid pixels that are not in the band.
* `small` / `large` — pixels of an object instance whose *visible* area (pixels in its mask at the
  evaluated resolution) is `< small_area` / `>= small_area`. Stuff pixels (no instance) are in neither.

Summary of a region's confusion `C` (NumPy, `region_metrics`):

    IoU_c      = C[c, c] / (Σ_j C[c, j] + Σ_i C[i, c] - C[c, c])
    miou       = mean of IoU_c over the classes present in the region's labels (Σ_j C[c, j] > 0)
    accuracy   = trace(C) / Σ C          (the fraction of the region's pixels labelled correctly)
    fraction   = Σ C / (valid pixels of the whole evaluation)   (how big the region is)

Averaging over the classes *present in the region* (not over every class with a non-empty union, as
the whole-image mIoU does) keeps a class that only appears as a wrong prediction inside the region from
entering the mean as a zero: sky predicted on a small disc is a false negative of 'disc' (and lowers
its IoU), but 'sky', absent from the region's labels, is not averaged in.

`breakdown_confusions` is jit-able (static `num_classes` and `band_radius`); accumulate its output over
the evaluation set (int64 on the host) and call `breakdown_metrics` once.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import check_rank
from dense_jax.metrics.segmentation import confusion_matrix

IGNORE_LABEL = 255
REGIONS = ("all", "band", "interior", "small", "large")


def _check_radius(radius) -> int:
  if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
    raise ValueError(f"radius: expected an int >= 0, got {radius!r}")
  return int(radius)


def boundary_band(labels, radius: int, ignore_label: int = IGNORE_LABEL):
  """`(B, H, W)` bool: pixels within Chebyshev distance `radius` of a pixel of another label.

  Computed as `max-pool(labels) != min-pool(labels)` over `(2·radius + 1)²` windows ("SAME", the
  outside of the image and ignore-label pixels excluded from both pools). Jit-able, static radius.
  """
  check_rank(labels, 3, "labels", "BHW")
  radius = _check_radius(radius)
  labels = jnp.asarray(labels).astype(jnp.int32)
  if radius == 0:
    return jnp.zeros(labels.shape, bool)
  valid = labels != ignore_label
  low, high = jnp.iinfo(jnp.int32).min, jnp.iinfo(jnp.int32).max
  window, strides = (1, 2 * radius + 1, 2 * radius + 1), (1, 1, 1)
  top = lax.reduce_window(jnp.where(valid, labels, low), low, lax.max, window, strides, "SAME")
  bottom = lax.reduce_window(jnp.where(valid, labels, high), high, lax.min, window, strides, "SAME")
  # A window with one valid label (or none: top = low, bottom = high) is not on a boundary.
  return (top != bottom) & (top != low)


def object_area_map(masks, num_instances=None):
  """`(B, H, W)` int32: the visible area (mask pixel count) of the instance covering each pixel, 0 on
  pixels no instance covers.

  Args:
    masks: `(B, N, H, W)` instance masks (nonzero = inside); instance masks of one image are disjoint
      (as `dense_shapes` guarantees: they partition the thing pixels).
    num_instances: optional `(B,)` int; slots `>= num_instances[b]` are padding and ignored.
  """
  check_rank(masks, 4, "masks", "BNHW")
  inside = jnp.asarray(masks) != 0
  if num_instances is not None:
    n = jnp.asarray(num_instances).reshape(-1)
    if n.shape[0] != inside.shape[0]:
      raise ValueError(f"num_instances: expected shape ({inside.shape[0]},), got {jnp.shape(num_instances)}")
    inside = inside & (jnp.arange(inside.shape[1])[None, :, None, None] < n[:, None, None, None])
  area = jnp.sum(inside, axis=(2, 3), dtype=jnp.int32)                 # (B, N)
  return jnp.sum(jnp.where(inside, area[:, :, None, None], 0), axis=1, dtype=jnp.int32)


def _centre_crop(x, size):
  h, w = size
  dh, dw = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
  return x[:, dh:dh + h, dw:dw + w]


def region_masks(labels, *, band_radius: int, masks=None, num_instances=None, small_area=None,
                 ignore_label: int = IGNORE_LABEL) -> dict:
  """`{region: (B, H, W) bool}` for 'all', 'band', 'interior' and, given `masks` and `small_area`,
  'small' and 'large' (see the module docstring). Every region is within the valid pixels."""
  check_rank(labels, 3, "labels", "BHW")
  labels = jnp.asarray(labels)
  valid = labels != ignore_label
  band = boundary_band(labels, band_radius, ignore_label) & valid
  regions = {"all": valid, "band": band, "interior": valid & ~band}
  if masks is not None:
    if small_area is None:
      raise ValueError("small_area: expected an area in pixels when masks are given, got None")
    area = object_area_map(masks, num_instances)
    if area.shape != labels.shape:
      raise ValueError(f"masks: expected (B, N, H, W) with (B, H, W) = labels' {labels.shape}, "
                       f"got {jnp.shape(masks)}")
    regions["small"] = valid & (area > 0) & (area < small_area)
    regions["large"] = valid & (area >= small_area)
  return regions


def breakdown_confusions(labels, predictions, num_classes: int, *, band_radius: int, masks=None,
                         num_instances=None, small_area=None, ignore_label: int = IGNORE_LABEL) -> dict:
  """`{region: (K, K) int32 confusion}` of `predictions` against `labels` inside each region.

  `labels (B, H, W)` at the input resolution; `predictions (B, h, w)` may be smaller (a model that
  predicts the centre of its input): the regions are computed on the full label map (so an object's
  area and the boundaries are those of the whole image) and then centre-cropped to `(h, w)`.
  """
  check_rank(predictions, 3, "predictions", "BHW")
  regions = region_masks(labels, band_radius=band_radius, masks=masks, num_instances=num_instances,
                         small_area=small_area, ignore_label=ignore_label)
  size = predictions.shape[1:3]
  if labels.shape[1] < size[0] or labels.shape[2] < size[1] or labels.shape[0] != predictions.shape[0]:
    raise ValueError(f"predictions: expected (B, h, w) with h, w at most the labels' {labels.shape}, "
                     f"got {predictions.shape}")
  labels = _centre_crop(jnp.asarray(labels).astype(jnp.int32), size)
  out = {}
  for name, region in regions.items():
    region = _centre_crop(region, size)
    out[name] = confusion_matrix(jnp.where(region, labels, ignore_label), predictions, num_classes,
                                 ignore_label)
  return out


def region_metrics(confusion, total_pixels: float | None = None) -> dict:
  """`{'miou', 'accuracy', 'pixels'[, 'fraction']}` of one region's confusion (module docstring)."""
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"confusion: expected a square matrix, got shape {c.shape}")
  tp, support, predicted = np.diag(c), c.sum(1), c.sum(0)
  present = support > 0
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = tp / (support + predicted - tp)
  total = c.sum()
  out = {
      "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
      "accuracy": float(np.trace(c) / total) if total > 0 else float("nan"),
      "pixels": float(total),
  }
  if total_pixels is not None:
    out["fraction"] = float(total / total_pixels) if total_pixels > 0 else float("nan")
  return out


def breakdown_metrics(confusions: dict, prefix: str = "") -> dict:
  """Flat `{f'{prefix}{region}/{miou,accuracy,fraction}': float}` from accumulated confusions; the
  'all' region gives the reference numbers the other regions are compared with."""
  total = float(np.asarray(confusions["all"]).sum()) if "all" in confusions else None
  out = {}
  for name, confusion in confusions.items():
    m = region_metrics(confusion, total)
    out[f"{prefix}{name}/miou"] = m["miou"]
    out[f"{prefix}{name}/accuracy"] = m["accuracy"]
    if name != "all" and "fraction" in m:
      out[f"{prefix}{name}/fraction"] = m["fraction"]
  return out
