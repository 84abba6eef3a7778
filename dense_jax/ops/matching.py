"""Matching predictions (anchors, proposals) to ground truth by a quality matrix (IoU), torchvision's Matcher.

`match_boxes(quality, high_threshold, low_threshold, allow_low_quality_matches, gt_valid=...)` with a
`(M, N)` matrix (M ground-truth rows, N predictions) returns an int32 `(N,)` vector: for each
prediction the index of its best ground truth (first index on ties), or

  BELOW_LOW_THRESHOLD (-1)  best quality < low_threshold           (background)
  BETWEEN_THRESHOLDS  (-2)  low_threshold <= best < high_threshold  (ignored)

With `allow_low_quality_matches`, every prediction that reaches the highest quality some ground truth
has with any prediction (ties included) gets its best match back, even below the thresholds (Faster
R-CNN's rule, so each ground truth has at least one positive). As in torchvision, a prediction is
restored to *its own* best ground truth, and a ground truth whose best quality is 0 restores every
prediction with quality 0 to it (torchvision's behaviour, kept for parity).

Static shapes: padding ground-truth rows are excluded with `gt_valid (M,)`: they are never matched and
add no low-quality matches; with no valid ground truth (an empty image) every prediction is -1
(torchvision raises in training; here the image trains with background only). Leading batch
dimensions (`(..., M, N)`) are supported, e.g. per image. Settings: RPN (0.7, 0.3, True), box head
(0.5, 0.5, False).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


@functools.partial(jax.jit, static_argnames=("high_threshold", "low_threshold",
                                             "allow_low_quality_matches"))
def match_boxes(quality, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False,
                *, gt_valid=None):
  """`quality (..., M, N)` -> matches int32 `(..., N)` (see the module docstring).

  Args:
    quality: match quality (IoU) of ground truth m and prediction n, typically `box_iou(gt, anchors)`.
    high_threshold, low_threshold: `low <= high`.
    allow_low_quality_matches: restore the best predictions of each ground truth.
    gt_valid: optional bool `(..., M)`; False rows (padding) are ignored.
  """
  if getattr(quality, "ndim", 0) < 2:
    raise ValueError(f"quality: expected shape (..., M, N), got {getattr(quality, 'shape', type(quality))}")
  if low_threshold > high_threshold:
    raise ValueError(f"low_threshold: expected <= high_threshold ({high_threshold}), got {low_threshold}")
  if gt_valid is None:
    gt_valid = jnp.ones(quality.shape[:-1], bool)
  elif getattr(gt_valid, "shape", None) != quality.shape[:-1]:
    raise ValueError(f"gt_valid: expected shape {quality.shape[:-1]}, got {getattr(gt_valid, 'shape', gt_valid)}")
  gt_valid = jnp.asarray(gt_valid, bool)
  if quality.shape[-2] == 0 or quality.shape[-1] == 0:
    return jnp.full(quality.shape[:-2] + quality.shape[-1:], BELOW_LOW_THRESHOLD, jnp.int32)
  masked = jnp.where(gt_valid[..., :, None], quality, -jnp.inf)
  best = jnp.max(masked, axis=-2)
  all_matches = jnp.argmax(masked, axis=-2).astype(jnp.int32)
  matches = jnp.where(best < low_threshold, BELOW_LOW_THRESHOLD,
                      jnp.where(best < high_threshold, BETWEEN_THRESHOLDS, all_matches))
  if allow_low_quality_matches:
    best_per_gt = jnp.max(masked, axis=-1, keepdims=True)
    restore = jnp.any((masked == best_per_gt) & gt_valid[..., :, None], axis=-2)
    matches = jnp.where(restore, all_matches, matches)
  any_gt = jnp.any(gt_valid, axis=-1, keepdims=True)
  return jnp.where(any_gt, matches, BELOW_LOW_THRESHOLD).astype(jnp.int32)
