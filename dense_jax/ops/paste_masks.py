"""Pasting RoI mask probabilities into the image: host-side NumPy, not jit; two geometries, `mode=`.

A Mask R-CNN mask head predicts an `M x M` probability map (M = 28) per detection, covering the
detection's box. To compare it with ground truth at image resolution (COCO mask AP, the instance tasks'
results files) it is pasted. It lives beside `dense_jax.ops.mask_targets`, the crop it inverts, and
serves both `dense_jax.tasks.instances` and `dense_jax.metrics.coco`; unlike the other ops it runs on
the host after the model (per detection, with data-dependent integer corners in 'torchvision' mode), so
`dense_jax.ops` does not export it: import `dense_jax.ops.paste_masks`.

`mode='exact'` (the default; detectron2's `paste_masks_in_image`, a `grid_sample` with align_corners=False
and zero padding): the map's cell `m` covers `[x0 + m w / M, x0 + (m + 1) w / M)` of the continuous box
`(x0, y0, x1, y1)` (w = x1 - x0; pixel `j` spans `[j, j + 1)`), so pixel centre `j + 0.5` sits at map
coordinate `u = (j + 0.5 - x0) M / w - 0.5` (rows likewise) and its value is the bilinear (tent)
interpolation of the map there, zero outside it: `values = Ay @ map @ Axᵀ`, `Ax[j, m] = max(0, 1 - |u_j - m|)`.
It inverts the mask-target crop `dense_jax.ops.mask_targets(..., aligned=True)`: a ground-truth mask
cropped to its own box and pasted back is the mask again (up to the 28×28 resampling), at any object size.
`dense_jax.models.panoptic_fpn.paste_masks` is the same map in JAX.

`mode='torchvision'` (torchvision's `paste_masks_in_image`, paired with its aligned=False mask targets):

  1. pad the map by `padding` (1) zero pixels on every side -> `(M + 2p) x (M + 2p)`, and grow the box
     about its centre by the same factor `s = (M + 2p) / M` (so the padded map covers the grown box and
     the map's own `M x M` still covers the original box; the zero border lets the probabilities fall
     off at the box edge instead of being cut there);
  2. truncate the grown box's corners towards zero to integers `(x0, y0, x1, y1)` (torchvision's
     `.to(torch.int64)`), and resize the padded map bilinearly (`F.interpolate(mode='bilinear',
     align_corners=False)`: output pixel `i` samples input position `(i + 0.5) * in / out - 0.5`,
     clamped below at 0) to `h x w = max(y1 - y0 + 1, 1) x max(x1 - x0 + 1, 1)` pixels;
  3. write it at rows `y0 .. y1` and columns `x0 .. x1` (inclusive) of a zero image, cut to the image.

  Steps 1-2 run in float32 as torchvision does, so the integer corners (which decide whole rows and
  columns) agree with it. The inclusive corners spread the map over one pixel more than the box and the
  truncation moves it by up to a pixel: harmless on COCO's objects of hundreds of pixels, but on objects
  of a few tens of pixels the round trip (torchvision's aligned=False targets, then this paste) loses
  much of the mask, where the exact pair gives the mask back.

The result is a probability map per detection; COCO evaluation thresholds it (`> 0.5`, as
torchvision's reference evaluation does) before RLE encoding. Boxes are `(x0, y0, x1, y1)` in pixels,
the layout of `dense_jax.ops.boxes`.
"""

from __future__ import annotations

import numpy as np

PASTE_MODES = ("exact", "torchvision")


def _resize_matrix(out_size: int, in_size: int) -> np.ndarray:
  """`(out_size, in_size)` float32 weights of PyTorch's 1-D bilinear resize with align_corners=False."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  src = np.maximum(src, np.float32(0))
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo.astype(np.float32)
  weights = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(weights, (rows, lo), np.float32(1) - frac)
  np.add.at(weights, (rows, hi), frac)
  return weights


def expand_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
  """`(N, 4)` xyxy boxes grown by `scale` about their centres, in float32 (torchvision's expand_boxes)."""
  boxes = np.asarray(boxes, np.float32)
  scale = np.float32(scale)
  w_half = (boxes[:, 2] - boxes[:, 0]) * np.float32(0.5) * scale
  h_half = (boxes[:, 3] - boxes[:, 1]) * np.float32(0.5) * scale
  x_c = (boxes[:, 2] + boxes[:, 0]) * np.float32(0.5)
  y_c = (boxes[:, 3] + boxes[:, 1]) * np.float32(0.5)
  return np.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def _tent_weights(lo: float, hi: float, m: int, n: int) -> np.ndarray:
  """`(n, m)` float32 weights of the exact paste along one axis: pixel centre `j + 0.5` of an axis of `n`
  pixels at map coordinate `u = (j + 0.5 - lo) m / (hi - lo) - 0.5`, weight `max(0, 1 - |u - k|)` on cell
  k (zero outside the map). A box thinner than 1e-3 px is taken as 1e-3 px wide (finite weights)."""
  centres = np.arange(n, dtype=np.float32) + np.float32(0.5)
  u = (centres - np.float32(lo)) * np.float32(m) / np.float32(max(hi - lo, 1e-3)) - np.float32(0.5)
  return np.maximum(np.float32(0), np.float32(1) - np.abs(u[:, None] - np.arange(m, dtype=np.float32)[None]))


def _exact_regions(masks: np.ndarray, boxes: np.ndarray, im_h: int, im_w: int):
  m = masks.shape[1]
  for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
    ay, ax = _tent_weights(y0, y1, m, im_h), _tent_weights(x0, x1, m, im_w)
    rows, cols = np.flatnonzero(ay.any(axis=1)), np.flatnonzero(ax.any(axis=1))
    if not len(rows) or not len(cols):
      continue
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    yield i, (int(r0), int(r1), int(c0), int(c1)), ay[r0:r1] @ masks[i] @ ax[c0:c1].T


def _check(masks, boxes, image_size, padding, mode="exact") -> tuple[np.ndarray, np.ndarray]:
  if mode not in PASTE_MODES:
    raise ValueError(f"mode: expected one of {PASTE_MODES}, got {mode!r}")
  masks = np.asarray(masks, np.float32)
  boxes = np.asarray(boxes, np.float32)
  if masks.ndim != 3 or masks.shape[1] != masks.shape[2] or masks.shape[1] < 1:
    raise ValueError(f"masks: expected (N, M, M) RoI probabilities, got shape {masks.shape}")
  if boxes.shape != (masks.shape[0], 4):
    raise ValueError(f"boxes: expected shape ({masks.shape[0]}, 4) (x0, y0, x1, y1), got {boxes.shape}")
  if not (len(image_size) == 2 and all(int(v) >= 1 for v in image_size)):
    raise ValueError(f"image_size: expected (H, W) of positive ints, got {image_size!r}")
  if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
    raise ValueError(f"padding: expected an int >= 0, got {padding!r}")
  if not np.all(np.isfinite(boxes)):
    raise ValueError("boxes: expected finite coordinates, got NaN or inf")
  return masks, boxes


def pasted_regions(masks, boxes, image_size: tuple[int, int], padding: int = 1, mode: str = "exact"):
  """Yields `(i, (r0, r1, c0, c1), values)` for each detection i whose pasted map meets the image: the
  map is `values` (float32 `(r1 - r0, c1 - c0)`) at rows r0:r1, columns c0:c1 and 0 elsewhere. The same
  numbers as `paste_masks` without an `(N, H, W)` array (COCO evaluation encodes one mask at a time).
  `padding` is the torchvision mode's (the exact mode needs none)."""
  masks, boxes = _check(masks, boxes, image_size, padding, mode)
  im_h, im_w = int(image_size[0]), int(image_size[1])
  if mode == "exact":
    yield from _exact_regions(masks, boxes, im_h, im_w)
    return
  m = masks.shape[1]
  padded = np.pad(masks, ((0, 0), (padding, padding), (padding, padding)))
  # torchvision: scale = float(M + 2p) / M in double, then used with float32 boxes.
  corners = np.trunc(expand_boxes(boxes, float(m + 2 * padding) / m)).astype(np.int64)
  for i, (x0, y0, x1, y1) in enumerate(corners.tolist()):
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    c0, c1 = max(x0, 0), min(x1 + 1, im_w)
    r0, r1 = max(y0, 0), min(y1 + 1, im_h)
    if c1 <= c0 or r1 <= r0:
      continue
    # Only the rows/columns that land inside the image are computed.
    rows = _resize_matrix(h, padded.shape[1])[r0 - y0:r1 - y0]
    cols = _resize_matrix(w, padded.shape[2])[c0 - x0:c1 - x0]
    yield i, (r0, r1, c0, c1), rows @ padded[i] @ cols.T


def paste_masks(masks, boxes, image_size: tuple[int, int], padding: int = 1, mode: str = "exact") -> np.ndarray:
  """RoI mask probabilities `(N, M, M)` pasted at their xyxy `boxes (N, 4)` into `(N, H, W)` float32
  maps, `image_size = (H, W)` (see the module docstring). `mode='torchvision'` equals torchvision's
  `paste_masks_in_image(masks[:, None], boxes, (H, W), padding)[:, 0]`; `'exact'` detectron2's. A box
  that lies wholly outside the image gives an empty map (torchvision may raise there)."""
  masks, boxes = _check(masks, boxes, image_size, padding, mode)
  out = np.zeros((masks.shape[0], int(image_size[0]), int(image_size[1])), np.float32)
  for i, (r0, r1, c0, c1), values in pasted_regions(masks, boxes, image_size, padding, mode):
    out[i, r0:r1, c0:c1] = values
  return out
