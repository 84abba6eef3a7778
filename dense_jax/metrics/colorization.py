"""Colorization accuracy of Zhang, Isola & Efros (ECCV 2016): the area under the curve of the fraction
of pixels whose ab error is within a threshold, for thresholds 0..150.

For threshold t, acc(t) = sum_i w_i [ |pred_ab_i - gt_ab_i|_2 <= t ] / sum_i w_i over the valid pixels
i (w = 1, or the class-rebalancing weight of each pixel's true ab bin for the rebalanced variant; see
`dense_jax.data.color.rebalancing_weights`). AuC = trapz(acc(t), t = 0, 1, ..., T) / T with
T = max_threshold, a number in [0, 1]. Report both the plain and the rebalanced AuC, as the paper does
(`rebalanced_pixel_weights` gives the weights of the latter).

Accumulation (jit-able, static shapes): `ab_auc_totals` bins each pixel by ceil(error) (an integer
threshold t counts the pixel iff ceil(err) <= t), so the totals are a (T + 2,) weighted histogram and the
weight sum, which add across batches; `ab_auc_from_totals` integrates them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax.metrics import _inputs


def _num_thresholds(max_threshold) -> int:
  t = float(max_threshold)
  if not (t > 0 and t == int(t)):
    raise ValueError(f"max_threshold: expected a positive whole number (ab units), got {max_threshold!r}")
  return int(t)


def _check(pred_ab, gt_ab, valid, weights):
  if np.ndim(gt_ab) != 4 or np.shape(gt_ab)[-1] != 2:
    raise ValueError(f"gt_ab: expected an ab map of shape (B, H, W, 2), got {np.shape(gt_ab)}")
  _inputs.check_shape(pred_ab, np.shape(gt_ab), "pred_ab", "an ab map (B, H, W, 2) like gt_ab")
  for name, x in (("valid", valid), ("weights", weights)):
    if x is not None:
      _inputs.check_shape(x, np.shape(gt_ab)[:3], name, "(B, H, W) like gt_ab without its last axis")
  if weights is not None and not _inputs.is_traced(weights) and not (np.asarray(weights) >= 0).all():
    raise ValueError("weights: expected non-negative per-pixel weights, got negative or NaN values")
  if _inputs.is_traced(pred_ab, gt_ab, valid):   # under jit: values unchecked (a NaN error counts as > T)
    return
  ok = np.ones(np.shape(gt_ab)[:3], bool) if valid is None else np.asarray(valid).astype(bool)
  for name, x in (("pred_ab", pred_ab), ("gt_ab", gt_ab)):
    bad = ok & ~np.isfinite(np.asarray(x, np.float64)).all(axis=-1)
    if bad.any():
      first = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(f"{name}: expected finite ab values at the valid pixels, got NaN or inf at "
                       f"{int(bad.sum())} of {int(ok.sum())} valid pixels (first at (b, y, x) = {first}); "
                       f"mark pixels without a value invalid with `valid`")


def ab_auc_totals(pred_ab, gt_ab, valid=None, weights=None, max_threshold: float = 150.0) -> dict:
  """{'hist': (T + 2,) weight of pixels with ceil(error) == t (last bin: > T), 'total': weight sum}."""
  _check(pred_ab, gt_ab, valid, weights)
  n = _num_thresholds(max_threshold)
  xp, _ = _inputs.backend(pred_ab, gt_ab, valid, weights)
  err = xp.linalg.norm(_inputs.as_float(pred_ab, xp) - _inputs.as_float(gt_ab, xp), axis=-1)
  ok = _inputs.as_valid(valid, xp.ones(err.shape, bool), err.shape, xp)
  w = xp.ones(err.shape, err.dtype) if weights is None else _inputs.as_float(weights, xp)
  w = xp.where(ok, w, 0.0).reshape(-1)
  err = xp.where(xp.isnan(err), xp.inf, err)   # (under jit, unchecked) NaN counts as a miss, not as error 0
  idx = xp.clip(xp.ceil(err), 0, n + 1).astype(xp.int32).reshape(-1)
  if xp is np:
    hist = np.bincount(idx, weights=w, minlength=n + 2)
  else:
    hist = jnp.zeros((n + 2,), err.dtype).at[idx].add(w)
  return {"hist": hist, "total": xp.sum(w)}


def ab_auc_from_totals(totals: dict, max_threshold: float = 150.0):
  n = _num_thresholds(max_threshold)
  xp, _ = _inputs.backend(*totals.values())
  acc = xp.cumsum(totals["hist"])[:n + 1] / xp.maximum(totals["total"], 1e-30)   # acc(t), t = 0..n
  auc = (xp.sum(acc) - 0.5 * (acc[0] + acc[-1])) / n        # trapezoid rule, unit spacing, / T
  return xp.where(totals["total"] > 0, auc, xp.nan)


def rebalanced_pixel_weights(gt_ab, class_weights, bins=None) -> np.ndarray:
  """Per-pixel weights (B, H, W) float32 for the rebalanced AuC: the rebalancing weight of each pixel's
  true (nearest) ab bin. Host-side NumPy (the bin search is `AbBins.hard_encode`).

  Args:
    gt_ab: (B, H, W, 2) true ab.
    class_weights: (Q,) from `dense_jax.data.color.rebalancing_weights`.
    bins: the `AbBins` the weights belong to (default `AbBins()`).
  """
  from dense_jax.data import color  # pylint: disable=g-import-not-at-top
  bins = color.AbBins() if bins is None else bins
  if np.ndim(gt_ab) != 4 or np.shape(gt_ab)[-1] != 2:
    raise ValueError(f"gt_ab: expected an ab map of shape (B, H, W, 2), got {np.shape(gt_ab)}")
  class_weights = np.asarray(class_weights, np.float32)
  if class_weights.shape != (bins.num_bins,):
    raise ValueError(f"class_weights: expected shape ({bins.num_bins},) (one per bin), got {class_weights.shape}")
  return class_weights[bins.hard_encode(np.asarray(gt_ab))]


def ab_auc(pred_ab, gt_ab, valid=None, weights=None, max_threshold: float = 150.0) -> float:
  """AuC in [0, 1] of the ab-error CDF over thresholds 0, 1, ..., max_threshold (see module doc).

  Args:
    pred_ab, gt_ab: (B, H, W, 2) ab maps (CIE Lab units).
    valid: optional boolean (B, H, W); default all pixels.
    weights: optional non-negative (B, H, W) per-pixel weights (rebalanced AuC).
    max_threshold: T, a positive whole number (150 in the paper).
  Returns a Python float for concrete inputs (float64), a JAX scalar under `jit`; NaN without weight.
  Concrete inputs with NaN or inf ab values at valid pixels are a ValueError; under `jit` (unchecked)
  such a pixel counts as an error above every threshold.
  """
  out = ab_auc_from_totals(ab_auc_totals(pred_ab, gt_ab, valid, weights, max_threshold), max_threshold)
  return out if _inputs.is_traced(pred_ab, gt_ab, valid, weights) else float(out)
