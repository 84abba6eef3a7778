"""Per-task losses. Segmentation: pixel-wise softmax cross-entropy with an ignore label; depth, normals
and colorization (the section at the end of the file, with its own conventions).

Conventions: logits `(B, H, W, K)` (any float dtype; the loss is computed in float32), labels
`(B, H, W)` int class ids with `ignore_label` (255) marking pixels that carry no label (void borders,
crop padding). Means are over *valid* pixels of the whole (global) batch, as the segmentation papers
and torch's `CrossEntropyLoss(ignore_index=255)` define them; under `jax.jit` with a sharded batch
the sums are global, so the loss does not depend on how the batch is split over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dense_jax.checks import check_rank

IGNORE_LABEL = 255


def centre_crop_labels(labels, size: tuple[int, int]):
  """The centre `size = (h, w)` window of `labels (B, H, W)`: what a model whose output is smaller than
  its input (the valid-convolution U-Net) predicts. Identity when the sizes already agree."""
  check_rank(labels, 3, "labels", "BHW")
  h, w = size
  if labels.shape[1] < h or labels.shape[2] < w:
    raise ValueError(f"labels: expected at least the logits' spatial size {(h, w)}, got shape {labels.shape}")
  if (h, w) == labels.shape[1:3]:
    return labels
  dh, dw = (labels.shape[1] - h) // 2, (labels.shape[2] - w) // 2
  return labels[:, dh:dh + h, dw:dw + w]


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


# ============================================================================================
# Depth, surface normals, colorization (Eigen & Fergus, ICCV 2015; Zhang, Isola & Efros, ECCV 2016)
#
# Shared conventions: `valid (B, H, W)` marks pixels that carry the label (default: derived from the
# label itself, as the data contract's "0 = invalid"), `example_mask (B,)` marks examples that carry it
# at all (multi-task batches where each example has only some labels; padding examples). A masked pixel
# contributes nothing: its prediction is replaced by a harmless constant *before* any log, division or
# normalisation, so its gradient is exactly 0 (never 0 * NaN). Losses are computed in float32.
# ============================================================================================

def _label_mask(valid, default, example_mask, shape, name="valid"):
  """`valid & example_mask[:, None, None]` as bool (B, H, W), `default` when `valid` is None."""
  if valid is None:
    mask = default
  else:
    if tuple(valid.shape) != tuple(shape):
      raise ValueError(f"{name}: expected a boolean mask of shape {tuple(shape)}, got {tuple(valid.shape)}")
    mask = jnp.asarray(valid).astype(bool)
  if example_mask is not None:
    if tuple(jnp.shape(example_mask)) != (shape[0],):
      raise ValueError(f"example_mask: expected shape ({shape[0]},) (one flag per example), got "
                       f"{tuple(jnp.shape(example_mask))}")
    mask = mask & (jnp.asarray(example_mask) > 0)[:, None, None]
  return mask


def _concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


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
