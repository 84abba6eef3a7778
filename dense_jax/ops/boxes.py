"""Axis-aligned boxes: layout conversion, area, IoU matrix, clipping, box <-> delta coding.

Box layout of every detection op in `dense_jax.ops` (boxes, anchors, nms, roi_align, matching,
mask_targets): **(x0, y0, x1, y1)**, torchvision's `(x1, y1, x2, y2)`, in continuous pixel coordinates
(pixel `(i, j)` covers `[j, j + 1) x [i, i + 1)`), so a box's width is `x1 - x0` (no `+ 1`). This is
the order torchvision's heads, deltas `(dx, dy, dw, dh)` and weights use, so imported weights and parity
tests need no permutation. The data contract (`dense_jax.data.sources`) stores boxes as
**(y0, x0, y1, x1)** half-open pixels: the same numbers in another order; `yxyx_to_xyxy` /
`xyxy_to_yxyx` convert (each is the same permutation, its own inverse). Keypoints in the data contract
are already `(x, y, v)`.

Every function works on any leading batch shape `(..., 4)`, is pure, static-shape and jit/vmap/grad
safe: degenerate boxes (zero or negative width, e.g. padding rows of zeros) give finite values and
finite gradients instead of torchvision's NaN/inf (IoU 0 where the union is 0; unit size in the
log of the delta coding); callers mask padding rows anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp

# torchvision.models.detection: BoxCoder weights of the RPN and of the box head (RoIHeads), and the
# clamp on dw, dh before exp (`math.log(1000.0 / 16)`) that keeps a decoded box below ~62x its anchor.
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _check_boxes(boxes, name: str) -> None:
  shape = getattr(boxes, "shape", None)
  if shape is None or len(shape) < 1 or shape[-1] != 4:
    raise ValueError(f"{name}: expected an array of shape (..., 4), got {shape if shape is not None else type(boxes)}")


def _check_weights(weights) -> tuple[float, float, float, float]:
  if not (isinstance(weights, Sequence) and len(weights) == 4):
    raise ValueError(f"weights: expected 4 numbers (wx, wy, ww, wh), got {weights!r}")
  w = tuple(float(v) for v in weights)
  if min(w) <= 0:
    raise ValueError(f"weights: expected positive numbers, got {weights!r}")
  return w  # type: ignore[return-value]


def yxyx_to_xyxy(boxes):
  """`(..., 4)` boxes `(y0, x0, y1, x1)` (the data contract) -> `(x0, y0, x1, y1)` (the ops)."""
  _check_boxes(boxes, "boxes")
  return jnp.stack([boxes[..., 1], boxes[..., 0], boxes[..., 3], boxes[..., 2]], axis=-1)


def xyxy_to_yxyx(boxes):
  """`(..., 4)` boxes `(x0, y0, x1, y1)` (the ops) -> `(y0, x0, y1, x1)` (the data contract)."""
  return yxyx_to_xyxy(boxes)


def box_area(boxes):
  """`(..., 4)` xyxy boxes -> `(...)` areas `(x1 - x0) * (y1 - y0)`, as torchvision.ops.box_area (no
  clamping: a box with x1 < x0 and y1 < y0 has positive "area")."""
  _check_boxes(boxes, "boxes")
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(boxes1, boxes2):
  area1 = box_area(boxes1)
  area2 = box_area(boxes2)
  lt = jnp.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
  rb = jnp.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
  wh = jnp.maximum(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  # Same association as torchvision (area1 + area2 - inter), so ties at an NMS threshold agree.
  union = area1[..., :, None] + area2[..., None, :] - inter
  return inter, union


def box_iou(boxes1, boxes2):
  """IoU matrix: `(..., N, 4)` and `(..., M, 4)` xyxy boxes -> `(..., N, M)`.

  `iou[i, j] = |b1_i ∩ b2_j| / (|b1_i| + |b2_j| - |b1_i ∩ b2_j|)`, computed in the boxes' dtype with
  torchvision.ops.box_iou's arithmetic. Where the union is not positive (two empty boxes) the IoU is
  0 (torchvision: NaN); the gradient there is 0 as well. Leading dimensions broadcast.
  """
  _check_boxes(boxes1, "boxes1")
  _check_boxes(boxes2, "boxes2")
  if boxes1.ndim < 2 or boxes2.ndim < 2:
    raise ValueError(f"boxes1, boxes2: expected shapes (..., N, 4) and (..., M, 4), got {boxes1.shape} and "
                     f"{boxes2.shape}")
  inter, union = _intersection_union(boxes1, boxes2)
  positive = union > 0
  return jnp.where(positive, inter / jnp.where(positive, union, 1), 0)


def clip_boxes_to_image(boxes, image_size):
  """Clamp `(..., 4)` xyxy boxes to `[0, width] x [0, height]` (torchvision.ops.clip_boxes_to_image).

  `image_size` is `(height, width)`: two numbers, or an array `(..., 2)` that broadcasts against the
  boxes' leading shape (per-image valid sizes inside a padded batch, possibly traced).
  """
  _check_boxes(boxes, "boxes")
  boxes = jnp.asarray(boxes)
  size = jnp.asarray(image_size, dtype=boxes.dtype)
  if size.ndim < 1 or size.shape[-1] != 2:
    raise ValueError(f"image_size: expected (height, width) or an array (..., 2), got {image_size!r}")
  height, width = size[..., 0:1], size[..., 1:2]
  x = jnp.clip(boxes[..., 0::2], 0, width)
  y = jnp.clip(boxes[..., 1::2], 0, height)
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def large_boxes_mask(boxes, min_size: float):
  """`(...)` bool: width >= min_size and height >= min_size (the keep set of torchvision's
  remove_small_boxes, as a mask instead of a data-dependent index list)."""
  _check_boxes(boxes, "boxes")
  return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def _centre_size(boxes):
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes, anchors, weights=RPN_BOX_WEIGHTS):
  """Regression targets of `boxes` relative to `anchors` (torchvision's BoxCoder.encode_single).

  Both `(..., 4)` xyxy (broadcasting). With centres `(cx, cy)`, sizes `(w, h)` of the anchor `a` and the
  box `g`, and `weights = (wx, wy, ww, wh)`:

    dx = wx (g_cx - a_cx) / a_w      dy = wy (g_cy - a_cy) / a_h
    dw = ww log(g_w / a_w)           dh = wh log(g_h / a_h)

  Returns `(..., 4)` deltas `(dx, dy, dw, dh)`. Use `RPN_BOX_WEIGHTS` (1, 1, 1, 1) for the RPN and
  `ROI_BOX_WEIGHTS` (10, 10, 5, 5) for the box head. A non-positive width or height (padding) is
  replaced by 1 so the result stays finite (meaningless: mask it).
  """
  _check_boxes(boxes, "boxes")
  _check_boxes(anchors, "anchors")
  wx, wy, ww, wh = _check_weights(weights)
  g_cx, g_cy, g_w, g_h = _centre_size(boxes)
  a_cx, a_cy, a_w, a_h = _centre_size(anchors)
  a_w, a_h, g_w, g_h = (jnp.where(v > 0, v, 1) for v in (a_w, a_h, g_w, g_h))
  return jnp.stack([wx * (g_cx - a_cx) / a_w, wy * (g_cy - a_cy) / a_h,
                    ww * jnp.log(g_w / a_w), wh * jnp.log(g_h / a_h)], axis=-1)


def decode_boxes(deltas, anchors, weights=RPN_BOX_WEIGHTS, clip: float = BBOX_XFORM_CLIP):
  """Boxes from deltas (torchvision's BoxCoder.decode_single), the inverse of `encode_boxes`.

  `deltas` `(..., 4)` = `(dx, dy, dw, dh)`, `anchors` `(..., 4)` xyxy (broadcasting; for per-class deltas
  reshape to `(N, K, 4)` and pass `anchors[:, None]`). With `(wx, wy, ww, wh) = weights`:

    cx = dx / wx * a_w + a_cx        w = exp(min(dw / ww, clip)) * a_w
    cy = dy / wy * a_h + a_cy        h = exp(min(dh / wh, clip)) * a_h

  Returns `(..., 4)` xyxy `(cx - w/2, cy - h/2, cx + w/2, cy + h/2)` in the promoted dtype of the inputs.
  The clip (default log(1000/16)) bounds the exp, as torchvision does.
  """
  _check_boxes(deltas, "deltas")
  _check_boxes(anchors, "anchors")
  wx, wy, ww, wh = _check_weights(weights)
  dtype = jnp.promote_types(deltas.dtype, anchors.dtype)
  deltas, anchors = deltas.astype(dtype), anchors.astype(dtype)
  a_cx, a_cy, a_w, a_h = _centre_size(anchors)
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, clip)
  dh = jnp.minimum(deltas[..., 3] / wh, clip)
  cx = dx * a_w + a_cx
  cy = dy * a_h + a_cy
  half_w = 0.5 * (jnp.exp(dw) * a_w)
  half_h = 0.5 * (jnp.exp(dh) * a_h)
  return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
