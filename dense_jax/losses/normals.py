"""Surface-normal loss of Eigen & Fergus (ICCV 2015): negative mean dot product of unit normals.

Pixels and examples are masked as `dense_jax.losses._common` describes; the loss is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dense_jax.checks import check_rank
from dense_jax.losses._common import _label_mask


def _safe_unit(v, mask):
  """v / |v| where `mask`, (0, 0, 1) elsewhere; never divides by zero (a zero vector stays 0)."""
  v = jnp.where(mask[..., None], v.astype(jnp.float32), jnp.array([0.0, 0.0, 1.0], jnp.float32))
  sq = jnp.sum(v * v, axis=-1, keepdims=True)
  return v * jax.lax.rsqrt(jnp.maximum(sq, 1e-12))


def normals_loss(pred, gt, valid=None, example_mask=None):
  """Negative mean dot product of unit normals (Eigen & Fergus 2015): `-(1/n) Σ p̂ · ĝ` over the n valid
  pixels of the batch; in [-1, 1], -1 when every prediction points the true way.

  Args:
    pred: (B, H, W, 3) predicted normals, any length (normalised inside; a zero vector gives dot 0).
    gt: (B, H, W, 3) true normals; zero vectors are invalid (the default `valid`).
    valid, example_mask: optional (B, H, W) and (B,) masks.
  Returns: (loss, num_valid_pixels); loss 0 with zero gradient when no pixel is valid.
  """
  check_rank(pred, 4, "pred", "BHWC")
  if pred.shape[-1] != 3:
    raise ValueError(f"pred: expected 3 components (x right, y down, z towards the camera), got shape "
                     f"{tuple(pred.shape)}")
  if tuple(gt.shape) != tuple(pred.shape):
    raise ValueError(f"gt: expected shape {tuple(pred.shape)} (pred's), got {tuple(gt.shape)}")
  gt = jnp.asarray(gt, jnp.float32)
  mask = _label_mask(valid, jnp.sum(gt * gt, axis=-1) > 0, example_mask, gt.shape[:3])
  dot = jnp.sum(_safe_unit(pred, mask) * _safe_unit(gt, mask), axis=-1)
  count = jnp.sum(mask, dtype=jnp.float32)
  return -jnp.sum(jnp.where(mask, dot, 0.0)) / jnp.maximum(count, 1.0), count
