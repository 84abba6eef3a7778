"""Padded non-maximum suppression: a fixed number of outputs, indices plus a validity mask.

`nms_padded(boxes, scores, iou_threshold, max_output)` keeps what `torchvision.ops.nms` keeps, in the
same order, truncated or padded to `max_output`:

  1. order the boxes by score, descending, ties by index (a stable sort, as torchvision's CPU kernel);
     boxes flagged invalid (padding, below a score threshold) go last and are never kept;
  2. greedily walk that order: keep a box unless a kept box of the same class (`classes`, for
     `batched_nms_padded`; one class otherwise) overlaps it with IoU > `iou_threshold` (strictly).

Returns `(indices, valid)`: `indices` int32 `(max_output,)` into the input boxes, in keep order (score
descending), `valid` bool `(max_output,)` true for the first `min(kept, max_output)` entries; padding
entries hold index 0 (safe to gather, mask them).

How (static shapes, the TF Model Garden idea of tiled NMS): the sorted boxes are cut into tiles of
`tile_size`. A tile is first suppressed by the boxes already kept, held in a buffer of `max_output` rows
(`max_output x tile` IoUs), then by itself: inside the tile the greedy rule `keep[j] = alive[j] and not
any(keep[i] and iou[i, j] > t for i < j)` has exactly one solution, reached by iterating the rule from
`keep = alive` (after m iterations the first m entries are final, so it stops after at most tile + 1
iterations, usually 2-4). The loop over tiles stops once `max_output` boxes are kept or the remaining
boxes are all invalid (e.g. below a score threshold: cheap per-class NMS over many candidates). Work: about
`N x max_output` IoUs instead of torchvision's up to `N^2 / 2` sequential ones; memory `O(tile^2 +
max_output x tile)`.

Arithmetic: IoU is computed with torchvision's association `inter / (area_i + area_j - inter)` in
float32 (or the boxes' wider dtype), and a Python-float threshold is turned into the float32 value `t'`
for which `iou > t'` holds exactly when torchvision's `(double) iou > threshold` does, so boxes exactly at
the threshold are decided the same way. Boxes with empty union never suppress (torchvision: NaN > t is
false).

Per image: leading dimensions of `boxes (..., N, 4)` / `scores (..., N)` are mapped over (vmap).
Per class: `batched_nms_padded` masks the IoU between different classes (exactly torchvision's
`batched_nms` without its coordinate-offset approximation; same keep set, same order up to score ties
across classes, which torchvision's unstable final sort leaves unspecified).
NMS is not differentiable: the outputs are integer indices and masks. The public functions are jitted
(threshold, max_output and tile_size static), so eager calls compile once per shape. Timings: docs/results.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.ops.boxes import _intersection_union


def _as_threshold(iou_threshold):
  """The float32 `t'` with `x > t'  <=>  float64(x) > iou_threshold` for every float32 `x`."""
  if not isinstance(iou_threshold, (int, float, np.floating)) or isinstance(iou_threshold, bool):
    raise ValueError(f"iou_threshold: expected a Python number (static), got {iou_threshold!r}")
  t = float(iou_threshold)
  if not np.isfinite(t):
    raise ValueError(f"iou_threshold: expected a finite number, got {iou_threshold!r}")
  f = np.float32(t)
  if float(f) > t:  # float32 rounding went up: x > t  <=>  x >= f  <=>  x > nextafter(f, -inf)
    f = np.nextafter(f, np.float32(-np.inf))
  return f


def _check(boxes, scores, max_output, tile_size, valid, classes):
  if getattr(boxes, "ndim", 0) < 2 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected shape (..., N, 4), got {getattr(boxes, 'shape', type(boxes))}")
  if getattr(scores, "shape", None) != boxes.shape[:-1]:
    raise ValueError(f"scores: expected shape {boxes.shape[:-1]} (boxes' leading shape), got "
                     f"{getattr(scores, 'shape', type(scores))}")
  for name, value in (("max_output", max_output), ("tile_size", tile_size)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
  for name, value in (("valid", valid), ("classes", classes)):
    if value is not None and getattr(value, "shape", None) != boxes.shape[:-1]:
      raise ValueError(f"{name}: expected shape {boxes.shape[:-1]}, got {getattr(value, 'shape', type(value))}")


def _overlaps(a, b, threshold):
  """`(Na, Nb)` bool: IoU(a_i, b_j) > threshold, union > 0."""
  inter, union = _intersection_union(a, b)
  positive = union > 0
  return positive & (inter / jnp.where(positive, union, 1) > threshold)


def _nms_one(boxes, scores, valid, classes, threshold, max_output, tile_size):
  n = boxes.shape[0]
  if n == 0:
    return jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool)
  boxes = boxes.astype(jnp.promote_types(boxes.dtype, jnp.float32))
  # Sort: valid first, then score descending (+0.0 folds -0.0 into 0.0), then index (stable).
  neg_score = -(scores.astype(jnp.float32) + 0.0)
  order_keys = ((~valid).astype(jnp.int32), neg_score, jnp.arange(n, dtype=jnp.int32))
  _, _, order = lax.sort(order_keys, num_keys=3)
  tile = min(tile_size, n)
  padded = -(-n // tile) * tile
  pad = padded - n

  def take(x, fill):
    x = x[order]
    return jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill) if pad else x

  s_boxes, s_valid, s_classes = take(boxes, 0), take(valid, False), take(classes, 0)
  s_index = jnp.pad(order, (0, pad))
  upper = jnp.asarray(np.triu(np.ones((tile, tile), bool), k=1))  # [i, j]: i comes before j

  def tile_body(state):
    t, count, k_boxes, k_classes, k_index = state
    start = t * tile
    tb = lax.dynamic_slice_in_dim(s_boxes, start, tile)
    tv = lax.dynamic_slice_in_dim(s_valid, start, tile)
    tc = lax.dynamic_slice_in_dim(s_classes, start, tile)
    ti = lax.dynamic_slice_in_dim(s_index, start, tile)
    kept_slot = jnp.arange(max_output) < count
    cross = _overlaps(k_boxes, tb, threshold) & (k_classes[:, None] == tc[None, :]) & kept_slot[:, None]
    alive = tv & ~jnp.any(cross, axis=0)
    inside = _overlaps(tb, tb, threshold) & (tc[:, None] == tc[None, :]) & upper

    def fixed_point(carry):
      keep, _ = carry
      new = alive & ~jnp.any(inside & keep[:, None], axis=0)
      return new, jnp.any(new != keep)

    keep, _ = lax.while_loop(lambda c: c[1], fixed_point, (alive, jnp.array(True)))
    rank = jnp.cumsum(keep.astype(jnp.int32))
    keep = keep & (count + rank <= max_output)
    slot = jnp.where(keep, count + rank - 1, max_output)  # max_output: dropped
    k_boxes = k_boxes.at[slot].set(tb, mode="drop")
    k_classes = k_classes.at[slot].set(tc, mode="drop")
    k_index = k_index.at[slot].set(ti, mode="drop")
    return t + 1, count + jnp.sum(keep, dtype=jnp.int32), k_boxes, k_classes, k_index

  init = (jnp.int32(0), jnp.int32(0), jnp.zeros((max_output, 4), s_boxes.dtype),
          jnp.zeros((max_output,), s_classes.dtype), jnp.zeros((max_output,), jnp.int32))
  num_tiles = padded // tile

  def more(state):  # tiles left, room left, and the next tile starts with a valid box (valid sort first)
    t, count = state[0], state[1]
    return (t < num_tiles) & (count < max_output) & s_valid[jnp.minimum(t, num_tiles - 1) * tile]

  _, count, _, _, k_index = lax.while_loop(more, tile_body, init)
  return k_index, jnp.arange(max_output) < count


@functools.partial(jax.jit, static_argnames=("iou_threshold", "max_output", "tile_size"))
def batched_nms_padded(boxes, scores, classes, iou_threshold: float, max_output: int, *, valid=None,
                       tile_size: int = 256):
  """Per-class padded NMS (torchvision.ops.batched_nms semantics; see the module docstring).

  Args:
    boxes: `(..., N, 4)` xyxy boxes (any leading image dimensions, mapped over).
    scores: `(..., N)` scores.
    classes: `(..., N)` integer class (or level) of each box; only boxes of one class suppress each
      other. None: one class.
    iou_threshold: suppress IoU > this (a static Python float; ties decided as torchvision does).
    max_output: static number of outputs.
    valid: optional `(..., N)` bool; False boxes are never kept and never suppress.
    tile_size: static tile length (speed/memory knob; the result does not depend on it).

  Returns:
    `(indices int32 (..., max_output), valid bool (..., max_output))`.
  """
  _check(boxes, scores, max_output, tile_size, valid, classes)
  threshold = _as_threshold(iou_threshold)
  if valid is None:
    valid = jnp.ones(scores.shape, bool)
  if classes is None:
    classes = jnp.zeros(scores.shape, jnp.int32)
  fn = lambda b, s, v, c: _nms_one(b, s, v.astype(bool), c.astype(jnp.int32), threshold, int(max_output),
                                   int(tile_size))
  for _ in range(boxes.ndim - 2):
    fn = jax.vmap(fn)
  return fn(boxes, scores, valid, classes)


@functools.partial(jax.jit, static_argnames=("iou_threshold", "max_output", "tile_size"))
def nms_padded(boxes, scores, iou_threshold: float, max_output: int, *, valid=None, tile_size: int = 256):
  """Padded NMS over all boxes (torchvision.ops.nms semantics; see the module docstring).

  `boxes (..., N, 4)` xyxy, `scores (..., N)`, optional `valid (..., N)` -> `(indices int32 (...,
  max_output), valid bool (..., max_output))`; indices in descending score order, padding holds 0.
  """
  return batched_nms_padded(boxes, scores, None, iou_threshold, max_output, valid=valid, tile_size=tile_size)
