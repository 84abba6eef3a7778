"""Keypoint R-CNN's keypoint targets: torchvision's `roi_heads.keypoints_to_heatmap`, with static shapes.

Each RoI is matched to its ground-truth instance by the box head's sampling (`dense_jax.ops.rcnn_targets`);
the caller gathers that instance's K keypoints. The RoI `(x0, y0, x1, y1)` (pixels) is divided into an
S x S grid of cells `(x1 - x0) / S` by `(y1 - y0) / S` pixels. A keypoint `(x, y)` (pixels) falls in cell

  col = floor((x - x0) · S / (x1 - x0)),   row = floor((y - y0) · S / (y1 - y0))

(`S - 1` for a keypoint exactly on the far edge x = x1 or y = y1), and its target is the flat cell index
`row · S + col` in [0, S²): the class of the softmax over the S² positions of its heatmap
(`dense_jax.losses.keypoint_loss`). A keypoint is valid when its visibility is > 0, its cell is inside
the grid and the RoI has positive width and height (padding RoIs have none).
"""

from __future__ import annotations

import jax.numpy as jnp

from dense_jax.checks import check_rank


def keypoint_targets(keypoints, rois, heatmap_size: int = 56):
  """`(index (R, K) int32, valid (R, K) bool)` of `keypoints (R, K, 3)` = (x, y, visibility) px in
  `rois (R, 4)` xyxy px on an S x S grid, S = `heatmap_size` (see the module docstring); index 0 where
  not valid."""
  check_rank(keypoints, 3, "keypoints", "(R, K, 3)")
  if tuple(rois.shape) != keypoints.shape[:1] + (4,):
    raise ValueError(f"rois: expected shape {keypoints.shape[:1] + (4,)}, got {tuple(rois.shape)}")
  s = heatmap_size
  x0, y0, x1, y1 = (rois[:, i:i + 1] for i in range(4))
  width, height = x1 - x0, y1 - y0
  proper = (width > 0) & (height > 0)
  scale_x = s / jnp.where(width > 0, width, 1.0)
  scale_y = s / jnp.where(height > 0, height, 1.0)
  kx, ky = keypoints[..., 0], keypoints[..., 1]
  x = jnp.floor((kx - x0) * scale_x).astype(jnp.int32)
  y = jnp.floor((ky - y0) * scale_y).astype(jnp.int32)
  x = jnp.where(kx == x1, s - 1, x)
  y = jnp.where(ky == y1, s - 1, y)
  valid = (x >= 0) & (y >= 0) & (x < s) & (y < s) & (keypoints[..., 2] > 0) & proper
  return jnp.where(valid, y * s + x, 0).astype(jnp.int32), valid
