"""FPN anchors for a fixed (padded) image size, equal to torchvision's AnchorGenerator.

Anchors depend only on static shapes, so they are NumPy float32 constants computed at trace time.
Layout: xyxy boxes `(x0, y0, x1, y1)` in input-image pixels (see `dense_jax.ops.boxes`).

torchvision's rule, per level with feature map `(h, w)` and sizes `s`, aspect ratios `r` (`r = h/w`):

  base anchors  round([-ws, -hs, ws, hs] / 2), hs = sqrt(r) s, ws = s / sqrt(r), ordered ratio-major
                then size (for r in ratios: for s in sizes), computed in float32, rounded half-to-even
  strides       (image_h // h, image_w // w)  (integer division: a P6 of 13 rows on an 800-px image has
                stride 61, as in torchvision)
  anchors       for each cell (row-major, y then x) the base anchors shifted by (x·stride_w, y·stride_h)

and the levels are concatenated P2, P3, ... . The default feature sizes are those of a ResNet-FPN on an
`(H, W)` input: `ceil(H / 2**l)` for level `l` (strided convs with 'same'-style padding and P6 as a
stride-2 subsampling of P5 all round up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dense_jax.checks import as_pair

FPN_ANCHOR_SIZES = (32, 64, 128, 256, 512)
FPN_ASPECT_RATIOS = (0.5, 1.0, 2.0)
FPN_LEVELS = (2, 3, 4, 5, 6)


def base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """`(len(ratios) * len(sizes), 4)` float32 anchors centred on 0 (torchvision's generate_anchors)."""
  scales = np.asarray(sizes, np.float32)
  ratios = np.asarray(aspect_ratios, np.float32)
  if scales.ndim != 1 or scales.size == 0 or np.any(scales <= 0):
    raise ValueError(f"sizes: expected a non-empty sequence of positive numbers, got {sizes!r}")
  if ratios.ndim != 1 or ratios.size == 0 or np.any(ratios <= 0):
    raise ValueError(f"aspect_ratios: expected a non-empty sequence of positive numbers, got {aspect_ratios!r}")
  h_ratios = np.sqrt(ratios)
  w_ratios = np.float32(1) / h_ratios
  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)).astype(np.float32)


def grid_anchors(base: np.ndarray, feature_size, stride) -> np.ndarray:
  """`(h * w * A, 4)` float32: `base` `(A, 4)` shifted to every cell of an `(h, w)` grid with `stride`
  `(sy, sx)` pixels; order (y, x, anchor)."""
  h, w = as_pair(feature_size, "feature_size")
  sy, sx = as_pair(stride, "stride")
  shift_y, shift_x = np.meshgrid(np.arange(h, dtype=np.float32) * sy, np.arange(w, dtype=np.float32) * sx,
                                 indexing="ij")
  shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)
  return (shifts + base.reshape(1, -1, 4)).reshape(-1, 4).astype(np.float32)


def fpn_feature_sizes(image_size, levels: Sequence[int] = FPN_LEVELS) -> list[tuple[int, int]]:
  """Feature map `(h, w)` of each level of a ResNet-FPN on an `(H, W)` image: `ceil(H / 2**l)`."""
  height, width = as_pair(image_size, "image_size")
  return [(math.ceil(height / 2**l), math.ceil(width / 2**l)) for l in levels]


def _per_level(sizes, num_levels):
  if len(sizes) != num_levels:
    raise ValueError(f"sizes: expected one entry per level ({num_levels}), got {len(sizes)}: {sizes!r}")
  return [tuple(s) if isinstance(s, Sequence) else (s,) for s in sizes]


def _ratios_per_level(aspect_ratios, num_levels):
  ratios = list(aspect_ratios)
  if ratios and isinstance(ratios[0], Sequence):
    if len(ratios) != num_levels:
      raise ValueError(f"aspect_ratios: expected one sequence per level ({num_levels}), got {len(ratios)}")
    return [tuple(r) for r in ratios]
  return [tuple(ratios)] * num_levels


def anchors_per_location(sizes=FPN_ANCHOR_SIZES, aspect_ratios=FPN_ASPECT_RATIOS) -> int:
  """Anchors per feature-map cell, `len(sizes of a level) * len(ratios of a level)`, the output count of an
  RPN head shared by every level (torchvision's `num_anchors_per_location()[0]`): 3 with the defaults, 6
  with two sizes per level. ValueError when the levels differ (one shared head cannot serve them)."""
  per_level = _per_level(tuple(sizes), len(sizes))
  counts = [len(s) * len(r) for s, r in zip(per_level, _ratios_per_level(aspect_ratios, len(sizes)))]
  if len(set(counts)) != 1:
    raise ValueError(f"anchor_sizes, aspect_ratios: expected the same number of anchors per location on every "
                     f"level (one RPN head serves all levels), got {counts} from sizes {sizes!r} and ratios "
                     f"{aspect_ratios!r}")
  return counts[0]


def fpn_anchors_per_level(image_size, sizes=FPN_ANCHOR_SIZES, aspect_ratios=FPN_ASPECT_RATIOS,
                          feature_sizes=None) -> list[np.ndarray]:
  """Anchors of each level, a list of `(h_l * w_l * A_l, 4)` float32 arrays (see the module docstring).

  Args:
    image_size: `(H, W)` of the padded input batch (torchvision: `images.tensors.shape[-2:]`).
    sizes: per level, a size or a sequence of sizes (torchvision's `((32,), (64,), ...)`).
    aspect_ratios: height/width ratios, shared by all levels, or one sequence per level.
    feature_sizes: per level `(h, w)`; default `fpn_feature_sizes(image_size)` for P2..P(1+len(sizes)).
  """
  height, width = as_pair(image_size, "image_size")
  per_level_sizes = _per_level(tuple(sizes), len(sizes))
  if feature_sizes is None:
    feature_sizes = fpn_feature_sizes((height, width), tuple(range(2, 2 + len(sizes))))
  if len(feature_sizes) != len(sizes):
    raise ValueError(f"feature_sizes: expected {len(sizes)} entries (one per level), got {len(feature_sizes)}")
  ratios = _ratios_per_level(aspect_ratios, len(sizes))
  out = []
  for level_sizes, level_ratios, fs in zip(per_level_sizes, ratios, feature_sizes):
    h, w = as_pair(tuple(fs), "feature_sizes")
    out.append(grid_anchors(base_anchors(level_sizes, level_ratios), (h, w), (height // h, width // w)))
  return out


def fpn_anchors(image_size, sizes=FPN_ANCHOR_SIZES, aspect_ratios=FPN_ASPECT_RATIOS,
                feature_sizes=None) -> np.ndarray:
  """All levels' anchors concatenated, `(sum_l h_l w_l A_l, 4)` float32, torchvision's order. With the
  defaults: sizes 32..512 on P2..P6, ratios 0.5/1/2 (3 anchors per cell). The number per level is
  `[len(a) for a in fpn_anchors_per_level(...)]`."""
  return np.concatenate(fpn_anchors_per_level(image_size, sizes, aspect_ratios, feature_sizes), axis=0)
