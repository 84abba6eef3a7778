"""Inference modes for any zoo model: whole image, overlapping tiles with blending, multi-scale + flip TTA.

Each takes `predict(images) -> logits`, a function from `(N, H, W, 3)` images to `(N, H, W, K)` logits at
input resolution (e.g. `lambda x: model.apply(variables, x, train=False)`), and returns `(N, H, W, K)`
at the input resolution. All shapes are static (tile grids and scales are decided in Python from the
input shape), so each mode jits as one program.

- `predict_whole`: one call on the full image.
- `predict_tiled`: for images larger than the training crop. Tiles of `tile` (h, w) pixels start every
  `stride` pixels (the last row/column of tiles is moved back to end at the border, so no tile hangs
  over, and images smaller than a tile are zero-padded to it); all tiles go through `predict` as
  one batch, and each output pixel is the weighted mean of the tiles covering it. Weights:
  'uniform' (mmsegmentation's `slide` mode) or 'tent' (a separable triangle, highest at a tile's
  centre, so pixels near a tile's border — where the tile lacked context — count less; floored at
  1/(half tile) so every covered pixel has weight).
- `predict_tta`: mean of the softmax probabilities over `scales` (the image resized bilinearly by
  each factor, predicted, resized back) and, with `flip=True`, their horizontal mirrors (predicted on
  the flipped image and flipped back). Returns log-probabilities, so argmax and losses work as on
  logits. Scales produce sizes `round(H·s)`; a model with size constraints (e.g. multiples of 32)
  needs `size_multiple` to round them up to a valid size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops import resize_bilinear
from dense_jax.ops._checks import as_pair, check_rank

Predict = Callable[[jax.Array], jax.Array]


def predict_whole(predict: Predict, images):
  """`predict(images)`, checked to be at input resolution."""
  check_rank(images, 4, "images", "NHWC")
  out = predict(images)
  if out.shape[:3] != images.shape[:3]:
    raise ValueError(f"predict: expected logits at input resolution {images.shape[:3]}, got {out.shape}")
  return out


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
  """Start offsets of tiles of `tile` pixels every `stride` covering [0, size); the last ends at the border."""
  if size <= tile:
    return [0]
  starts = list(range(0, size - tile, stride)) + [size - tile]
  return sorted(set(starts))


def _window(tile_h: int, tile_w: int, blend: str) -> np.ndarray:
  if blend == "uniform":
    return np.ones((tile_h, tile_w), np.float32)
  if blend == "tent":
    def tri(n):
      half = n / 2
      return np.maximum(1.0 - np.abs(np.arange(n) + 0.5 - half) / half, 1.0 / max(half, 1.0))
    return np.outer(tri(tile_h), tri(tile_w)).astype(np.float32)
  raise ValueError(f"blend: expected 'uniform' or 'tent', got {blend!r}")


def predict_tiled(predict: Predict, images, tile, stride=None, blend: str = "uniform"):
  """Overlapping-tile inference with blending (see the module docstring).

  Args:
    predict: `(B, th, tw, 3) -> (B, th, tw, K)`.
    images: `(N, H, W, C)`.
    tile: int or (th, tw), the tile size (usually the training crop).
    stride: int or (sh, sw), default 2/3 of the tile (1/3 overlap); must be <= tile.
    blend: 'uniform' or 'tent'.
  """
  check_rank(images, 4, "images", "NHWC")
  th, tw = as_pair(tile, "tile")
  sh, sw = as_pair(stride if stride is not None else (max(1, 2 * th // 3), max(1, 2 * tw // 3)), "stride")
  if sh > th or sw > tw:
    raise ValueError(f"stride: expected at most the tile {(th, tw)} (else pixels are skipped), got {(sh, sw)}")
  n, h, w, c = images.shape
  ph, pw = max(h, th), max(w, tw)
  x = jnp.pad(images, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)))
  rows, cols = tile_starts(ph, th, sh), tile_starts(pw, tw, sw)
  tiles = jnp.stack([x[:, i:i + th, j:j + tw] for i in rows for j in cols], axis=0)  # (T, N, th, tw, C)
  out = predict(tiles.reshape((-1, th, tw, c)))
  if out.shape[1:3] != (th, tw):
    raise ValueError(f"predict: expected logits of the tile size {(th, tw)}, got {out.shape}")
  k = out.shape[-1]
  out = out.reshape((len(rows) * len(cols), n, th, tw, k)).astype(jnp.float32)
  weight = jnp.asarray(_window(th, tw, blend))[None, :, :, None]
  acc = jnp.zeros((n, ph, pw, k), jnp.float32)
  norm = jnp.zeros((1, ph, pw, 1), jnp.float32)
  t = 0
  for i in rows:
    for j in cols:
      acc = acc.at[:, i:i + th, j:j + tw].add(out[t] * weight)  # static slices: a dynamic-update-slice
      norm = norm.at[:, i:i + th, j:j + tw].add(weight)
      t += 1
  return (acc / norm)[:, :h, :w]


def predict_tta(predict: Predict, images, scales: Sequence[float] = (1.0,), flip: bool = True,
                size_multiple: int = 1):
  """Multi-scale + flip test-time augmentation; mean softmax probabilities, returned as log-probabilities."""
  check_rank(images, 4, "images", "NHWC")
  if not scales or any(s <= 0 for s in scales):
    raise ValueError(f"scales: expected positive factors, got {scales!r}")
  n, h, w, _ = images.shape
  total, count = 0.0, 0
  for s in scales:
    m = size_multiple
    sh = max(m, int(-(-round(h * s) // m) * m))
    sw = max(m, int(-(-round(w * s) // m) * m))
    x = images if (sh, sw) == (h, w) else resize_bilinear(images, (sh, sw))
    variants = [(x, False)] + ([(x[:, :, ::-1], True)] if flip else [])
    for xv, flipped in variants:
      logits = predict(xv)
      if flipped:
        logits = logits[:, :, ::-1]
      if logits.shape[1:3] != (h, w):
        logits = resize_bilinear(logits.astype(jnp.float32), (h, w))
      total = total + jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
      count += 1
  return jnp.log(total / count)
