"""Mask R-CNN mask targets: each RoI's ground-truth mask cropped to the RoI and resized to m x m, in-program.

torchvision's `project_masks_on_boxes(gt_masks, boxes, matched_idxs, M)` is

  roi_align(gt_masks[:, None], cat([matched_idxs, boxes]), (M, M), spatial_scale=1.0,
            sampling_ratio=-1, aligned=False)[:, 0]

i.e. the soft (not thresholded) average of the binary mask over each bin, with the adaptive sampling
grid `ceil(box_size / M)`. `mask_targets` computes the same with `dense_jax.ops.roi_align` (gather
backend: targets need no gradient): the adaptive grid is padded to the static bound `ceil(max(H, W) /
M)` by default, exact for every box inside the image (proposals are clipped to it); pass
`sampling_ratio=2` for a cheaper fixed grid. Boxes are xyxy in mask pixels (see `dense_jax.ops.boxes`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dense_jax.ops.roi_align import roi_align


def mask_targets(gt_masks, boxes, matched_idxs, mask_size: int = 28, sampling_ratio: int = -1,
                 max_sampling_ratio=None):
  """Per-RoI `mask_size x mask_size` targets in [0, 1].

  Args:
    gt_masks: `(..., G, H, W)` binary masks (any numeric dtype; the data contract's uint8), padded to G.
    boxes: `(..., R, 4)` xyxy RoIs (sampled proposals) in mask pixels.
    matched_idxs: int `(..., R)` ground-truth row of each RoI (clipped to [0, G-1]; negative or padding
      RoIs give some target: mask their loss).
    mask_size: static output size m (28 for Mask R-CNN).
    sampling_ratio: as roi_align's (-1: adaptive, torchvision's default here).
    max_sampling_ratio: static bound of the adaptive grid (default `ceil(max(H, W) / m)`).

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
  if not isinstance(mask_size, int) or isinstance(mask_size, bool) or mask_size < 1:
    raise ValueError(f"mask_size: expected an int >= 1, got {mask_size!r}")
  g, h, w = gt_masks.shape[-3:]
  if g == 0:
    return jnp.zeros(boxes.shape[:-1] + (mask_size, mask_size), jnp.float32)
  if sampling_ratio <= 0 and max_sampling_ratio is None:
    max_sampling_ratio = max(math.ceil(max(h, w) / mask_size), 1)

  def one(masks, b, idx):
    feats = jnp.asarray(masks, jnp.float32)[..., None]  # (G, H, W, 1): the ground truths are the "batch"
    idx = jnp.clip(jnp.asarray(idx, jnp.int32), 0, g - 1)
    out = roi_align(feats, jnp.asarray(b, jnp.float32), (mask_size, mask_size), 1.0, sampling_ratio, False,
                    batch_indices=idx, max_sampling_ratio=max_sampling_ratio, backend="gather")
    return out[..., 0]

  fn = one
  for _ in lead:
    fn = jax.vmap(fn)
  return fn(gt_masks, boxes, matched_idxs)
