"""Depth loss of Eigen & Fergus (ICCV 2015): scale-invariant log error plus gradient matching.

Pixels and examples are masked as `dense_jax.losses._common` describes; the loss is computed in float32.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax.checks import check_rank
from dense_jax.losses._common import _concrete, _label_mask


def depth_loss(log_pred, gt, valid=None, example_mask=None, lam: float = 0.5, gradient_weight: float = 1.0):
  """Eigen & Fergus (2015) depth loss: scale-invariant log error with λ plus gradient matching.

  With `d = log_pred - ln gt` on the n valid pixels of one image,

    L = (1/n) Σ d² - (λ/n²) (Σ d)² + gradient_weight · (1/n) Σ [(∇x d)² + (∇y d)²]

  where ∇x d, ∇y d are differences of horizontally / vertically adjacent pixels that are both valid.
  The data term splits as Var(d) + (1 - λ) mean(d)²: `scale_invariant` = Var(d) (unchanged when the
  prediction is multiplied by a constant, i.e. `log_pred` shifted), `scale` = mean(d)²; λ = 0.5 is the
  paper's. Each image's L is over its own valid pixels; the loss is the mean over the examples that
  have any valid pixel (and `example_mask`), 0 (with zero gradient) when none has.

  Args:
    log_pred: (B, H, W) natural log of the predicted depth (what the network outputs).
    gt: (B, H, W) true depth (metres), 0 = invalid; negative values are an error.
    valid: optional boolean (B, H, W); default `gt > 0`.
    example_mask: optional (B,) flags of the examples that carry depth.
  Returns: (loss, parts) with parts = {scale_invariant, scale, gradient, num_examples} (batch means).
  """
  check_rank(log_pred, 3, "log_pred", "BHW")
  check_rank(gt, 3, "gt", "BHW")
  if tuple(gt.shape) != tuple(log_pred.shape):
    raise ValueError(f"gt: expected shape {tuple(log_pred.shape)} (log_pred's), got {tuple(gt.shape)}")
  if _concrete(gt) and not bool(np.all(np.asarray(gt) >= 0)):
    raise ValueError(f"gt: expected depths >= 0 (0 = invalid), got minimum {float(np.nanmin(np.asarray(gt)))} "
                     f"or NaN")
  gt = jnp.asarray(gt, jnp.float32)
  mask = _label_mask(valid, gt > 0, example_mask, gt.shape)
  d = jnp.where(mask, log_pred.astype(jnp.float32) - jnp.log(jnp.where(mask, gt, 1.0)), 0.0)
  n = jnp.sum(mask, axis=(1, 2), dtype=jnp.float32)
  safe_n = jnp.maximum(n, 1.0)
  mean_d = jnp.sum(d, axis=(1, 2)) / safe_n
  mean_d2 = jnp.sum(d * d, axis=(1, 2)) / safe_n
  gx = jnp.where(mask[:, :, 1:] & mask[:, :, :-1], d[:, :, 1:] - d[:, :, :-1], 0.0)
  gy = jnp.where(mask[:, 1:, :] & mask[:, :-1, :], d[:, 1:, :] - d[:, :-1, :], 0.0)
  grad = (jnp.sum(gx * gx, axis=(1, 2)) + jnp.sum(gy * gy, axis=(1, 2))) / safe_n
  si = mean_d2 - mean_d ** 2
  per_image = si + (1.0 - lam) * mean_d ** 2 + gradient_weight * grad
  has = (n > 0).astype(jnp.float32)
  count = jnp.sum(has)

  def batch_mean(x):
    return jnp.sum(has * x) / jnp.maximum(count, 1.0)

  parts = {"scale_invariant": batch_mean(si), "scale": batch_mean(mean_d ** 2), "gradient": batch_mean(grad),
           "num_examples": count}
  return batch_mean(per_image), parts
