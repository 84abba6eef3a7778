"""Inference modes for a dense-prediction model: whole image, overlapping tiles, multi-scale + flip.

Every mode takes `apply_fn(images) -> logits`, a function from NHWC images `(B, h, w, C)` to logits
`(B, h, w, K)` at the resolution it was given (e.g. `lambda x: model.apply(variables, x, train=False)`),
and returns scores `(N, H, W, K)` at the input resolution. Tile grids, paddings and scaled sizes are
computed in Python from the static input shape, so each mode traces to one program and jits.

- `predict_whole`: one call on the whole image. With `pad_to_multiple=m` the image is padded at the
  bottom/right with `pad_value` (default 0.0, black for images in [0, 1] — the value the input pipeline
  pads evaluation images with) to the next multiple of m, and the logits are cropped back: models
  whose input must divide by their output stride then take any size.
- `predict_sliding`: for images larger than the training crop. Tiles of `tile` pixels start every
  `stride` pixels (by default `round((1 - overlap) · tile)` with `overlap = 1/3`); the last tile of a
  row/column is moved back to end at the image border, so no tile hangs over and the grid follows from
  the shapes alone. A tile larger than the image is clipped to it (one tile along that axis), so a
  tile >= the image is exactly `predict_whole`. Each output pixel is the weighted mean of the tiles
  covering it: tile t contributes `w_t(y, x) · logits_t` and the weights are normalised to sum to one
  at every pixel. The weight is separable, `w_t(y, x) = a_t(y) · b_t(x)`, and along each axis depends on
  `d`, the distance (pixel centre, in pixels) to the nearest tile edge that lies *inside* the image
  (a tile edge on the image border is not a seam, the whole-image prediction sees the same border):

      u(d) = clip((d - margin) / (tile / 2 - margin), 0, 1)
      'uniform':     1[d > margin]            (margin 0: mmsegmentation's `slide` mode, count averaging)
      'triangular':  u(d)                     (a tent rising from the margin to the tile centre)
      'hann':        sin²(π/2 · u(d))         (a raised cosine: smooth, so no seams; the default)

  `margin` pixels along every inner tile edge get weight 0: the context a tile lacks there never
  enters. Hence the guarantee (tested): for a translation-equivariant `apply_fn` whose receptive field
  reaches r pixels from the output pixel (radius r, e.g. a stack of 'same' 3×3 convs: r = number of
  convs), `margin >= r` makes the tiled result equal `predict_whole` (up to float rounding), whatever
  the window. `margin` may be at most `(tile - stride) // 2`, else some pixels would get no weight.
  With a strided network (output stride s), equality also needs tile starts on the s-grid (`stride`,
  and `image - tile` for the last tile, multiples of s). The accumulation is a `lax.scan` over groups
  of `tile_batch` tiles (default all tiles in one group, i.e. one `apply_fn` call on a batch of
  N·tiles images); a smaller group bounds the memory to one group of tiles plus the output.
- `predict_multiscale`: test-time augmentation. For each scale s the image is resized bilinearly
  (`dense_jax.ops.resize_bilinear`, half-pixel convention, no antialiasing) to `round(s·H) × round(s·W)`,
  predicted (whole or sliding), with `flip=True` also its horizontal mirror (predicted on the mirrored
  image and mirrored back), and the logits are resized back to H × W. As in DeepLab's evaluation, the
  *softmax probabilities* of the resized logits are averaged (`average='probabilities'`) and the result
  is returned as log-probabilities `log(mean p)`, so softmax/argmax/losses treat it like logits;
  `average='logits'` averages the logits instead (returned as they are).

Scores from `predict_sliding` and `predict_multiscale` are float32 (accumulated in float32 whatever
the model's compute dtype); `predict_whole` returns the model's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import as_pair, check_choice, check_rank, concrete
from dense_jax.data.augment import scaled_size
from dense_jax.ops import resize_bilinear

ApplyFn = Callable[[jax.Array], jax.Array]

PAD_VALUE = 0.0                     # image padding: the input pipeline pads evaluation images with 0 too
DEFAULT_OVERLAP = 1.0 / 3.0
WINDOWS = ("hann", "triangular", "uniform")
AVERAGES = ("probabilities", "logits")
MODES = ("whole", "sliding")
VALUE_RANGE = (0.0, 1.0)            # images as the input pipeline gives them; checked when concrete


def _check_images(images, value_range=VALUE_RANGE) -> None:
  """Shape and dtype always; with `value_range` (lo, hi) also the values when they are concrete (not
  under `jit`, where they are tracers and pass unchecked)."""
  ndim = getattr(images, "ndim", None)
  if ndim in (2, 3):
    what = ("one grayscale image (H, W)" if ndim == 2 else
            "one image (H, W, C)" if images.shape[-1] in (1, 3) else "a batch of grayscale images (N, H, W)")
    fix = ("images[None, :, :, None].repeat(3, axis=-1)" if ndim == 2 else
           "images[None]" if images.shape[-1] in (1, 3) else "images[..., None].repeat(3, axis=-1)")
    raise ValueError(f"images: expected a batch (N, H, W, C) (NHWC; the models take C=3 RGB), got shape "
                     f"{images.shape}, which looks like {what}; e.g. {fix}")
  check_rank(images, 4, "images", "NHWC")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    hint = " (0..255 pixels: images.astype(np.float32) / 255)" if jnp.issubdtype(images.dtype, jnp.integer) else ""
    raise ValueError(f"images: expected a floating dtype with values in [0, 1], got {images.dtype}{hint}")
  if min(images.shape) < 1:
    raise ValueError(f"images: expected non-empty (N, H, W, C), got shape {images.shape}")
  if value_range is None:
    return
  lo, hi = value_range
  v = concrete(images)
  if v is None:
    return
  tol = 1e-3 * (hi - lo)   # resampling overshoot
  v = v.astype(np.float32)
  finite = v[~np.isnan(v)]
  v_min, v_max = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
  if finite.size < v.size or v_min < lo - tol or v_max > hi + tol:
    hint = " (0..255 pixels? divide by 255)" if v_max > 2 * hi and v_max <= 255.0 + tol else ""
    raise ValueError(f"images: expected values in [{lo:g}, {hi:g}] (value_range), got min {v_min:g}, max "
                     f"{v_max:g}{' and NaN' if finite.size < v.size else ''}{hint}; for an apply_fn that takes "
                     f"other inputs pass value_range=(lo, hi) or None")


def _call(apply_fn: ApplyFn, x):
  """`apply_fn(x)`; an exception from inside it, for images that do not have the 3 channels the models
  take, becomes one ValueError that names the channels (the cause stays chained)."""
  if x.shape[-1] == 3:
    return apply_fn(x)
  try:
    return apply_fn(x)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"images: apply_fn failed on images with {x.shape[-1]} channels (shape {x.shape}); the "
                     f"registered models take (N, H, W, 3) RGB in [0, 1] (a grayscale image: "
                     f"images.repeat(3, axis=-1)); its error: {type(e).__name__}: {e}") from e


def _padded(size: int, multiple: int) -> int:
  return -(-size // multiple) * multiple


def predict_whole(apply_fn: ApplyFn, images, *, pad_to_multiple=None, pad_value: float = PAD_VALUE,
                  value_range=VALUE_RANGE):
  """Logits `(N, H, W, K)` of `apply_fn` on the whole image (see the module docstring).

  Args:
    apply_fn: `(B, h, w, C) -> (B, h, w, K)`.
    images: `(N, H, W, C)` floating.
    pad_to_multiple: None, an int or (mh, mw): pad the bottom/right with `pad_value` up to the next
      multiple before calling `apply_fn`, crop the logits back to (H, W).
    pad_value: the constant the padding is filled with.
    value_range: `(lo, hi)` the image values must lie in (default [0, 1], as the input pipeline gives
      them; 0..255 images are a ValueError), checked only on concrete images (not under `jit`); None:
      no check (an `apply_fn` that takes other inputs).
  """
  _check_images(images, value_range)
  mh, mw = (1, 1) if pad_to_multiple is None else as_pair(pad_to_multiple, "pad_to_multiple")
  n, h, w, _ = images.shape
  ph, pw = _padded(h, mh) - h, _padded(w, mw) - w
  x = images
  if ph or pw:
    x = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=pad_value)
  out = _call(apply_fn, x)
  # (N, H, W): a one-channel map such as log-depth (the `_dense_tasks` convention drops its channel axis).
  if getattr(out, "ndim", None) not in (3, 4) or out.shape[:3] != x.shape[:3]:
    raise ValueError(
        f"apply_fn: expected logits (N, H, W, K) or a map (N, H, W) at the resolution of its input "
        f"{x.shape[:3]}, got "
        f"{getattr(out, 'shape', type(out))} (a model whose output is smaller than its input, e.g. the "
        f"valid-convolution U-Net, has no inference mode here; a strided model must upsample to the input)")
  return out[:, :h, :w] if (ph or pw) else out


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
  """Start offsets of tiles of `tile` pixels every `stride` along an axis of `size` pixels; the last
  tile ends at the border (`size - tile`); `[0]` when the tile covers the axis."""
  if tile >= size:
    return [0]
  return list(range(0, size - tile, stride)) + [size - tile]


def tile_window(tile: int, start: int, size: int, margin: int = 0, window: str = "hann") -> np.ndarray:
  """The 1-D blending weight `(tile,)` float64 of a tile at `start` on an axis of `size` pixels (the
  formula is in the module docstring): zero within `margin` of a tile edge inside the image."""
  check_choice(window, WINDOWS, "window")
  centres = np.arange(tile, dtype=np.float64) + 0.5
  d_lo = centres if start > 0 else np.full(tile, np.inf)
  d_hi = tile - centres if start + tile < size else np.full(tile, np.inf)
  d = np.minimum(d_lo, d_hi)
  if window == "uniform":
    return (d > margin).astype(np.float64)
  # A tile spanning the axis has no inner edge (d = inf everywhere): weight 1 whatever the margin.
  u = np.where(np.isinf(d), 1.0, np.clip((d - margin) / max(tile / 2 - margin, 0.5), 0.0, 1.0))
  return u if window == "triangular" else np.sin(0.5 * np.pi * u) ** 2


def _axis_weights(size: int, tile: int, stride: int, margin: int, window: str) -> tuple[list[int], np.ndarray]:
  """Tile starts along one axis and their weights `(num_tiles, tile)`, normalised so that the weights
  of the tiles covering each pixel sum to one (separable weights: the 2-D sums are products)."""
  starts = tile_starts(size, tile, stride)
  weights = np.stack([tile_window(tile, s, size, margin, window) for s in starts])
  total = np.zeros(size)
  for s, wt in zip(starts, weights):
    total[s:s + tile] += wt
  if total.min() <= 0:  # excluded by the margin check; kept so a bug can never divide by zero silently
    raise ValueError(f"margin: {margin} leaves pixels without weight (tile {tile}, stride {stride})")
  return starts, np.stack([wt / total[s:s + tile] for s, wt in zip(starts, weights)])


def _sliding_params(shape, tile, stride, overlap, margin):
  _, h, w, _ = shape
  th, tw = as_pair(tile, "tile")
  if stride is not None and overlap is not None:
    raise ValueError(f"stride, overlap: expected one of them, got stride={stride!r} and overlap={overlap!r}")
  if stride is None:
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
      raise ValueError(f"overlap: expected a fraction of the tile in [0, 1), got {overlap!r}")
    sh, sw = (max(1, int(round((1 - overlap) * t))) for t in (th, tw))
  else:
    sh, sw = as_pair(stride, "stride")
  if sh > th or sw > tw:
    raise ValueError(f"stride: expected at most the tile {(th, tw)} (a larger stride skips pixels), got {(sh, sw)}")
  mh, mw = as_pair(margin, "margin", minimum=0)
  th, tw = min(th, h), min(tw, w)  # a tile larger than the image is the image
  for m, t, s, size, axis in ((mh, th, sh, h, "height"), (mw, tw, sw, w, "width")):
    if t < size and m > (t - s) // 2:
      raise ValueError(f"margin: expected at most (tile - stride) // 2 = {(t - s) // 2} along the {axis} "
                       f"(tile {t}, stride {s}), else pixels between tiles get no weight; got {m}")
  return (th, tw), (sh, sw), (mh, mw)


def predict_sliding(apply_fn: ApplyFn, images, *, tile, stride=None, overlap=None, num_classes=None,
                    window: str = "hann", margin=0, tile_batch: int | None = None, pad_to_multiple=None,
                    pad_value: float = PAD_VALUE, value_range=VALUE_RANGE):
  """Overlapping-tile inference with blending; float32 scores `(N, H, W, K)` (see the module docstring).

  Args:
    apply_fn: `(B, th, tw, C) -> (B, th, tw, K)`, or `(B, th, tw)` (one channel, e.g. depth: blended
      as K = 1 and returned as `(N, H, W)`).
    images: `(N, H, W, C)` floating.
    tile: int or (th, tw), usually the training crop; clipped to the image.
    stride: int or (sh, sw), at most the tile; or
    overlap: fraction of the tile shared by neighbours (default 1/3 when `stride` is None).
    num_classes: K, checked against `apply_fn`'s output if given (else taken from it).
    window: 'hann' | 'triangular' | 'uniform' blending weight.
    margin: int or (mh, mw) >= 0, pixels at inner tile edges with weight 0.
    tile_batch: tiles per `apply_fn` call (each call sees `tile_batch · N` images); default all.
    pad_to_multiple, pad_value: as in `predict_whole`, applied to each tile.
    value_range: as in `predict_whole`.
  """
  _check_images(images, value_range)
  check_choice(window, WINDOWS, "window")
  (th, tw), (sh, sw), (mh, mw) = _sliding_params(images.shape, tile, stride, overlap, margin)
  n, h, w, c = images.shape
  whole_scores = lambda x: predict_whole(apply_fn, x, pad_to_multiple=pad_to_multiple, pad_value=pad_value,
                                         value_range=None)
  # A map without a channel axis (depth: (B, h, w)) is blended as one channel and returned as it came.
  single_channel = jax.eval_shape(whole_scores, jax.ShapeDtypeStruct((n, th, tw, c), images.dtype)).ndim == 3
  whole = (lambda x: whole_scores(x)[..., None]) if single_channel else whole_scores
  rows, row_w = _axis_weights(h, th, sh, mh, window)
  cols, col_w = _axis_weights(w, tw, sw, mw, window)
  num_tiles = len(rows) * len(cols)
  if tile_batch is not None and (isinstance(tile_batch, bool) or not isinstance(tile_batch, int) or tile_batch < 1):
    raise ValueError(f"tile_batch: expected None or an int >= 1, got {tile_batch!r}")
  group = min(tile_batch or num_tiles, num_tiles)
  out_shape = jax.eval_shape(whole, jax.ShapeDtypeStruct((group * n, th, tw, c), images.dtype))
  k = out_shape.shape[-1]
  if num_classes is not None and num_classes != k:
    raise ValueError(f"num_classes: apply_fn returns {k} classes, got num_classes={num_classes}")
  if num_tiles == 1:
    return whole_scores(images).astype(jnp.float32)  # the whole image in one tile: exactly predict_whole

  # Per tile: its start and its two 1-D weights; padded to whole groups with weight-0 repeats.
  starts = np.array([(r, q) for r in rows for q in cols], np.int32)
  wr = np.repeat(row_w, len(cols), axis=0)
  wc = np.tile(col_w, (len(rows), 1))
  steps = -(-num_tiles // group)
  extra = steps * group - num_tiles
  starts = np.concatenate([starts, np.repeat(starts[-1:], extra, 0)])
  wr = np.concatenate([wr, np.zeros((extra, th))])
  wc = np.concatenate([wc, np.zeros((extra, tw))])
  xs = (jnp.asarray(starts.reshape(steps, group, 2)),
        jnp.asarray(wr.reshape(steps, group, th), jnp.float32),
        jnp.asarray(wc.reshape(steps, group, tw), jnp.float32))

  def body(acc, xs):
    pos, a, b = xs
    tiles = jnp.stack([lax.dynamic_slice(images, (0, pos[j, 0], pos[j, 1], 0), (n, th, tw, c))
                       for j in range(group)])
    out = whole(tiles.reshape(group * n, th, tw, c)).astype(jnp.float32).reshape(group, n, th, tw, k)
    for j in range(group):
      at = (0, pos[j, 0], pos[j, 1], 0)
      weight = (a[j][:, None] * b[j][None, :])[None, :, :, None]
      acc = lax.dynamic_update_slice(acc, lax.dynamic_slice(acc, at, (n, th, tw, k)) + weight * out[j], at)
    return acc, None

  acc, _ = lax.scan(body, jnp.zeros((n, h, w, k), jnp.float32), xs)
  return acc[..., 0] if single_channel else acc


def required_multiple(apply_fn: ApplyFn, sizes, *, channels: int = 3, max_multiple: int = 256) -> int:
  """The smallest power of two m such that `apply_fn` takes every `(h, w)` in `sizes`, padded up to a
  multiple of m, and returns logits at that resolution: the `pad_to_multiple` a model needs (e.g. 8 for
  a U-Net with three poolings, 1 for a model that takes any size). Checked with `jax.eval_shape`, so
  nothing is computed. ValueError if no m up to `max_multiple` works (e.g. a model whose output is
  smaller than its input)."""
  sizes = [as_pair(tuple(s), "sizes") for s in sizes]
  seen: dict[tuple[int, int], bool] = {}
  last_error = ""
  fixed_size: list[tuple[tuple[int, int], str]] = []   # (size, error) where the parameters did not fit

  def takes(hw):
    nonlocal last_error
    if hw not in seen:
      try:
        out = jax.eval_shape(apply_fn, jax.ShapeDtypeStruct((1, *hw, channels), jnp.float32))
        seen[hw] = getattr(out, "ndim", None) in (3, 4) and tuple(out.shape[1:3]) == hw
        if not seen[hw]:
          last_error = f"input {hw} gave output {getattr(out, 'shape', out)}"
      except (ValueError, TypeError) as e:   # the model's own size check, or mismatched shapes inside it
        seen[hw], last_error = False, f"input {hw}: {str(e)[:300]}"
      except flax.errors.ScopeParamShapeError as e:   # parameters made for another input size
        seen[hw], last_error = False, f"input {hw}: {str(e).split(' (https://')[0][:300]}"
        fixed_size.append((hw, last_error))
    return seen[hw]

  multiples = [2 ** i for i in range(max_multiple.bit_length()) if 2 ** i <= max_multiple]
  padded = lambda hw, m: (_padded(hw[0], m), _padded(hw[1], m))
  for m in multiples:
    if all(takes(padded(hw, m)) for hw in sizes):
      return m
  unfit = [hw for hw in sizes if not any(takes(padded(hw, m)) for m in multiples)]
  if fixed_size and unfit:
    raise FixedInputSizeError(unfit[0], f"apply_fn: its parameter shapes fix the input size, and it takes "
                              f"{unfit[0]} padded to no multiple of 1, 2, 4, ..., {max_multiple} "
                              f"({fixed_size[0][1]})")
  raise ValueError(f"apply_fn: takes {unfit or sizes} padded to no {'' if unfit else 'common '}multiple of "
                   f"1, 2, 4, ..., {max_multiple} with logits at the input resolution (last: {last_error})")


class FixedInputSizeError(ValueError):
  """A model whose parameter shapes depend on the input size (fully connected layers on a feature
  map) was asked for another size; `size` is the first (h, w) it could not take."""

  def __init__(self, size: tuple[int, int], message: str):
    super().__init__(message)
    self.size = size


def _check_scales(scales) -> tuple[float, ...]:
  ok = isinstance(scales, Sequence) and len(scales) > 0 and all(
      isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales)
  if not ok:
    raise ValueError(f"scales: expected a non-empty sequence of positive numbers, got {scales!r}")
  return tuple(float(s) for s in scales)


def predict_multiscale(apply_fn: ApplyFn, images, *, scales: Sequence[float] = (0.75, 1.0, 1.25),
                       flip: bool = True, mode: str = "whole", average: str = "probabilities",
                       pad_to_multiple=None, pad_value: float = PAD_VALUE, merge=None, unflip=None,
                       value_range=VALUE_RANGE, **sliding_kwargs):
  """Multi-scale (+ horizontal flip) test-time augmentation; float32 `(N, H, W, K)` (module docstring),
  or `(N, H, W)` where `apply_fn` returns maps without a channel axis (depth).

  Args:
    apply_fn, images, pad_to_multiple, pad_value, value_range: as in `predict_whole`.
    scales: resize factors of the image.
    flip: also predict the horizontal mirror of every scale.
    mode: 'whole' or 'sliding' (then `sliding_kwargs` go to `predict_sliding`: tile, stride, ...).
    average: 'probabilities' (returns log of the mean softmax) or 'logits' (returns the mean logits).
    merge: `[predictions] -> prediction` replacing `average` (a task's `merge`, e.g. renormalised mean
      normals); the predictions it gets are float32, mirrored back and resized to (H, W).
    unflip: `prediction -> prediction` undoing a horizontal flip (a task's `unflip`, e.g. negating the x
      component of normals); default: mirror back along the width.
  """
  _check_images(images, value_range)
  scales = _check_scales(scales)
  check_choice(mode, MODES, "mode")
  check_choice(average, AVERAGES, "average")
  if mode == "whole" and sliding_kwargs:
    raise ValueError(f"mode: the arguments {sorted(sliding_kwargs)} are for mode='sliding', got mode='whole'")
  _, h, w, _ = images.shape

  def predict(x):
    if mode == "whole":
      return predict_whole(apply_fn, x, pad_to_multiple=pad_to_multiple, pad_value=pad_value, value_range=None)
    return predict_sliding(apply_fn, x, pad_to_multiple=pad_to_multiple, pad_value=pad_value, value_range=None,
                           **sliding_kwargs)

  total, count, outs = None, 0, []
  for s in scales:
    size = scaled_size((h, w), s)
    x = images if size == (h, w) else resize_bilinear(images, size)
    for flipped in ((False, True) if flip else (False,)):
      out = predict(jnp.flip(x, axis=2) if flipped else x).astype(jnp.float32)
      if flipped:
        out = unflip(out) if unflip is not None else jnp.flip(out, axis=2)
      if size != (h, w):   # a map without a channel axis (depth) is resized as one channel
        out = resize_bilinear(out, (h, w)) if out.ndim == 4 else resize_bilinear(out[..., None], (h, w))[..., 0]
      if merge is None and average == "probabilities" and out.ndim == 3:
        raise ValueError(f"average: apply_fn returns {out.shape} maps without a class axis, which have no "
                         f"softmax; pass average='logits' (the mean) or a merge, got average='probabilities'")
      if merge is not None:
        outs.append(out)
        continue
      term = jax.nn.softmax(out, axis=-1) if average == "probabilities" else out
      total = term if total is None else total + term
      count += 1
  if merge is not None:
    return merge(outs)
  mean = total / count
  if average == "logits":
    return mean
  return jnp.log(jnp.maximum(mean, jnp.finfo(jnp.float32).tiny))
