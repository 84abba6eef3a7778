"""RoIAlign (He et al., Mask R-CNN) over one feature map or an FPN, with static shapes.

`roi_align` computes what `torchvision.ops.roi_align` computes, in NHWC; `multilevel_roi_align` what
`torchvision.ops.MultiScaleRoIAlign` computes (each RoI pooled from the one level the FPN rule picks).
Boxes are xyxy `(x0, y0, x1, y1)` in input-image pixels (see `dense_jax.ops.boxes`).

The math (torchvision's CPU kernel). For a RoI scaled to the feature map (`spatial_scale`), with
`offset = 0.5` if `aligned` else 0:

  start = box[:2] * scale - offset,   size = (box[2:] - box[:2]) * scale   (>= 1 per axis unless aligned)
  bin = size / (out_h, out_w),        grid = sampling_ratio if > 0 else ceil(size / (out_h, out_w))
  sample (iy, ix) of bin (p, q):      y = start_y + p * bin_y + (iy + 0.5) * bin_y / grid_y   (same for x)
  out[p, q] = mean over the grid_y * grid_x samples of bilinear(feature, y, x)

where a sample with y < -1, y > H, x < -1 or x > W contributes 0, coordinates in [-1, 0] are clamped to 0
and those at or past the last pixel read the last pixel. Every factor is separable in (y, x): the
output is `out[p, q] = sum_{h, w} Ay[p, h] Ax[q, w] F[h, w]` with per-RoI interpolation matrices
`Ay (out_h, H)`, `Ax (out_w, W)` that each hold, per row, the bilinear weights of its samples / grid.

Two backends, equal up to float rounding (tested):
  'gather'  reads the 2x2 neighbours of every sample from the flattened feature maps (all levels in
            one table, two gathers of horizontal pairs): work ~ K * out_h * out_w * grid^2 * 4 * C, the
            gradient is a scatter-add. The choice on CPU/GPU.
  'einsum'  builds `Ay`, `Ax` as dense one-hot-weighted matrices and contracts
            `sum_h Ay[p, h] F[h, w, c]` then `sum_w Ax[q, w] (.)` on the MXU; the gradient is the same
            contractions (no scatter-add, which TPUs serialise). Work ~ K * out_h * H * W * C per level
            (all levels for every RoI, masked) and an intermediate of K * out_h * W * C per level (e.g.
            1024 RoIs, 7 rows, P2 of a 512 image, C=256: 0.9 GB in float32): meant for accelerators,
            slow on CPU. Per-image boxes `(N, R, 4)` contract each image with its own RoIs; `(K, 4)`
            with `batch_indices` use a one-hot over the batch (N times the work).

Adaptive sampling (`sampling_ratio <= 0`) makes the number of samples data dependent. Here the grid is
padded to a static `max_sampling_ratio` per axis and the unused samples are masked (weight 0), so the
result equals torchvision's whenever `ceil(size / out) <= max_sampling_ratio`. The default bound is
`ceil(extent / out)` of the largest feature map, exact for every RoI that lies inside the feature map
(boxes clipped to the image); larger RoIs use `max_sampling_ratio` evenly spaced samples per bin
(a documented deviation). Fixed ratios (Mask R-CNN's heads use 2) cost nothing extra.

RoI layouts: `boxes (N, R, 4)` (R RoIs per image, output `(N, R, out_h, out_w, C)`) or `boxes (K, 4)`
with `batch_indices (K,)` (output `(K, out_h, out_w, C)`, torchvision's (K, 5) split in two). Padding
RoIs give finite values; mask them. Gradients flow to the features (torchvision's backward) and also
to the boxes through the bilinear weights (torchvision gives boxes none; detach them if you need that).
The forward materialises the gathered neighbours (K x samples x 2 x C) before the weighted sum
(chunking over RoIs with `lax.map` is slower; timings against torchvision in docs/results.md).
The public functions are jitted with their configuration static (sizes, ratios, flags as hashable
Python values: tuples, not lists), so eager calls compile once per shape.

Input contract and what is checked. Features are NHWC; nothing in an array's shape tells an NCHW map
`(N, C, H, W)` from an NHWC one of height C (a torch map must be transposed, `.transpose(0, 2, 3, 1)`).
Shapes, ranks and dtypes are checked always (ValueError). Values are checked only when they are concrete
(an eager call; under an enclosing `jit` / `vmap` they are tracers and pass unchecked, without a
recompile): `batch_indices` outside `[0, N)` are a ValueError (under `jit` they are clamped to
`[0, N - 1]`), and when most RoIs lie entirely outside the image frame (the feature map divided by
`spatial_scale`; `image_size` for the FPN), pooling only zeros — a wrong `spatial_scale`, or an NCHW
map read as NHWC whose boxes' x range exceeds the map's "W" — a UserWarning says so (one stray RoI
outside is legal, as in torchvision).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import as_pair, check_choice, check_in_range, check_rank, concrete
from dense_jax.ops.boxes import box_area

BACKENDS = ("gather", "einsum")


def fpn_level_of_boxes(boxes, k_min: int = 2, k_max: int = 5, canonical_scale: float = 224,
                       canonical_level: int = 4, eps: float = 1e-6):
  """FPN level of each box (Lin et al., eq. 1; torchvision's LevelMapper): int32 `(...)` in [k_min, k_max],

    k = clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps), k_min, k_max)

  computed in float32 with torchvision's operation order. Absolute levels (2 = P2), not indices. Not
  differentiable (stop_gradient). Zero-area boxes go to k_min.
  """
  if getattr(boxes, "ndim", 0) < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected shape (..., 4), got {getattr(boxes, 'shape', type(boxes))}")
  if k_min > k_max:
    raise ValueError(f"k_min, k_max: expected k_min <= k_max, got {k_min}, {k_max}")
  s = jnp.sqrt(box_area(lax.stop_gradient(jnp.asarray(boxes, jnp.float32))))
  k = jnp.floor(canonical_level + jnp.log2(s / jnp.float32(canonical_scale)) + jnp.float32(eps))
  return jnp.clip(k, k_min, k_max).astype(jnp.int32)


def _axis_weights(start, size, out: int, grid, max_grid: int, extent):
  """Sample positions along one axis -> (low, high) int32 and (w_low, w_high) float, each `(K, out, G)`.

  `start`, `size`: `(K,)` RoI start and extent in feature pixels; `grid`: `(K,)` int samples per bin
  (0 <= grid <= max_grid); `extent`: `(K,)` int feature size along the axis. The weights include the
  validity of the sample and the 1/grid of the mean.
  """
  bin_size = size / out
  p = jnp.arange(out, dtype=start.dtype)[None, :, None]
  i = jnp.arange(max_grid, dtype=start.dtype)[None, None, :]
  grid_f = jnp.maximum(grid, 1).astype(start.dtype)[:, None, None]
  b = bin_size[:, None, None]
  # torchvision's association: (start + p * bin) + ((i + 0.5) * bin) / grid
  coord = start[:, None, None] + p * b + (i + 0.5) * b / grid_f
  ext = extent[:, None, None]
  used = (coord >= -1.0) & (coord <= ext.astype(coord.dtype)) & (i < grid[:, None, None].astype(coord.dtype))
  coord = jnp.maximum(coord, 0.0)
  low = jnp.floor(lax.stop_gradient(coord)).astype(jnp.int32)
  at_edge = low >= ext - 1
  low = jnp.where(at_edge, ext - 1, low)
  high = jnp.where(at_edge, ext - 1, low + 1)
  coord = jnp.where(at_edge, low.astype(coord.dtype), coord)
  frac = coord - low.astype(coord.dtype)
  scale = jnp.where(used, 1.0 / grid_f, 0.0)
  return low, high, (1.0 - frac) * scale, frac * scale


def _rois_to_samples(boxes, scale, out_hw, sampling_ratio, aligned, max_grid, heights, widths):
  """Per-RoI sample indices/weights along y and x (see `_axis_weights`), for `boxes (K, 4)` in image
  pixels, per-RoI `scale`, `heights`, `widths` `(K,)`."""
  out_h, out_w = out_hw
  offset = 0.5 if aligned else 0.0
  x0 = boxes[:, 0] * scale - offset
  y0 = boxes[:, 1] * scale - offset
  x1 = boxes[:, 2] * scale - offset
  y1 = boxes[:, 3] * scale - offset
  roi_w, roi_h = x1 - x0, y1 - y0
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  gy, gx = max_grid
  if sampling_ratio > 0:
    grid_y = jnp.full(roi_h.shape, sampling_ratio, jnp.int32)
    grid_x = grid_y
  else:
    grid_y = jnp.clip(jnp.ceil(lax.stop_gradient(roi_h) / out_h), 0, gy).astype(jnp.int32)
    grid_x = jnp.clip(jnp.ceil(lax.stop_gradient(roi_w) / out_w), 0, gx).astype(jnp.int32)
  ys = _axis_weights(y0, roi_h, out_h, grid_y, gy, heights)
  xs = _axis_weights(x0, roi_w, out_w, grid_x, gx, widths)
  return ys, xs


def _gather_backend(features, boxes, batch, level, scales, out_hw, sampling_ratio, aligned, max_grid):
  """`features`: list of `(N, H_l, W_l, C)`; `boxes (K, 4)`, `batch (K,)`, `level (K,)` index into the
  list. Every level gets a zero column and row on its right and bottom and all are flattened into one
  `(sum_l N (H_l + 1)(W_l + 1), C)` table, so the horizontal neighbours `(x_lo, x_lo + 1)` of a sample are
  two consecutive table rows: one gather of `(2, C)` slices per sample and vertical neighbour (at the
  last column `x_lo + 1` is the zero column, whose weight is 0 there). Fewer, contiguous reads than four
  single-pixel gathers, and half the scatter-adds in the gradient (a faster backward)."""
  n, c = features[0].shape[0], features[0].shape[-1]
  sizes = [(f.shape[1], f.shape[2]) for f in features]
  padded = [jnp.pad(f, ((0, 0), (0, 1), (0, 1), (0, 0))) for f in features]
  offsets = np.cumsum([0] + [n * (h + 1) * (w + 1) for h, w in sizes])[:-1]
  table = jnp.concatenate([f.reshape(-1, c) for f in padded], axis=0)
  heights = jnp.asarray([h for h, _ in sizes], jnp.int32)[level]
  widths = jnp.asarray([w for _, w in sizes], jnp.int32)[level]
  scale = jnp.asarray(scales, boxes.dtype)[level]
  base = jnp.asarray(offsets, jnp.int32)[level] + batch * (heights + 1) * (widths + 1)
  (y_lo, y_hi, wy_lo, wy_hi), (x_lo, _, wx_lo, wx_hi) = _rois_to_samples(
      boxes, scale, out_hw, sampling_ratio, aligned, max_grid, heights, widths)
  wx = jnp.stack([wx_lo, wx_hi], axis=-1)  # (K, Q, Gx, 2)
  dims = lax.GatherDimensionNumbers(offset_dims=(5, 6), collapsed_slice_dims=(), start_index_map=(0,))
  out = 0.0
  for y_idx, wy in ((y_lo, wy_lo), (y_hi, wy_hi)):
    row = base[:, None, None] + y_idx * (widths[:, None, None] + 1)  # (K, P, Gy)
    start = row[:, :, :, None, None] + x_lo[:, None, None, :, :]  # (K, P, Gy, Q, Gx)
    values = lax.gather(table, start[..., None], dims, slice_sizes=(2, c), mode="clip")  # (K,P,Gy,Q,Gx,2,C)
    weight = wy[:, :, :, None, None, None] * wx[:, None, None]  # (K, P, Gy, Q, Gx, 2)
    out = out + jnp.einsum("kpyqxbc,kpyqxb->kpqc", values, weight.astype(values.dtype),
                           precision=lax.Precision.HIGHEST)
  return out


def _interp_matrix(low, high, w_low, w_high, extent: int, keep):
  """Dense `(K, out, extent)` interpolation matrix from per-sample neighbours (summed over samples),
  zero for RoIs where `keep` `(K,)` is False."""
  pos = jnp.arange(extent, dtype=jnp.int32)
  m = (w_low[..., None] * (low[..., None] == pos) + w_high[..., None] * (high[..., None] == pos)).sum(axis=2)
  return m * keep[:, None, None].astype(m.dtype)


def _einsum_backend(features, boxes, batch, level, scales, out_hw, sampling_ratio, aligned, max_grid,
                    per_image):
  """Separable one-hot contractions per level; `per_image = (N, R)` when RoIs are laid out per image
  (contract each image with its own RoIs) else a one-hot over the batch index."""
  precision = lax.Precision.HIGHEST
  out = 0.0
  for l, (feature, scale) in enumerate(zip(features, scales)):
    n, h, w, c = feature.shape
    keep = level == l
    const = lambda v: jnp.full(boxes.shape[:1], v, jnp.int32)
    ys, xs = _rois_to_samples(boxes, jnp.full(boxes.shape[:1], scale, boxes.dtype), out_hw, sampling_ratio,
                              aligned, max_grid, const(h), const(w))
    ay = _interp_matrix(*ys, h, keep).astype(feature.dtype)  # (K, P, H)
    ax = _interp_matrix(*xs, w, keep).astype(feature.dtype)  # (K, Q, W)
    if per_image is not None:
      nn, r = per_image
      t = jnp.einsum("nrph,nhwc->nrpwc", ay.reshape(nn, r, *ay.shape[1:]), feature, precision=precision)
      o = jnp.einsum("nrqw,nrpwc->nrpqc", ax.reshape(nn, r, *ax.shape[1:]), t, precision=precision)
      o = o.reshape(-1, *o.shape[2:])
    else:
      onehot = (batch[:, None] == jnp.arange(n)).astype(feature.dtype)  # (K, N)
      ay_batch = ay[:, :, None, :] * onehot[:, None, :, None]  # (K, P, N, H): the RoI's image only
      t = jnp.einsum("kpnh,nhwc->kpwc", ay_batch, feature, precision=precision)
      o = jnp.einsum("kqw,kpwc->kpqc", ax, t, precision=precision)
    out = out + o
  return out


def _prepare(features, boxes, batch_indices, output_size, sampling_ratio, max_sampling_ratio, backend):
  check_choice(backend, BACKENDS, "backend")
  out_hw = as_pair(output_size, "output_size")
  if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
    raise ValueError(f"sampling_ratio: expected an int (<= 0: adaptive), got {sampling_ratio!r}")
  if not features:
    raise ValueError("features: expected at least one (N, H, W, C) array, got none")
  for i, f in enumerate(features):
    check_rank(f, 4, f"features[{i}]", "NHWC")
    if f.shape[0] != features[0].shape[0] or f.shape[3] != features[0].shape[3]:
      raise ValueError(f"features[{i}]: expected batch {features[0].shape[0]} and {features[0].shape[3]} "
                       f"channels like features[0], got shape {f.shape}")
    if not jnp.issubdtype(f.dtype, jnp.floating):
      raise ValueError(f"features[{i}]: expected a floating dtype, got {f.dtype}")
  n = features[0].shape[0]
  boxes = jnp.asarray(boxes)
  if boxes.ndim == 3 and boxes.shape[-1] == 4:
    if batch_indices is not None:
      raise ValueError("batch_indices: only with boxes of shape (K, 4); boxes (N, R, 4) are per image")
    if boxes.shape[0] != n:
      raise ValueError(f"boxes: expected (N={n}, R, 4) like the features' batch, got {boxes.shape}")
    per_image = (boxes.shape[0], boxes.shape[1])
    batch = jnp.repeat(jnp.arange(n, dtype=jnp.int32), boxes.shape[1])
    flat = boxes.reshape(-1, 4)
  elif boxes.ndim == 2 and boxes.shape[-1] == 4:
    if batch_indices is None or getattr(batch_indices, "shape", None) != boxes.shape[:1]:
      raise ValueError(f"batch_indices: expected shape ({boxes.shape[0]},) with boxes (K, 4), got "
                       f"{getattr(batch_indices, 'shape', batch_indices)}")
    per_image = None
    batch = jnp.clip(jnp.asarray(batch_indices).astype(jnp.int32), 0, n - 1)
    flat = boxes
  else:
    raise ValueError(f"boxes: expected shape (N, R, 4) or (K, 4), got {boxes.shape}")
  compute = jnp.promote_types(features[0].dtype, jnp.float32)
  flat = flat.astype(compute)
  if sampling_ratio > 0:
    max_grid = (sampling_ratio, sampling_ratio)
  elif max_sampling_ratio is None:
    max_grid = (max(math.ceil(max(f.shape[1] for f in features) / out_hw[0]), 1),
                max(math.ceil(max(f.shape[2] for f in features) / out_hw[1]), 1))
  else:
    max_grid = as_pair(max_sampling_ratio, "max_sampling_ratio")
  return out_hw, flat, batch, per_image, max_grid, compute


def _run(features, flat, batch, level, scales, out_hw, sampling_ratio, aligned, max_grid, backend, per_image,
         compute, out_dtype, out_lead):
  features = [f.astype(compute) for f in features]
  if backend == "gather":
    out = _gather_backend(features, flat, batch, level, scales, out_hw, sampling_ratio, aligned, max_grid)
  else:
    out = _einsum_backend(features, flat, batch, level, scales, out_hw, sampling_ratio, aligned, max_grid,
                          per_image)
  return out.reshape(*out_lead, *out.shape[1:]).astype(out_dtype)


def _check_values(features, boxes, batch_indices, frame, frame_name: str) -> None:
  """Checks on concrete values (eager calls; nothing under `jit`, where the values are tracers):
  `batch_indices` must index the batch (ValueError), and most RoIs lying entirely outside `frame`
  `(H, W)` (in the boxes' pixels; each pools only zeros) is the sign of a wrong `spatial_scale` or of
  a feature map in another layout (UserWarning)."""
  n = features[0].shape[0]
  if batch_indices is not None:
    check_in_range(batch_indices, 0, n, "batch_indices", f"indices into the features' batch (N={n})",
                   hint=" (under jit they are clamped to [0, N - 1] unchecked)")
  b = concrete(boxes)
  if b is None or b.size == 0 or b.shape[-1] != 4 or not np.issubdtype(b.dtype, np.number):
    return
  b = b.reshape(-1, 4).astype(np.float64)
  h, w = frame
  outside = (b[:, 0] > w + 1) | (b[:, 2] < -1) | (b[:, 1] > h + 1) | (b[:, 3] < -1)
  if outside.sum() * 2 > len(b):   # most of them: a stray RoI outside is legal (torchvision pools zeros)
    first = int(np.flatnonzero(outside)[0])
    warnings.warn(
        f"boxes: {int(outside.sum())} of {len(b)} RoIs lie entirely outside the {frame_name} (H, W) = {(h, w)} "
        f"(e.g. RoI {first}: {tuple(float(v) for v in b[first])}), so they pool only zeros; check the boxes' "
        f"pixels against spatial_scale / image_size, and that the features are NHWC (a torch NCHW map "
        f"(N, C, H, W) must be transposed with .transpose(0, 2, 3, 1))", UserWarning, stacklevel=3)


def roi_align(features, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, *, batch_indices=None, max_sampling_ratio=None, backend: str = "gather"):
  """RoIAlign on one NHWC feature map: `torchvision.ops.roi_align` (see the module docstring).

  Args:
    features: `(N, H, W, C)` floating, channels last (a torch `(N, C, H, W)` map: `.transpose(0, 2, 3, 1)`).
    boxes: `(N, R, 4)` xyxy per image, or `(K, 4)` with `batch_indices (K,)` int in `[0, N)` (checked when
      concrete, ValueError; clamped to `[0, N - 1]` under `jit`). See "Input contract" in the module doc.
    output_size: `(out_h, out_w)` or an int.
    spatial_scale: feature pixels per image pixel (1/stride).
    sampling_ratio: samples per bin and axis; <= 0 adaptive `ceil(roi_size / out)` (static bound:
      `max_sampling_ratio`).
    aligned: shift the box by -0.5 feature pixels (pixel-centre convention) and allow RoIs below 1 pixel.
    max_sampling_ratio: int or pair, static bound of the adaptive grid (default `ceil(H / out_h)`,
      `ceil(W / out_w)`).
    backend: 'gather' or 'einsum'.

  Returns:
    `(N, R, out_h, out_w, C)` or `(K, out_h, out_w, C)`, features' dtype (computed in float32 or wider).
  """
  check_rank(features, 4, "features", "NHWC")
  try:
    scale = float(spatial_scale)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
    scale = math.nan
  if not scale > 0 or isinstance(spatial_scale, bool):
    raise ValueError(f"spatial_scale: expected a positive number (feature pixels per image pixel, 1/stride), "
                     f"got {spatial_scale!r}")
  _check_values([features], boxes, batch_indices, (features.shape[1] / scale, features.shape[2] / scale),
                f"feature map ({features.shape[1]}, {features.shape[2]}) / spatial_scale {scale}, i.e. the image")
  return _roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                    batch_indices=batch_indices, max_sampling_ratio=max_sampling_ratio, backend=backend)


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio", "aligned",
                                             "max_sampling_ratio", "backend"))
def _roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned, *, batch_indices,
               max_sampling_ratio, backend):
  out_hw, flat, batch, per_image, max_grid, compute = _prepare(
      [features], boxes, batch_indices, output_size, sampling_ratio, max_sampling_ratio, backend)
  level = jnp.zeros(flat.shape[:1], jnp.int32)
  lead = per_image if per_image is not None else flat.shape[:1]
  return _run([features], flat, batch, level, [float(spatial_scale)], out_hw, sampling_ratio, bool(aligned),
              max_grid, backend, per_image, compute, features.dtype, lead)


def fpn_levels_from_sizes(feature_sizes: Sequence[Sequence[int]], image_size) -> list[int]:
  """Level of each feature map as torchvision's MultiScaleRoIAlign infers it: `-round(log2(h / H))`,
  checked against the width."""
  height, width = as_pair(tuple(image_size), "image_size")
  levels = []
  for i, (h, w) in enumerate(feature_sizes):
    ly, lx = -round(math.log2(h / height)), -round(math.log2(w / width))
    if ly != lx:
      raise ValueError(f"features[{i}]: height and width imply different scales (2^-{ly}, 2^-{lx}) for "
                       f"image_size {image_size}, feature size {(h, w)}")
    levels.append(ly)
  return levels


def multilevel_roi_align(features: Sequence, boxes, output_size, image_size, sampling_ratio: int = 2,
                         aligned: bool = False, *, batch_indices=None, canonical_scale: float = 224,
                         canonical_level: int = 4, eps: float = 1e-6, max_sampling_ratio=None,
                         backend: str = "gather"):
  """RoIAlign over an FPN: `torchvision.ops.MultiScaleRoIAlign` (featmap_names '0'..'3' = P2..P5).

  Each feature map's level `l` is inferred from its size and `image_size` (`2^-l = h / H`, rounded in
  log2, as torchvision), each RoI is assigned the level `fpn_level_of_boxes(box, min l, max l,
  canonical_scale, canonical_level, eps)` and pooled from that map with `spatial_scale = 2^-l`.

  Args:
    features: sequence of `(N, H_l, W_l, C)` maps, finest first.
    boxes: `(N, R, 4)` xyxy per image, or `(K, 4)` with `batch_indices (K,)`.
    output_size: `(out_h, out_w)` or an int (7 for the box head, 14 for the mask head).
    image_size: `(H, W)` of the input images (torchvision: the largest unpadded image size).
    sampling_ratio, aligned, max_sampling_ratio, backend: as `roi_align` (Mask R-CNN: 2, False).

  Returns:
    `(N, R, out_h, out_w, C)` or `(K, out_h, out_w, C)`.
  """
  features = list(features)
  if features and all(getattr(f, "ndim", None) == 4 for f in features):
    try:
      frame = as_pair(tuple(image_size), "image_size")
    except (TypeError, ValueError):   # the jitted function names the bad image_size
      frame = None
    if frame is not None:
      _check_values(features, boxes, batch_indices, frame, "image")
  return _multilevel_roi_align(features, boxes, output_size, image_size, sampling_ratio, aligned,
                               batch_indices=batch_indices, canonical_scale=canonical_scale,
                               canonical_level=canonical_level, eps=eps, max_sampling_ratio=max_sampling_ratio,
                               backend=backend)


@functools.partial(jax.jit, static_argnames=("output_size", "image_size", "sampling_ratio", "aligned",
                                             "canonical_scale", "canonical_level", "eps", "max_sampling_ratio",
                                             "backend"))
def _multilevel_roi_align(features, boxes, output_size, image_size, sampling_ratio, aligned, *, batch_indices,
                          canonical_scale, canonical_level, eps, max_sampling_ratio, backend):
  features = list(features)
  out_hw, flat, batch, per_image, max_grid, compute = _prepare(
      features, boxes, batch_indices, output_size, sampling_ratio, max_sampling_ratio, backend)
  levels = fpn_levels_from_sizes([f.shape[1:3] for f in features], image_size)
  if levels != list(range(levels[0], levels[0] + len(levels))):
    raise ValueError(f"features: expected consecutive FPN levels, finest first, got levels {levels}")
  level = fpn_level_of_boxes(flat, levels[0], levels[-1], canonical_scale, canonical_level, eps) - levels[0]
  lead = per_image if per_image is not None else flat.shape[:1]
  return _run(features, flat, batch, level, [2.0 ** -l for l in levels], out_hw, sampling_ratio, bool(aligned),
              max_grid, backend, per_image, compute, features[0].dtype, lead)
