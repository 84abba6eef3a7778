"""Max pooling that remembers where the maximum was, and max-unpooling that puts values back there.

Index convention (PyTorch's, so SegNet/DeconvNet weights and tests carry over): `indices[n, i, j, c]`
is the flat position `h * W + w` of the maximum inside the (n, c) plane of the *unpadded* input of
height H and width W. Ties go to the first maximum in row-major window order and a NaN counts as
the maximum, as in PyTorch's CPU kernel.

Both ops are scatter-free, because scatter is slow on TPUs (and serialises on GPUs):
- pooling reads the `kh·kw` window offsets as `kh·kw` strided slices and keeps a running
  (value, offset) pair with `select`s; the gradient of a strided slice is a `pad` with interior
  padding, so the backward pass is selects + pads (no `select_and_scatter`, no `scatter`);
- unpooling turns each index back into its offset inside the window it came from (which is why it
  takes the pooling's window, stride and padding, like `torch.nn.functional.max_unpool2d`) and
  writes with selects. For non-overlapping windows (window == stride, no padding, the SegNet case)
  that is one broadcast-compare-select on a `(N, Ho, kh, Wo, kw, C)` view followed by a reshape
  (depth-to-space); its gradient is the same select read back (a strided gather by reshape, no
  gather op).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import as_pair, check_choice, check_rank


@dataclasses.dataclass(frozen=True)
class _Geometry:
  """Static pooling geometry: window (kh, kw), stride (sh, sw), padding (ph, pw), sizes."""
  kh: int
  kw: int
  sh: int
  sw: int
  ph: int
  pw: int
  in_h: int
  in_w: int
  out_h: int
  out_w: int

  @property
  def non_overlapping(self) -> bool:
    """Windows tile the input without overlap or padding: the reshape (depth-to-space) form applies."""
    return (self.kh, self.kw) == (self.sh, self.sw) and self.ph == self.pw == 0

  def offsets(self):
    """Window offsets (a, b) in row-major order, k = a·kw + b."""
    return [(a, b) for a in range(self.kh) for b in range(self.kw)]


def _pool_params(window, stride, padding):
  kh, kw = as_pair(window, "window")
  sh, sw = as_pair(window if stride is None else stride, "stride")
  ph, pw = as_pair(padding, "padding", minimum=0)
  if 2 * ph > kh or 2 * pw > kw:
    raise ValueError(f"padding: expected at most half the window {(kh, kw)}, got {(ph, pw)}")
  return kh, kw, sh, sw, ph, pw


def _pooled_size(size: int, k: int, s: int, p: int) -> int:
  """Output length of a floor-mode pooling (PyTorch's ceil_mode=False); < 1 means impossible."""
  return (size + 2 * p - k) // s + 1 if size + 2 * p >= k else 0


def _pool_geometry(x, window, stride, padding) -> _Geometry:
  check_rank(x, 4, "x", "NHWC")
  kh, kw, sh, sw, ph, pw = _pool_params(window, stride, padding)
  _, h, w, _ = x.shape
  oh, ow = _pooled_size(h, kh, sh, ph), _pooled_size(w, kw, sw, pw)
  if oh < 1 or ow < 1:
    raise ValueError(f"x: expected spatial size >= window - 2*padding = {(kh - 2 * ph, kw - 2 * pw)}, "
                     f"got {(h, w)}")
  return _Geometry(kh, kw, sh, sw, ph, pw, h, w, oh, ow)


def _window_slices(xp, g: _Geometry):
  """The strided slice of the (padded) input seen at each window offset, `(N, Ho, Wo, C)` each."""
  n, _, _, c = xp.shape
  if g.non_overlapping:
    # Crop the floor-mode remainder and view windows as axes 2 and 4 (the same tiled view that
    # `_unpool_tiles` writes); plain slices of it equal the strided slices below.
    x6 = xp[:, :g.out_h * g.kh, :g.out_w * g.kw].reshape(n, g.out_h, g.kh, g.out_w, g.kw, c)
    return [x6[:, :, a, :, b, :] for a, b in g.offsets()]
  return [
      lax.slice(xp, (0, a, b, 0), (n, a + (g.out_h - 1) * g.sh + 1, b + (g.out_w - 1) * g.sw + 1, c),
                (1, g.sh, g.sw, 1)) for a, b in g.offsets()
  ]


def _first_valid_offset(g: _Geometry) -> np.ndarray:
  """Per output pixel, the window offset k of the first unpadded input pixel: `(Ho, Wo, 1)` int32.

  PyTorch starts every window's argmax there, which matters only if all its values are -inf.
  """
  a0 = np.maximum(g.ph - np.arange(g.out_h) * g.sh, 0)
  b0 = np.maximum(g.pw - np.arange(g.out_w) * g.sw, 0)
  return (a0[:, None] * g.kw + b0[None, :]).astype(np.int32)[:, :, None]


def _flat_index(offset, g: _Geometry):
  """Window offset k -> flat input position `h * W + w` (int32), h = i·sh - ph + k // kw."""
  rows = (jnp.arange(g.out_h, dtype=jnp.int32) * g.sh - g.ph)[:, None, None] + offset // g.kw
  cols = (jnp.arange(g.out_w, dtype=jnp.int32) * g.sw - g.pw)[None, :, None] + offset % g.kw
  return rows * g.in_w + cols


def max_pool_with_argmax(x, window, stride=None, padding=0):
  """2-D max pooling that also returns where each maximum came from.

      pooled[n, i, j, c] = max_{0<=a<kh, 0<=b<kw} xpad[n, i·sh + a, j·sw + b, c]
      indices[n, i, j, c] = h · W + w of that maximum in the unpadded input

  where `xpad` is `x` padded by `padding` with -inf (so padding never wins), and
  `Ho = (H + 2·ph - kh) // sh + 1` (floor mode). Matches
  `torch.nn.functional.max_pool2d(x_nchw, window, stride, padding, return_indices=True)`
  (transposed to NHWC) in values, indices, tie-breaking (first maximum in row-major window order;
  NaN wins) and gradient (routed to the argmax only, summed where windows overlap).

  Args:
    x: `(N, H, W, C)` floating array.
    window: int or `(kh, kw)`, >= 1.
    stride: int or `(sh, sw)`, >= 1; defaults to `window` (as PyTorch).
    padding: int or `(ph, pw)`, >= 0 and at most half the window (as PyTorch).

  Returns:
    `(pooled, indices)`: `(N, Ho, Wo, C)` of `x.dtype` and `(N, Ho, Wo, C)` int32.

  Cost: `kh·kw` fused compare-selects per output; the backward pass is `kh·kw` pads summed
  (one fused loop; for non-overlapping windows a depth-to-space), with no scatter. With
  overlapping windows XLA fuses the running max into each of the backward's pads and recomputes
  it there; still faster on CPU than `flax.linen.max_pool`, whose gradient is a select-and-scatter
  (docs/results.md).
  """
  g = _pool_geometry(x, window, stride, padding)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x: expected a floating dtype, got {x.dtype}")
  xp = x
  if g.ph or g.pw:
    xp = jnp.pad(x, ((0, 0), (g.ph, g.ph), (g.pw, g.pw), (0, 0)), constant_values=-jnp.inf)
  best, offset = _running_max(_window_slices(xp, g), g)
  return best, _flat_index(offset, g)


def _running_max(slices, g: _Geometry):
  """Max over the window and its offset k = a·kw + b, each `(N, Ho, Wo, C)` (PyTorch's rule).

  Running max in row-major window order: a value is taken if strictly greater (so the first
  maximum wins) or NaN; with padding the start is -inf at the first unpadded pixel (padding is
  -inf and never taken). The select chain on the values is also what routes the gradient to the
  argmax, and only there; comparisons are made on stopped gradients.
  """
  if g.ph or g.pw:
    best = jnp.full(slices[0].shape, -jnp.inf, slices[0].dtype)
    offset = jnp.broadcast_to(jnp.asarray(_first_valid_offset(g)), slices[0].shape)
    start = 0
  else:
    best, offset, start = slices[0], jnp.zeros(slices[0].shape, jnp.int32), 1
  for k in range(start, len(slices)):
    s, b = lax.stop_gradient(slices[k]), lax.stop_gradient(best)
    take = (s > b) | jnp.isnan(s)
    best = jnp.where(take, slices[k], best)
    offset = jnp.where(take, jnp.int32(k), offset)
  return best, offset


def unpooled_size(pooled_size, window, stride=None, padding=0) -> tuple[int, int]:
  """PyTorch's default `output_size` of max-unpooling: `(Ho - 1)·sh - 2·ph + kh` per axis."""
  kh, kw, sh, sw, ph, pw = _pool_params(window, stride, padding)
  ho, wo = as_pair(pooled_size, "pooled_size")
  return (ho - 1) * sh - 2 * ph + kh, (wo - 1) * sw - 2 * pw + kw


def max_unpool(y, indices, window, stride=None, padding=0, output_size=None, *, method: str = "auto"):
  """Max-unpooling: the partial inverse of `max_pool_with_argmax`.

      out[n, h, w, c] = y[n, i, j, c]  where indices[n, i, j, c] == h · W + w,  else 0

  and where several (i, j) name the same position (overlapping windows) the last one in row-major
  order wins. Matches `torch.nn.functional.max_unpool2d(y_nchw, indices_nchw, window, stride,
  padding, output_size)` (transposed to NHWC) for indices produced by max pooling with the same
  window, stride and padding.

  Args:
    y: `(N, Ho, Wo, C)` values to place.
    indices: `(N, Ho, Wo, C)` integer flat positions, as returned by `max_pool_with_argmax`.
    window, stride, padding: those of the pooling (stride defaults to window).
    output_size: `(H, W)` of the pooling's input; default `unpooled_size(...)`. It must be a size
      the pooling could have come from: `(H + 2·ph - kh) // sh + 1 == Ho` (likewise W).
    method: 'window' — decode each index into its offset inside its own window and write with
      selects: O(N·H·W·C) for non-overlapping windows, O(kh·kw·N·H·W·C) otherwise; it needs every
      index inside its own window (max pooling never produces another). 'dense' — compare every
      output position with every index, O(N·C·H·W·Ho·Wo): any index in [0, H·W) is honoured; the
      reference form, for tests and small maps. 'auto' = 'window'.

  Index checks: when `indices` is a concrete array (called outside `jit`, or a constant inside it),
  an index outside [0, H·W) — and, for 'window', one outside its own window — raises ValueError
  naming the first such position (PyTorch raises "Found an invalid max index" for the former).
  Inside `jit`/`vmap`/`grad` the indices are abstract and nothing can be checked without a host
  round trip: such an index then writes nothing (its value is dropped, the output keeps 0 there) and
  gets a zero gradient — the result is well defined, but silently not what was meant. Check indices
  that do not come from `max_pool_with_argmax` before jitting (e.g. by one eager call).

  Returns:
    `(N, H, W, C)` of `y.dtype`. Gradient wrt `y`: PyTorch's, `grad_y = grad_out` read at each
    index (by selects, no gather or scatter); where windows overlap and share an index every one
    of them gets that gradient (PyTorch's rule; not the derivative of last-one-wins).
  """
  check_choice(method, ("auto", "window", "dense"), "method")
  check_rank(y, 4, "y", "NHWC")
  check_rank(indices, 4, "indices", "NHWC")
  if indices.shape != y.shape:
    raise ValueError(f"indices: expected the shape of y {y.shape}, got {indices.shape}")
  if not jnp.issubdtype(indices.dtype, jnp.integer):
    raise ValueError(f"indices: expected an integer dtype, got {indices.dtype}")
  kh, kw, sh, sw, ph, pw = _pool_params(window, stride, padding)
  n, oh, ow, c = y.shape
  if output_size is None:
    output_size = unpooled_size((oh, ow), window, stride, padding)
  h, w = as_pair(output_size, "output_size")
  if _pooled_size(h, kh, sh, ph) != oh or _pooled_size(w, kw, sw, pw) != ow:
    lo = unpooled_size((oh, ow), window, stride, padding)
    raise ValueError(
        f"output_size: expected a size that pooling (window {(kh, kw)}, stride {(sh, sw)}, padding "
        f"{(ph, pw)}) maps to {(oh, ow)}, i.e. H in [{lo[0]}, {lo[0] + sh - 1}] and W in "
        f"[{lo[1]}, {lo[1] + sw - 1}], got {(h, w)}")
  g = _Geometry(kh, kw, sh, sw, ph, pw, h, w, oh, ow)
  _check_concrete_indices(indices, g, in_window=method != "dense")
  indices = indices.astype(jnp.int32)
  if method == "dense":
    return _unpool_dense(y, indices, g)
  if g.non_overlapping:
    return _unpool_tiles(y, *_window_offsets(indices, g), g)
  return _unpool_overlapping(y, indices, g)


def _check_concrete_indices(indices, g: _Geometry, in_window: bool) -> None:
  """ValueError for the first index outside [0, H·W) (or, with `in_window`, outside its own window),
  if `indices` is concrete; nothing under tracing (see `max_unpool`)."""
  try:
    idx = np.asarray(indices).astype(np.int64)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  size = g.in_h * g.in_w
  bad = (idx < 0) | (idx >= size)
  if bad.any():
    pos = tuple(int(v) for v in np.argwhere(bad)[0])
    raise ValueError(f"indices: expected flat positions h·W + w in [0, {size}) of the {(g.in_h, g.in_w)} "
                     f"output, got {int(idx[pos])} at (n, i, j, c) = {pos} ({int(bad.sum())} out of range)")
  if not in_window:
    return
  i = np.arange(g.out_h)[None, :, None, None]
  j = np.arange(g.out_w)[None, None, :, None]
  a, b = idx // g.in_w - (i * g.sh - g.ph), idx % g.in_w - (j * g.sw - g.pw)
  bad = (a < 0) | (a >= g.kh) | (b < 0) | (b >= g.kw)
  if bad.any():
    pos = tuple(int(v) for v in np.argwhere(bad)[0])
    _, pi, pj, _ = pos
    rows = (pi * g.sh - g.ph, pi * g.sh - g.ph + g.kh - 1)
    cols = (pj * g.sw - g.pw, pj * g.sw - g.pw + g.kw - 1)
    raise ValueError(
        f"indices: expected each index inside its own pooling window (method='window'), got "
        f"{int(idx[pos])} = (row {int(idx[pos]) // g.in_w}, col {int(idx[pos]) % g.in_w}) at (n, i, j, c) = "
        f"{pos}, whose window covers rows {rows[0]}..{rows[1]} and cols {cols[0]}..{cols[1]} "
        f"({int(bad.sum())} such indices); indices from max_pool_with_argmax with the same window, stride "
        f"and padding always are, method='dense' accepts any index in range")


def _unpool_tiles(y, a, b, g: _Geometry):
  """Non-overlapping windows: select into a `(N, Ho, kh, Wo, kw, C)` view, fold it, pad the rest."""
  n, oh, ow, c = y.shape
  ia = jnp.arange(g.kh, dtype=jnp.int32)[None, None, :, None, None, None]
  ib = jnp.arange(g.kw, dtype=jnp.int32)[None, None, None, None, :, None]
  hit = (a[:, :, None, :, None, :] == ia) & (b[:, :, None, :, None, :] == ib)
  tiles = jnp.where(hit, y[:, :, None, :, None, :], jnp.zeros((), y.dtype))
  out = tiles.reshape(n, oh * g.kh, ow * g.kw, c)
  # Floor-mode pooling ignored the last H % kh rows / W % kw columns: they unpool to zeros.
  return jnp.pad(out, ((0, 0), (0, g.in_h - oh * g.kh), (0, g.in_w - ow * g.kw), (0, 0)))


def _window_offsets(indices, g: _Geometry):
  """Offset (a, b) of each flat index inside its own window; an out-of-window index gets an
  offset outside [0, kh) × [0, kw) and so matches no offset."""
  a = indices // g.in_w - (jnp.arange(g.out_h, dtype=jnp.int32) * g.sh - g.ph)[:, None, None]
  b = indices % g.in_w - (jnp.arange(g.out_w, dtype=jnp.int32) * g.sw - g.pw)[None, :, None]
  return a, b


# Where windows overlap, one input position can be the argmax of several windows. The forward pass
# writes the last of them (PyTorch's loop order), but PyTorch's backward reads the output gradient
# back at *every* index (`grad_y = grad_out.gather(indices)`), which is not the derivative of that
# forward pass. Both paths below therefore carry a custom VJP doing that gather, scatter-free, so
# decoders train exactly as in PyTorch. (For non-overlapping windows the two agree and plain
# autodiff is used.)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpool_overlapping(y, indices, g: _Geometry):
  """General windows: per offset (a, b), a select spread back onto the input grid by an interior pad.

  Offsets are applied from last to first so that, where windows share a position, the value of
  the window that comes last in row-major order (the one with the smaller offset) is written last,
  as in PyTorch's sequential loop. Cost: kh·kw selects over the output. When the pooling is in the
  same jit, XLA fuses the pooling's running max into each of the kh·kw placements (recomputing
  it; `optimization_barrier` does not stop this on CPU), which makes the fused forward slower than
  the two apart (docs/results.md).
  """
  n, oh, ow, c = y.shape
  a, b = _window_offsets(indices, g)
  out = jnp.zeros((n, g.in_h, g.in_w, c), y.dtype)
  zero = jnp.zeros((), y.dtype)
  for da, db in reversed(g.offsets()):
    hit = (a == da) & (b == db)
    placed = lax.pad(jnp.where(hit, y, zero), zero, _placement(g, da, db))
    placed_hit = lax.pad(hit, False, _placement(g, da, db))
    out = jnp.where(placed_hit, placed, out)
  return out


def _placement(g: _Geometry, da: int, db: int):
  """lax.pad config that puts a `(N, Ho, Wo, C)` array at rows `i·sh - ph + da`, cols `j·sw - pw + db`."""
  lo_h, lo_w = da - g.ph, db - g.pw
  return [(0, 0, 0), (lo_h, g.in_h - lo_h - (g.out_h - 1) * g.sh - 1, g.sh - 1),
          (lo_w, g.in_w - lo_w - (g.out_w - 1) * g.sw - 1, g.sw - 1), (0, 0, 0)]


def _unpool_overlapping_fwd(y, indices, g):
  return _unpool_overlapping(y, indices, g), indices


def _unpool_overlapping_bwd(g, indices, ct):
  """grad_y[n, i, j, c] = ct[n, indices[n, i, j, c], c], read through the window slices."""
  a, b = _window_offsets(indices, g)
  ctp = jnp.pad(ct, ((0, 0), (g.ph, g.ph), (g.pw, g.pw), (0, 0)))
  grad = jnp.zeros(indices.shape, ct.dtype)
  for (da, db), s in zip(g.offsets(), _window_slices(ctp, g)):
    grad = jnp.where((a == da) & (b == db), s, grad)
  return grad, None


_unpool_overlapping.defvjp(_unpool_overlapping_fwd, _unpool_overlapping_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpool_dense(y, indices, g: _Geometry):
  """Reference form: one-hot comparison of every output position with every index (last one wins).

  Cost: O(N·C·H·W·Ho·Wo) compares; any in-range index is honoured.
  """
  n, oh, ow, c = y.shape
  m = oh * ow
  yw = y.reshape(n, 1, m, c)
  iw = indices.reshape(n, 1, m, c)
  pos = jnp.arange(g.in_h * g.in_w, dtype=jnp.int32)[None, :, None, None]
  win = jnp.arange(m, dtype=jnp.int32)[None, None, :, None]
  last = jnp.max(jnp.where(iw == pos, win, -1), axis=2, keepdims=True)  # (n, H·W, 1, c)
  out = jnp.sum(jnp.where(win == last, yw, jnp.zeros((), y.dtype)), axis=2)
  return out.reshape(n, g.in_h, g.in_w, c)


def _unpool_dense_fwd(y, indices, g):
  return _unpool_dense(y, indices, g), indices


def _unpool_dense_bwd(g, indices, ct):
  n, oh, ow, c = indices.shape
  cw = ct.reshape(n, g.in_h * g.in_w, 1, c)
  iw = indices.reshape(n, 1, oh * ow, c)
  pos = jnp.arange(g.in_h * g.in_w, dtype=jnp.int32)[None, :, None, None]
  grad = jnp.sum(jnp.where(iw == pos, cw, jnp.zeros((), ct.dtype)), axis=1)
  return grad.reshape(n, oh, ow, c), None


_unpool_dense.defvjp(_unpool_dense_fwd, _unpool_dense_bwd)
