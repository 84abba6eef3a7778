"""Losses of the two-stage detectors (Faster / Mask / Keypoint R-CNN) as pure functions of padded arrays.

Each equals torchvision's (`models.detection.rpn.RegionProposalNetwork.compute_loss`, `roi_heads.
fastrcnn_loss`, `maskrcnn_loss`, `keypointrcnn_loss`) on the same sampled items; padding and unsampled
items carry a label or validity flag and count for nothing, and every normaliser is `max(count, 1)`, so
an image (or a batch) without instances gives finite losses (0 for the terms that need positives).
`example_mask (B,)` (the engine's `batch_mask`) drops whole padded examples.

  rpn_loss        objectness: binary cross-entropy with logits, mean over the sampled anchors (label
                  1 / 0; -1 = not sampled); box: smooth-L1 (beta 1/9; 0 = L1) of the positives' deltas,
                  summed, divided by the number of sampled anchors.
  fast_rcnn_loss  classification: softmax cross-entropy, mean over the sampled RoIs (label c >= 0, 0 =
                  background; -1 = not sampled); box: smooth-L1 (beta 1/9) of the positives' deltas of their
                  ground-truth class, summed, divided by the number of sampled RoIs.
  mask_loss       binary cross-entropy with logits of the ground-truth class's m×m mask, mean over the
                  valid RoIs' pixels.
  keypoint_loss   per visible keypoint, softmax cross-entropy over the S² positions of its map against the
                  target cell; summed, divided by the number of visible keypoints.

Counts are over the whole (global) batch, as torchvision concatenates its images before averaging.
The targets these losses take come from `dense_jax.ops.rcnn_targets` and `dense_jax.ops.keypoint_targets`.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from dense_jax.checks import check_rank

SMOOTH_L1_BETA = 1.0 / 9.0


def smooth_l1(x, beta: float = SMOOTH_L1_BETA):
  """Elementwise `0.5 x² / beta` for `|x| < beta`, else `|x| - 0.5 beta` (`beta = 0`: `|x|`)."""
  ax = jnp.abs(x)
  if beta == 0:
    return ax
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def _with_examples(mask, example_mask):
  """`mask (B, ...)` and-ed with `example_mask (B,)` broadcast over the trailing axes."""
  if example_mask is None:
    return mask
  example_mask = jnp.asarray(example_mask).astype(bool)
  if example_mask.shape != mask.shape[:1]:
    raise ValueError(f"example_mask: expected shape {mask.shape[:1]}, got {example_mask.shape}")
  return mask & example_mask.reshape(example_mask.shape + (1,) * (mask.ndim - 1))


def _mean(values, mask):
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_same(name, x, shape):
  if tuple(x.shape) != tuple(shape):
    raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def rpn_loss(logits, deltas, labels, box_targets, example_mask=None, beta: float = SMOOTH_L1_BETA):
  """`(objectness loss, box loss)` of `logits (B, A)`, `deltas (B, A, 4)`, `labels (B, A)` in {1, 0, -1}
  and `box_targets (B, A, 4)` (used where label is 1)."""
  check_rank(logits, 2, "logits", "(B, A)")
  _check_same("deltas", deltas, logits.shape + (4,))
  _check_same("labels", labels, logits.shape)
  _check_same("box_targets", box_targets, logits.shape + (4,))
  logits = logits.astype(jnp.float32)
  sampled = _with_examples(labels >= 0, example_mask)
  positive = sampled & (labels == 1)
  bce = optax.sigmoid_binary_cross_entropy(logits, (labels == 1).astype(jnp.float32))
  n = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  objectness = jnp.sum(jnp.where(sampled, bce, 0.0)) / n
  box = jnp.sum(jnp.where(positive[..., None], smooth_l1(deltas.astype(jnp.float32) - box_targets, beta), 0.0)) / n
  return objectness, box


def fast_rcnn_loss(class_logits, box_deltas, labels, box_targets, example_mask=None,
                   beta: float = SMOOTH_L1_BETA):
  """`(classification loss, box loss)` of `class_logits (B, R, C)`, per-class `box_deltas (B, R, C, 4)`,
  `labels (B, R)` (class, 0 background, -1 not sampled) and `box_targets (B, R, 4)`."""
  check_rank(class_logits, 3, "class_logits", "(B, R, C)")
  b, r, c = class_logits.shape
  _check_same("box_deltas", box_deltas, (b, r, c, 4))
  _check_same("labels", labels, (b, r))
  _check_same("box_targets", box_targets, (b, r, 4))
  sampled = _with_examples(labels >= 0, example_mask)
  positive = sampled & (labels > 0)
  safe = jnp.clip(labels, 0, c - 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(class_logits.astype(jnp.float32), safe)
  n = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  cls = jnp.sum(jnp.where(sampled, ce, 0.0)) / n
  own = jnp.take_along_axis(box_deltas.astype(jnp.float32), safe[:, :, None, None], axis=2)[:, :, 0]
  box = jnp.sum(jnp.where(positive[..., None], smooth_l1(own - box_targets, beta), 0.0)) / n
  return cls, box


def mask_loss(mask_logits, mask_targets, valid, example_mask=None):
  """BCE with logits of `mask_logits (B, R, m, m)` (the ground-truth class's channel) against
  `mask_targets (B, R, m, m)` in [0, 1], mean over the pixels of the `valid (B, R)` RoIs."""
  check_rank(mask_logits, 4, "mask_logits", "(B, R, m, m)")
  _check_same("mask_targets", mask_targets, mask_logits.shape)
  _check_same("valid", valid, mask_logits.shape[:2])
  valid = _with_examples(valid.astype(bool), example_mask)
  bce = optax.sigmoid_binary_cross_entropy(mask_logits.astype(jnp.float32), mask_targets.astype(jnp.float32))
  return _mean(jnp.mean(bce, axis=(2, 3)), valid)


def keypoint_loss(keypoint_logits, keypoint_targets, valid, example_mask=None):
  """Cross-entropy over the S² cells of `keypoint_logits (B, R, S, S, K)` against the flat target cell
  `keypoint_targets (B, R, K)`, summed over the `valid (B, R, K)` keypoints, divided by their number."""
  check_rank(keypoint_logits, 5, "keypoint_logits", "(B, R, S, S, K)")
  b, r, s, s2, k = keypoint_logits.shape
  if s != s2:
    raise ValueError(f"keypoint_logits: expected square maps (S, S), got {s}x{s2}")
  _check_same("keypoint_targets", keypoint_targets, (b, r, k))
  _check_same("valid", valid, (b, r, k))
  valid = _with_examples(valid.astype(bool), example_mask)
  logits = jnp.moveaxis(keypoint_logits.reshape(b, r, s * s, k), 2, 3).astype(jnp.float32)   # (B, R, K, S²)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.clip(keypoint_targets, 0, s * s - 1))
  return _mean(ce, valid)


def detection_losses(out: dict, example_mask=None) -> dict:
  """Every loss term present in a `MaskRCNN` training output dict: `{'rpn_objectness', 'rpn_box',
  'roi_classifier', 'roi_box', 'mask', 'keypoint'}` (the last two only with their branch)."""
  losses = {}
  losses["rpn_objectness"], losses["rpn_box"] = rpn_loss(
      out["rpn_logits"], out["rpn_deltas"], out["rpn_labels"], out["rpn_box_targets"], example_mask)
  losses["roi_classifier"], losses["roi_box"] = fast_rcnn_loss(
      out["roi_class_logits"], out["roi_box_deltas"], out["roi_labels"], out["roi_box_targets"], example_mask)
  if "mask_logits" in out:
    losses["mask"] = mask_loss(out["mask_logits"], out["mask_targets"], out["mask_valid"], example_mask)
  if "keypoint_logits" in out:
    losses["keypoint"] = keypoint_loss(out["keypoint_logits"], out["keypoint_targets"], out["keypoint_valid"],
                                       example_mask)
  return losses
