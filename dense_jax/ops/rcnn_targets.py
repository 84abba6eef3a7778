"""Training targets of the two-stage detectors (Faster / Mask / Keypoint R-CNN) with static shapes:
torchvision's `RegionProposalNetwork.assign_targets_to_anchors` and `RoIHeads.select_training_samples`
built from `dense_jax.ops` (matching, sampling, box coding, mask targets). Every array is batched
`(B, ...)`; boxes are xyxy in input-image pixels.

Ground truth comes from the data contract (`dense_jax.data.sources`): `boxes (B, M, 4)` as (y0, x0, y1, x1)
(converted to xyxy by `ground_truth`), `classes (B, M)` (0 = padding), `num_instances (B,)`; row m is a
real instance iff `m < num_instances` and its class is > 0. Padding rows are never matched; an image
without instances gets background-only targets.

What is matched to what, and the targets:

  rpn_targets   anchors (A, 4) to the ground-truth boxes by IoU (`ops.matching.match_boxes`): IoU >= fg_iou
                is positive, < bg_iou negative, in between ignored, and each ground truth's best anchors are
                positive too (low-quality matches). A balanced sample of `num_samples` anchors
                (`ops.sampling`) gets label 1 / 0, the rest -1. Box target of a positive: its matched box
                encoded against the anchor (`ops.boxes.encode_boxes`, weights (1, 1, 1, 1)):
                dx = (g_cx - a_cx) / a_w, dy = (g_cy - a_cy) / a_h (fractions of the anchor's size),
                dw = log(g_w / a_w), dh = log(g_h / a_h) (log size ratios); 0 elsewhere.
  roi_targets   the proposals plus the ground-truth boxes to the ground-truth boxes by IoU (no low-quality
                matches): IoU >= fg_iou is positive with its box's class, < bg_iou background (0). A balanced
                sample of `num_samples` RoIs, positives first; label = class / 0 / -1 (not sampled). Box
                target of a positive: the same encoding against the RoI with weights (10, 10, 5, 5), i.e.
                10 dx, 10 dy, 5 dw, 5 dh; 0 elsewhere.
  mask_targets  each RoI's matched ground-truth mask cropped to the RoI and resized to m x m
                (`ops.mask_targets`): soft values in [0, 1], RoIAlign's average of the binary mask over
                each of the m x m bins.

Targets carry no gradient (`stop_gradient`). Keypoint targets: `dense_jax.ops.keypoint_targets`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dense_jax.ops import boxes as box_ops
from dense_jax.ops.mask_targets import mask_targets as _mask_targets
from dense_jax.ops.matching import BELOW_LOW_THRESHOLD, match_boxes
from dense_jax.ops.sampling import balanced_sample, balanced_sample_mask


def _take(x, idx):
  return jax.vmap(lambda a, i: a[i])(x, idx)


def ground_truth(targets: dict, num_keypoints: int = 0) -> dict:
  """`{'boxes' (B, M, 4) xyxy float32, 'classes' (B, M) int32, 'valid' (B, M) bool, 'masks', 'keypoints'}`."""
  for key in ("boxes", "classes"):
    if key not in targets:
      raise ValueError(f"targets: expected key {key!r} (the instance labels), got keys {sorted(targets)}")
  boxes = box_ops.yxyx_to_xyxy(jnp.asarray(targets["boxes"], jnp.float32))
  classes = jnp.asarray(targets["classes"], jnp.int32)
  b, m = classes.shape
  valid = classes > 0
  if "num_instances" in targets:
    valid &= jnp.arange(m)[None] < jnp.asarray(targets["num_instances"]).reshape(b, 1)
  gt = {"boxes": boxes, "classes": classes, "valid": valid}
  if "masks" in targets:
    gt["masks"] = targets["masks"]
  if num_keypoints:
    if "keypoints" not in targets:
      raise ValueError(f"targets: expected key 'keypoints' (B, M, {num_keypoints}, 3), got keys {sorted(targets)}")
    kp = jnp.asarray(targets["keypoints"], jnp.float32)
    if kp.shape[-2:] != (num_keypoints, 3):
      raise ValueError(f"targets['keypoints']: expected shape (B, M, {num_keypoints}, 3), got {kp.shape}")
    gt["keypoints"] = kp
  return gt


def merge_classes(gt: dict, object_classes=()) -> dict:
  """Keypoint R-CNN's one class: instances of `object_classes` (every class if empty) become class 1, the
  others are dropped from `gt` (valid False, class 0: background to the RPN and the box head)."""
  keep = gt["valid"]
  if len(object_classes):
    keep = keep & jnp.isin(gt["classes"], jnp.asarray(tuple(object_classes), jnp.int32))
  return {**gt, "valid": keep, "classes": jnp.where(keep, 1, 0).astype(jnp.int32)}


def rpn_targets(key, anchors, gt: dict, *, fg_iou: float, bg_iou: float, num_samples: int,
                positive_fraction: float):
  """`(labels (B, A) int32: 1 / 0 sampled, -1 not; box targets (B, A, 4))` for `anchors (A, 4)`.

  IoU matching at (fg_iou, bg_iou) with low-quality matches, then a balanced sample of `num_samples`
  anchors; targets are the matched boxes encoded against the anchors (weights 1, 1, 1, 1)."""
  iou = box_ops.box_iou(gt["boxes"], anchors)                                  # (B, M, A)
  matches = match_boxes(iou, fg_iou, bg_iou, True, gt_valid=gt["valid"])       # (B, A)
  labels = jnp.where(matches >= 0, 1, jnp.where(matches == BELOW_LOW_THRESHOLD, 0, -1))
  positive, negative = balanced_sample_mask(key, labels, num_samples, positive_fraction)
  matched = _take(gt["boxes"], jnp.maximum(matches, 0))
  box_targets = box_ops.encode_boxes(matched, anchors[None], box_ops.RPN_BOX_WEIGHTS)
  box_targets = jnp.where(positive[..., None], box_targets, 0.0)
  return jnp.where(positive, 1, jnp.where(negative, 0, -1)).astype(jnp.int32), jax.lax.stop_gradient(box_targets)


def roi_targets(key, proposals, proposal_valid, gt: dict, *, fg_iou: float, bg_iou: float, num_samples: int,
                positive_fraction: float):
  """Sampled RoIs and their targets: `(rois (B, R, 4), labels (B, R) int32 (class, 0 background, -1 not
  sampled), matched ground-truth row (B, R), box targets (B, R, 4))`, R = `num_samples`, positives first.

  The candidates are the proposals plus the ground-truth boxes (torchvision's `add_gt_proposals`); box
  targets use the weights (10, 10, 5, 5) and are 0 except for positives."""
  candidates = jnp.concatenate([proposals, gt["boxes"]], axis=1)
  valid = jnp.concatenate([proposal_valid, gt["valid"]], axis=1)
  iou = box_ops.box_iou(gt["boxes"], candidates)
  matches = match_boxes(iou, fg_iou, bg_iou, False, gt_valid=gt["valid"])
  classes = _take(gt["classes"], jnp.maximum(matches, 0))
  labels = jnp.where(matches >= 0, classes, jnp.where(matches == BELOW_LOW_THRESHOLD, 0, -1))
  labels = jnp.where(valid, labels, -1)
  idx, is_positive, is_valid = balanced_sample(key, labels, num_samples, positive_fraction)
  rois = _take(candidates, idx)
  roi_gt = jnp.maximum(_take(matches, idx), 0)
  roi_labels = jnp.where(is_valid, jnp.where(is_positive, _take(labels, idx), 0), -1).astype(jnp.int32)
  box_targets = box_ops.encode_boxes(_take(gt["boxes"], roi_gt), rois, box_ops.ROI_BOX_WEIGHTS)
  box_targets = jnp.where((roi_labels > 0)[..., None], box_targets, 0.0)
  return (jax.lax.stop_gradient(rois), roi_labels, roi_gt.astype(jnp.int32), jax.lax.stop_gradient(box_targets))


def mask_targets(gt: dict, rois, roi_gt, size: int = 28, sampling_ratio: int = -1, aligned: bool = True):
  """`(B, R, size, size)` soft targets: each RoI's matched mask cropped and resized (`ops.mask_targets`;
  `aligned` as there: True crops the exact box, False is torchvision's half-pixel-shifted crop)."""
  if "masks" not in gt:
    raise ValueError("targets: expected key 'masks' (B, M, H, W) for the mask branch")
  targets = _mask_targets(gt["masks"], rois, roi_gt, size, sampling_ratio=sampling_ratio, aligned=aligned)
  return jax.lax.stop_gradient(targets)
