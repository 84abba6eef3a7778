"""Surface-normal errors (Fouhey et al. 2013, Eigen & Fergus 2015): angles between predicted and true normals.

With `p` and `g` normalised to unit length inside (the prediction need not be unit), the angle of a
pixel is `atan2(|p x g|, p . g)` in degrees (accurate near 0 and 180, unlike acos of a rounded dot
product). Over all valid pixels of the batch, pooled:

  mean, median, rmse = sqrt(mean angle^2)  (degrees)
  within_11_25, within_22_5, within_30     (fractions of pixels with angle < 11.25, 22.5, 30 degrees)

A pixel is valid where `valid` holds (default: the true normal is non-zero, the data contract's "0 =
invalid"). The median is exact (NumPy, float64) when the inputs are concrete; under `jit`, and in the
accumulator form, it comes from a histogram of `HIST_BINS` bins over [0, 180] degrees, i.e. a resolution
of 180 / HIST_BINS = 0.01 degrees, linearly interpolated inside the bin where the CDF crosses one half.

Accumulating over an evaluation: `normal_error_totals` (jit-able, adds across batches) and
`normal_errors_from_totals`. Concrete inputs with a zero-length normal at a valid pixel are refused
(ValueError); under `jit` such a pixel gets a 90 degree error (its unit vector is taken as 0).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax.metrics import _inputs

KEYS = ("mean", "median", "rmse", "within_11_25", "within_22_5", "within_30")
THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
HIST_BINS = 18000   # 0.01 degree bins over [0, 180]


def _check(pred, gt, valid):
  if np.ndim(gt) < 2 or np.shape(gt)[-1] != 3:
    raise ValueError(f"gt: expected normals of shape (..., 3), got {np.shape(gt)}")
  _inputs.check_shape(pred, np.shape(gt), "pred", "(..., 3) like gt")
  if valid is not None:
    _inputs.check_shape(valid, np.shape(gt)[:-1], "valid", "boolean, gt's shape without the last axis")


def angles(pred, gt, valid=None):
  """(angle in degrees, valid mask), both of gt's shape without its last axis; see the module doc."""
  _check(pred, gt, valid)
  xp, traced = _inputs.backend(pred, gt, valid)
  p, g = _inputs.as_float(pred, xp), _inputs.as_float(gt, xp)
  pn, gn = xp.linalg.norm(p, axis=-1), xp.linalg.norm(g, axis=-1)
  ok = _inputs.as_valid(valid, gn > 0, gn.shape, xp)
  if not traced:
    for name, norm in (("pred", pn), ("gt", gn)):
      zero = ok & ~(norm > 0)
      if zero.any():
        raise ValueError(f"{name}: expected non-zero normals at valid pixels, got {int(zero.sum())} of zero "
                         f"length (or NaN); mark them invalid with `valid`")
  p = p / xp.maximum(pn, 1e-12)[..., None]
  g = g / xp.maximum(gn, 1e-12)[..., None]
  cross = xp.linalg.norm(xp.cross(p, g), axis=-1)
  ang = xp.degrees(xp.arctan2(cross, xp.sum(p * g, axis=-1)))
  return xp.where(ok, ang, 0.0), ok


def normal_error_totals(pred, gt, valid=None, num_bins: int = HIST_BINS) -> dict:
  """Sums that add across batches: `count`, `sum`, `sum_sq`, the three `within_*` counts, and `hist`
  (num_bins,) counts of angles in bins of width 180 / num_bins. jit-able."""
  ang, ok = angles(pred, gt, valid)
  xp, _ = _inputs.backend(ang)
  okf = ok.astype(ang.dtype)
  out = {"count": xp.sum(okf), "sum": xp.sum(ang * okf), "sum_sq": xp.sum(ang ** 2 * okf)}
  out.update({k: xp.sum(((ang < t) & ok).astype(ang.dtype)) for k, t in THRESHOLDS.items()})
  idx = xp.clip(xp.floor(ang * (num_bins / 180.0)), 0, num_bins - 1).astype(xp.int32).reshape(-1)
  w = okf.reshape(-1)
  if xp is np:
    out["hist"] = np.bincount(idx, weights=w, minlength=num_bins)
  else:
    out["hist"] = jnp.zeros((num_bins,), ang.dtype).at[idx].add(w)
  return out


def histogram_median(hist, bin_width: float):
  """The median of values histogrammed in `hist` (bins [i w, (i + 1) w)), interpolated in its bin."""
  xp, _ = _inputs.backend(hist)
  hist = hist if xp is jnp else np.asarray(hist, np.float64)
  cdf = xp.cumsum(hist)
  half = cdf[-1] / 2.0
  i = xp.argmax(cdf >= half)            # first bin whose CDF reaches one half
  below = xp.where(i > 0, cdf[xp.maximum(i - 1, 0)], 0.0)
  frac = (half - below) / xp.maximum(hist[i], 1e-30)
  return xp.where(cdf[-1] > 0, (i + frac) * bin_width, xp.nan)


def normal_errors_from_totals(totals: dict) -> dict:
  xp, _ = _inputs.backend(*totals.values())
  n = totals["count"]
  safe = xp.maximum(n, 1.0)
  out = {"mean": totals["sum"] / safe, "rmse": xp.sqrt(totals["sum_sq"] / safe),
         "median": histogram_median(totals["hist"], 180.0 / totals["hist"].shape[0]),
         **{k: totals[k] / safe for k in THRESHOLDS}}
  return {k: xp.where(n > 0, out[k], xp.nan) for k in KEYS}


def normal_errors(pred, gt, valid=None) -> dict:
  """Angular errors (degrees; `within_*` fractions in [0, 1]) pooled over the valid pixels.

  Args:
    pred: (..., 3) predicted normals, any non-zero length (normalised inside).
    gt: (..., 3) true normals; zero vectors are invalid by default.
    valid: optional boolean of gt's shape without the last axis.

  Returns: dict with keys mean, median, rmse, within_11_25, within_22_5, within_30 — Python floats with
  the exact median for concrete inputs, JAX scalars with the histogram median (0.01 degree) under `jit`.
  NaN everywhere when no pixel is valid.
  """
  if _inputs.is_traced(pred, gt, valid):
    return normal_errors_from_totals(normal_error_totals(pred, gt, valid))
  ang, ok = angles(pred, gt, valid)
  a = ang[ok]
  if a.size == 0:
    return {k: float("nan") for k in KEYS}
  out = {"mean": a.mean(), "median": np.median(a), "rmse": np.sqrt(np.mean(a ** 2)),
         **{k: np.mean(a < t) for k, t in THRESHOLDS.items()}}
  return {k: float(out[k]) for k in KEYS}
