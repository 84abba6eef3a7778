"""Semantic segmentation loss: pixel-wise softmax cross-entropy with an ignore label.

Conventions: logits `(B, H, W, K)` (any float dtype; the loss is computed in float32), labels
`(B, H, W)` int class ids with `ignore_label` (255) marking pixels that carry no label (void borders,
crop padding). The mean is over the valid pixels of the whole (global) batch, as the segmentation papers
and torch's `CrossEntropyLoss(ignore_index=255)` define it; under `jax.jit` with a sharded batch the sums
are global, so the loss does not depend on how the batch is split over devices.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from dense_jax.checks import check_rank

IGNORE_LABEL = 255


def segmentation_cross_entropy(logits, labels, ignore_label: int = IGNORE_LABEL):
  """Mean over valid pixels of `-log softmax(logits)[label]`; returns `(loss, num_valid_pixels)`.

  A batch with no valid pixel gives loss 0 (and zero gradient) rather than 0/0 = NaN.
  """
  check_rank(logits, 4, "logits", "BHWK")
  check_rank(labels, 3, "labels", "BHW")
  if logits.shape[:3] != labels.shape:
    raise ValueError(f"labels: expected shape {logits.shape[:3]} (the logits' B, H, W), got {labels.shape}")
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0).astype(jnp.int32)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  count = jnp.sum(valid, dtype=jnp.float32)
  loss = jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(count, 1.0)
  return loss, count
