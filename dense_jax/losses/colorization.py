"""Colorization loss of Zhang, Isola & Efros (ECCV 2016): class-rebalanced multinomial cross-entropy over
quantized ab bins.

Pixels and examples are masked as `dense_jax.losses._common` describes; the loss is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.checks import check_rank
from dense_jax.losses._common import _concrete, _label_mask


def colorization_loss(logits, target_bins, target_weights, class_weights=None, valid=None, example_mask=None):
  """Class-rebalanced multinomial cross-entropy of Zhang et al. (2016) over Q quantized ab bins:

    L = (1/n) Σ_valid pixels  v(q*) · ( -Σ_j z_j log softmax(logits)[b_j] )

  with the soft-encoded target (bins b_j, weights z_j summing to 1, nearest bin first, as
  `dense_jax.data.color.AbBins.soft_encode` returns them), q* = b_0 the pixel's nearest bin and
  v = `class_weights` (from `dense_jax.data.color.rebalancing_weights`, expectation 1 under the
  smoothed prior, so dividing by the pixel count n keeps the scale of the plain loss); v = 1 when None.

  Args:
    logits: (B, H, W, Q).
    target_bins: (B, H, W, k) int bin indices in [0, Q); target_weights: (B, H, W, k) float.
    class_weights: optional (Q,) rebalancing weights.
    valid: optional boolean (B, H, W) (default all pixels); example_mask: optional (B,).
  Returns: (loss, num_valid_pixels); loss 0 with zero gradient when no pixel is valid.
  """
  check_rank(logits, 4, "logits", "BHWQ")
  check_rank(target_bins, 4, "target_bins", "BHWk")
  q = logits.shape[-1]
  if tuple(target_bins.shape[:3]) != tuple(logits.shape[:3]):
    raise ValueError(f"target_bins: expected shape {tuple(logits.shape[:3])} + (k,) (the logits' B, H, W), "
                     f"got {tuple(target_bins.shape)}")
  if tuple(target_weights.shape) != tuple(target_bins.shape):
    raise ValueError(f"target_weights: expected shape {tuple(target_bins.shape)} (target_bins'), got "
                     f"{tuple(target_weights.shape)}")
  if class_weights is not None and tuple(jnp.shape(class_weights)) != (q,):
    raise ValueError(f"class_weights: expected shape ({q},) (one weight per bin), got "
                     f"{tuple(jnp.shape(class_weights))}")
  if _concrete(target_bins):
    tb = np.asarray(target_bins)
    if tb.size and (tb.min() < 0 or tb.max() >= q):
      raise ValueError(f"target_bins: expected indices in [0, {q}), got range [{tb.min()}, {tb.max()}]")
  mask = _label_mask(valid, jnp.ones(logits.shape[:3], bool), example_mask, logits.shape[:3])
  bins = target_bins.astype(jnp.int32)
  # Masked pixels' logits replaced before the softmax: an inf/NaN there must not reach the gradient.
  logp = jax.nn.log_softmax(jnp.where(mask[..., None], logits.astype(jnp.float32), 0.0), axis=-1)
  ce = -jnp.sum(target_weights.astype(jnp.float32) * jnp.take_along_axis(logp, bins, axis=-1), axis=-1)
  if class_weights is not None:
    ce = ce * jnp.asarray(class_weights, jnp.float32)[bins[..., 0]]
  count = jnp.sum(mask, dtype=jnp.float32)
  return jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.maximum(count, 1.0), count
