"""Depth-estimation errors of Eigen et al. (NIPS 2014) as NYUv2 papers report them (BTS, AdaBins).

With `p` the prediction clipped to [min_depth, max_depth], `g` the ground truth, both in metres, and
`e = ln p - ln g`, over the valid pixels of a set S (one image, or all pixels pooled):

  abs_rel  = mean |p - g| / g          sq_rel  = mean (p - g)^2 / g
  rmse     = sqrt(mean (p - g)^2)      rmse_log = sqrt(mean e^2)
  log10    = mean |log10 p - log10 g|  silog   = 100 sqrt(mean e^2 - (mean e)^2)
  delta_k  = fraction with max(p / g, g / p) < 1.25^k,  k = 1, 2, 3

A pixel is valid where `valid` (default `gt > 0`) holds and min_depth < g <= max_depth.
`reduction="images"` computes each metric on each image's valid pixels and averages over the images
that have any (the Eigen / BTS / AdaBins convention; rmse is the mean of per-image RMSEs);
`reduction="pixels"` pools all valid pixels of the batch. With no valid pixel at all every value is NaN.

Accumulating over an evaluation (jit-able, batches of fixed shape): `depth_error_totals` returns scalars
that add across batches (per-image metric sums + image count, and pooled pixel sums);
`depth_errors_from_totals(totals, reduction)` turns the sum into the metrics; `depth_errors` is the two
in one call.

NYUv2: `eigen_crop_mask()` is the evaluation crop of Eigen et al., rows 45:471 and columns 41:601 of the
480x640 image, as a mask (the image is not sliced, so predictions keep their full size). We use row 45,
as Eigen's evaluation code and BTS/AdaBins do; some public code uses row 54 (Garg's crop starts at
0.40810811 * 480 = 195.9 rows instead and is a different crop).
"""

from __future__ import annotations

import numpy as np

from dense_jax.metrics import _inputs

KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
# Pooled sums (per image, then added): the pixel count and the sums the metrics are built from.
_SUMS = ("n", "abs_rel", "sq_rel", "sq", "log_sq", "log10", "log", "delta1", "delta2", "delta3")
NYU_SIZE = (480, 640)
EIGEN_CROP = (45, 471, 41, 601)   # rows [45, 471), columns [41, 601) of 480 x 640


def eigen_crop_mask(height: int = 480, width: int = 640) -> np.ndarray:
  """Boolean (height, width) mask of the Eigen crop (rows 45:471, columns 41:601 of 480x640).

  Other sizes get the same crop scaled to them (rounded), for a NYUv2 image evaluated at another size.
  """
  r0, r1, c0, c1 = EIGEN_CROP
  sy, sx = height / NYU_SIZE[0], width / NYU_SIZE[1]
  mask = np.zeros((height, width), bool)
  mask[int(round(r0 * sy)):int(round(r1 * sy)), int(round(c0 * sx)):int(round(c1 * sx))] = True
  return mask


def _check(pred, gt, valid, min_depth, max_depth):
  if np.ndim(gt) != 3:
    raise ValueError(f"gt: expected a (B, H, W) depth map in metres, got shape {np.shape(gt)}")
  _inputs.check_shape(pred, np.shape(gt), "pred", "(B, H, W) like gt")
  if valid is not None:
    _inputs.check_shape(valid, np.shape(gt), "valid", "boolean (B, H, W) like gt")
  if not 0 < min_depth < max_depth:
    raise ValueError(f"min_depth, max_depth: expected 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
  if not _inputs.is_traced(pred, gt):
    for name, x in (("pred", pred), ("gt", gt)):
      x = np.asarray(x)
      bad = ~(x >= 0)   # negative or NaN
      if bad.any():
        raise ValueError(f"{name}: expected depths >= 0 (0 = invalid in gt), got {int(bad.sum())} negative "
                         f"or NaN values (min {np.nanmin(x) if np.isfinite(x).any() else x.min()})")


def _per_image_sums(pred, gt, valid, min_depth, max_depth, xp):
  """Dict of (B,) sums over each image's valid pixels (see `_SUMS`)."""
  p = xp.clip(_inputs.as_float(pred, xp), min_depth, max_depth)
  g = _inputs.as_float(gt, xp)
  ok = _inputs.as_valid(valid, g > 0, g.shape, xp) & (g > min_depth) & (g <= max_depth)
  g = xp.where(ok, g, 1.0)   # masked pixels never reach a division or a log
  p = xp.where(ok, p, 1.0)
  e = xp.log(p) - xp.log(g)
  ratio = xp.maximum(p / g, g / p)
  okf = ok.astype(p.dtype)

  def s(x):
    return xp.sum(xp.where(ok, x, 0.0), axis=(1, 2))

  return {"n": xp.sum(okf, axis=(1, 2)), "abs_rel": s(xp.abs(p - g) / g), "sq_rel": s((p - g) ** 2 / g),
          "sq": s((p - g) ** 2), "log_sq": s(e ** 2), "log10": s(xp.abs(e) / np.log(10.0)), "log": s(e),
          **{f"delta{k}": s((ratio < 1.25 ** k).astype(p.dtype)) for k in (1, 2, 3)}}


def _metrics(sums, xp):
  """Metrics from sums over one set of pixels (any leading shape); NaN where the set is empty."""
  n = sums["n"]
  safe = xp.maximum(n, 1.0)
  mean = {k: sums[k] / safe for k in _SUMS if k != "n"}
  out = {"abs_rel": mean["abs_rel"], "sq_rel": mean["sq_rel"], "rmse": xp.sqrt(mean["sq"]),
         "rmse_log": xp.sqrt(mean["log_sq"]), "log10": mean["log10"],
         # Clamp: mean e^2 - (mean e)^2 is a variance, but may round below 0.
         "silog": 100.0 * xp.sqrt(xp.maximum(mean["log_sq"] - mean["log"] ** 2, 0.0)),
         **{f"delta{k}": mean[f"delta{k}"] for k in (1, 2, 3)}}
  return {k: xp.where(n > 0, v, xp.nan) for k, v in out.items()}


def depth_error_totals(pred, gt, valid=None, min_depth: float = 1e-3, max_depth: float = 10.0) -> dict:
  """Scalars that add across batches: `images` (images with a valid pixel), `image_<metric>` (sums of
  the per-image metrics over those images) and `pixel_<sum>` (pooled sums over all valid pixels).

  jit-able (static shapes); add the dicts of successive batches (e.g. `jax.tree.map(jnp.add, a, b)`)
  and call `depth_errors_from_totals` at the end. Padding examples: pass `valid` False for them.
  """
  _check(pred, gt, valid, min_depth, max_depth)
  xp, _ = _inputs.backend(pred, gt, valid)
  sums = _per_image_sums(pred, gt, valid, min_depth, max_depth, xp)
  per_image = _metrics(sums, xp)
  has = sums["n"] > 0
  out = {"images": xp.sum(has.astype(sums["n"].dtype))}
  out.update({f"image_{k}": xp.sum(xp.where(has, v, 0.0)) for k, v in per_image.items()})
  out.update({f"pixel_{k}": xp.sum(v) for k, v in sums.items()})
  return out


def depth_errors_from_totals(totals: dict, reduction: str = "images") -> dict:
  """The metrics (see module doc) from accumulated `depth_error_totals`."""
  xp, _ = _inputs.backend(*totals.values())
  if reduction == "images":
    n = totals["images"]
    return {k: xp.where(n > 0, totals[f"image_{k}"] / xp.maximum(n, 1.0), xp.nan) for k in KEYS}
  if reduction == "pixels":
    return _metrics({k: totals[f"pixel_{k}"] for k in _SUMS}, xp)
  raise ValueError(f"reduction: expected 'images' or 'pixels', got {reduction!r}")


def depth_errors(pred, gt, valid=None, reduction: str = "images", min_depth: float = 1e-3,
                 max_depth: float = 10.0) -> dict:
  """Depth errors of `pred` against `gt`, both (B, H, W) in metres (see the module doc).

  Args:
    pred: predicted depth; clipped to [min_depth, max_depth] before any log.
    gt: ground-truth depth; pixels outside (min_depth, max_depth] are invalid.
    valid: optional boolean (B, H, W); default `gt > 0`. Combine with `eigen_crop_mask()` for NYUv2.
    reduction: 'images' (per-image metrics averaged over images with a valid pixel) or 'pixels'.
    min_depth, max_depth: NYUv2's defaults; a dataset with farther depth passes its own.

  Returns: dict with keys abs_rel, sq_rel, rmse, rmse_log, log10, silog, delta1, delta2, delta3; Python
  floats for concrete inputs (computed in float64), JAX scalars under `jit`.
  Raises ValueError on shape mismatches, bad depth ranges and (concrete inputs) negative or NaN depths.
  """
  if reduction not in ("images", "pixels"):
    raise ValueError(f"reduction: expected 'images' or 'pixels', got {reduction!r}")
  out = depth_errors_from_totals(depth_error_totals(pred, gt, valid, min_depth, max_depth), reduction)
  if not _inputs.is_traced(pred, gt, valid):
    out = {k: float(v) for k, v in out.items()}
  return out
