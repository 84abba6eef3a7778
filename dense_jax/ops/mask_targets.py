"""Mask R-CNN mask targets: each RoI's ground-truth mask cropped to the RoI and resized to m x m, in-program.

torchvision's `project_masks_on_boxes(gt_masks, boxes, matched_idxs, M)` is

  roi_align(gt_masks[:, None], cat([matched_idxs, boxes]), (M, M), spatial_scale=1.0,
            sampling_ratio=-1, aligned=False)[:, 0]

i.e. the soft (not thresholded) average of the binary mask over each bin, with the adaptive sampling
grid `ceil(box_size / M)` per axis. RoIAlign is separable, so for one channel it is two small matrix
products per RoI: `target = Ay @ mask[matched] @ Ax^T`, where `Ay (M, H)` / `Ax (M, W)` hold the
bilinear weights of the RoI's samples summed per bin (`dense_jax.ops.roi_align`'s interpolation
matrices, built here by a scatter-add of the sample weights). The sample grid is folded into `Ay`, `Ax`
before the mask is touched, so the static bound on the adaptive grid (`ceil(max(H, W) / M)` by default:
exact for every box inside the image; proposals are clipped to it) costs `R * M * bound * 2` scattered
weights, not `bound^2` reads per bin. Cost: gathering the matched masks (`R * H * W` values) and
`R * M * H * W` multiply-adds, where torchvision reads only the samples. Boxes are xyxy in mask pixels
(see `dense_jax.ops.boxes`).

Units: the target of RoI r is `(M, M)` values in [0, 1], bin (p, q) the fraction of the bin that its
matched mask covers as RoIAlign samples it; matched_idxs picks the ground-truth row (from the box
head's matching, `dense_jax.ops.rcnn_targets`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import as_pair
from dense_jax.ops.roi_align import _rois_to_samples


def _scatter_matrix(low, high, w_low, w_high, extent: int):
  """`(K, out, extent)` interpolation matrix: the per-sample neighbour weights `(K, out, G)` added at
  their rows. A scatter-add of `K * out * G * 2` values (targets take no gradient), much cheaper than the
  one-hot form `K * out * G * extent` when the adaptive grid bound G is large."""
  k, p, _ = low.shape
  rows = jnp.arange(k)[:, None, None]
  cols = jnp.arange(p)[None, :, None]
  m = jnp.zeros((k, p, extent), w_low.dtype)
  return m.at[rows, cols, low].add(w_low, mode="drop").at[rows, cols, high].add(w_high, mode="drop")


def mask_targets(gt_masks, boxes, matched_idxs, mask_size: int = 28, sampling_ratio: int = -1,
                 max_sampling_ratio=None, aligned: bool = False):
  """Per-RoI `mask_size x mask_size` targets in [0, 1].

  Args:
    gt_masks: `(..., G, H, W)` binary masks (any numeric dtype; the data contract's uint8), padded to G.
    boxes: `(..., R, 4)` xyxy RoIs (sampled proposals) in mask pixels.
    matched_idxs: int `(..., R)` ground-truth row of each RoI (clipped to [0, G-1]; negative or padding
      RoIs give some target: mask their loss).
    mask_size: static output size m (28 for Mask R-CNN).
    sampling_ratio: as roi_align's (-1: adaptive, torchvision's default here).
    max_sampling_ratio: static bound of the adaptive grid (default `ceil(max(H, W) / m)`).
    aligned: False = torchvision's `project_masks_on_boxes` (RoIAlign aligned=False: pixel (i, j)'s value
      sits at the point (i, j), so the crop reads the box shifted by half a pixel); True = detectron2's
      `BitMasks.crop_and_resize` (aligned=True: the value sits at the pixel centre (i + 0.5, j + 0.5), so
      bin p covers exactly `[y0 + p h / m, y0 + (p + 1) h / m)` of the box). True is the crop that
      `dense_jax.ops.paste_masks.paste_masks(..., mode='exact')` inverts.

  Returns:
    float32 `(..., R, m, m)`. Leading dimensions (images) are mapped over.
  """
  if getattr(gt_masks, "ndim", 0) < 3:
    raise ValueError(f"gt_masks: expected shape (..., G, H, W), got {getattr(gt_masks, 'shape', type(gt_masks))}")
  lead = gt_masks.shape[:-3]
  if getattr(boxes, "ndim", 0) != len(lead) + 2 or boxes.shape[:-2] != lead or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected shape {lead + ('R', 4)}, got {getattr(boxes, 'shape', type(boxes))}")
  if getattr(matched_idxs, "shape", None) != boxes.shape[:-1]:
    raise ValueError(f"matched_idxs: expected shape {boxes.shape[:-1]}, got "
                     f"{getattr(matched_idxs, 'shape', type(matched_idxs))}")
  if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
    raise ValueError(f"sampling_ratio: expected an int (<= 0: adaptive), got {sampling_ratio!r}")
  if not isinstance(mask_size, int) or isinstance(mask_size, bool) or mask_size < 1:
    raise ValueError(f"mask_size: expected an int >= 1, got {mask_size!r}")
  if not isinstance(aligned, (bool, np.bool_)):
    raise ValueError(f"aligned: expected a bool, got {aligned!r}")
  g, h, w = gt_masks.shape[-3:]
  if g == 0:
    return jnp.zeros(boxes.shape[:-1] + (mask_size, mask_size), jnp.float32)
  if sampling_ratio <= 0 and max_sampling_ratio is None:
    max_sampling_ratio = max(math.ceil(max(h, w) / mask_size), 1)

  grid = (sampling_ratio, sampling_ratio) if sampling_ratio > 0 else as_pair(max_sampling_ratio,
                                                                            "max_sampling_ratio")

  def one(masks, b, idx):
    b = jnp.asarray(b, jnp.float32)
    idx = jnp.clip(jnp.asarray(idx, jnp.int32), 0, g - 1)
    r = b.shape[0]
    ys, xs = _rois_to_samples(b, jnp.ones((r,), jnp.float32), (mask_size, mask_size), sampling_ratio,
                              bool(aligned), grid, jnp.full((r,), h, jnp.int32), jnp.full((r,), w, jnp.int32))
    ay, ax = _scatter_matrix(*ys, h), _scatter_matrix(*xs, w)  # (R, M, H), (R, M, W)
    matched = jnp.take(jnp.asarray(masks), idx, axis=0).astype(jnp.float32)  # (R, H, W)
    precision = lax.Precision.HIGHEST
    rows = jnp.einsum("rph,rhw->rpw", ay, matched, precision=precision)
    return jnp.einsum("rpw,rqw->rpq", rows, ax, precision=precision)

  fn = one
  for _ in lead:
    fn = jax.vmap(fn)
  return fn(gt_masks, boxes, matched_idxs)
