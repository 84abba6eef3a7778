"""Convolutions for dense prediction: `conv2d` (strided, dilated, grouped) and `conv_transpose2d`.

Layouts: activations NHWC, kernels HWIO `(kh, kw, in, out)` — for the transposed conv too, where
`conv_transpose2d(x, w, ...)` computes `torch.nn.functional.conv_transpose2d(x_nchw,
w.transpose(2, 3, 0, 1), ...)`.

Each op has a *reference* form, the textbook definition written as one `lax.conv_general_dilated`,
and *fast* forms that compute the same function with convolutions XLA runs well:

* `conv_transpose2d(method='reference')` inserts `stride - 1` zeros between input pixels
  (`lhs_dilation`) and convolves with the flipped kernel. XLA multiplies the inserted zeros, and on
  CPU the weight gradient of that convolution falls off the fast (Eigen) path.
* `conv_transpose2d(method='phase')` (sub-pixel / phase decomposition): output pixel `t = q·s + r`
  only sees the kernel taps `a` with `a·d ≡ r (mod s)`, so the `s²` output phases are `s²` small
  stride-1 convolutions of the *un-dilated* input. They are packed into ONE stride-1 convolution with
  a `ceil(d·(k-1)+1 / s)`-tap kernel and `s²·C_out` output channels, followed by a depth-to-space
  reshape (no scatter, no inserted zeros). Its VJP is written by hand in the same phase domain:
  `dy` goes through space-to-depth, the input gradient is one stride-1 convolution with the
  flipped phase kernel, the weight gradient the blocked matmuls below.
* For stride 1 the phase form is a plain convolution with the same hand-written VJP; it is used
  only when the output is larger than the input (e.g. padding 0, the "full" convolution), the case
  where XLA:CPU's weight gradient leaves its fast path.
* The phase packing has zero taps (padding `d·(k-1)+1` taps up to a multiple of `s`, the zeros of a
  dilated kernel) that would turn a NaN/Inf input into more NaNs than the reference form gives, so
  the phase forward and VJP run under a `lax.cond` on "all inputs finite", with the reference form
  as the other branch: non-finite values propagate exactly as in the reference.

`conv2d(method='reference')` is one `lax.conv_general_dilated` with XLA's autodiff (an unpadded 1x1
conv: one matmul, see `_conv1x1`). `conv2d(method='blocked')` has the same forward and input
gradient, and a hand-written weight gradient: XLA:CPU computes `dw` as a convolution whose "kernel"
is the whole output, far below its forward speed; `_weight_grad_blocked` computes it as im2col
matmuls over blocks of output rows that stay in cache. The forward and the input gradient stay
XLA's: no rewrite of them (space-to-depth, im2col, per-tap matmuls, space-to-batch) beat it on CPU.

`method='auto'` picks per backend (`jax.default_backend()`) and shape, see `_auto` and `_conv_auto`:
the fast forms on CPU; on GPU XLA's own gradients except the blocked weight gradient of dilated convs;
XLA's on TPU (not measured). Every form is tested equal to the reference form (values, gradients,
dtypes, NaN/Inf) in tests/ops/test_conv.py. The timings behind these choices are in docs/results.md,
"Measurements behind design choices".
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from dense_jax.checks import as_pad_pairs, as_pair, check_channels, check_choice, check_floating, check_rank

_DN = ("NHWC", "HWIO", "NHWC")

CONV_TRANSPOSE_METHODS = ("auto", "reference", "phase")


def _auto(method: str) -> str:
  """'auto' -> 'phase' on CPU (faster forward+backward, numbers in docs/results.md); 'reference'
  elsewhere: on GPU/TPU XLA's own transposed convolutions (cuDNN's backward-data conv, the TPU conv
  emitter) do not multiply the inserted zeros."""
  if method != "auto":
    return method
  return "phase" if jax.default_backend() == "cpu" else "reference"


# ------------------------------------------------------------------------------------------------
# Argument handling
# ------------------------------------------------------------------------------------------------


def _check_operands(x, w) -> None:
  check_rank(x, 4, "x", "NHWC")
  check_rank(w, 4, "w", "HWIO (kh, kw, in, out)")
  check_floating(x, "x")
  check_floating(w, "w")
  check_channels(x.shape[-1], w.shape[2], "x")


def _conv_pads(padding, in_hw, k_hw, stride, dilation):
  """`padding` of `conv2d` -> ((lo, hi), (lo, hi)); 'SAME' as in `lax` (output `ceil(in / stride)`)."""
  if isinstance(padding, str):
    mode = padding.upper()
    check_choice(mode, ("SAME", "VALID"), "padding")
    if mode == "VALID":
      return (0, 0), (0, 0)
    pads = []
    for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
      out = -(-n // s)
      total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  return as_pad_pairs(padding, "padding")


# ------------------------------------------------------------------------------------------------
# Reshapes between the phase (sub-pixel) domain and the image domain
# ------------------------------------------------------------------------------------------------


def _dilate_kernel(w, dilation):
  """Insert `d - 1` zero taps between kernel taps: `(kh, kw, ...)` -> `(d_h·(kh-1)+1, d_w·(kw-1)+1, ...)`."""
  for axis, d in enumerate(dilation):
    if d == 1:
      continue
    k = w.shape[axis]
    w = jnp.expand_dims(w, axis + 1)
    pad = [(0, 0)] * w.ndim
    pad[axis + 1] = (0, d - 1)
    w = jnp.pad(w, pad)
    shape = w.shape[:axis] + (k * d,) + w.shape[axis + 2:]
    w = lax.slice_in_dim(w.reshape(shape), 0, d * (k - 1) + 1, axis=axis)
  return w


def _depth_to_space(z, stride):
  """`(N, A, B, sh·sw·C)` with channels ordered `(rh, rw, c)` -> `(N, A·sh, B·sw, C)`."""
  (sh, sw), (n, a, b, c) = stride, z.shape
  c //= sh * sw
  z = z.reshape(n, a, b, sh, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, a * sh, b * sw, c)


def _space_to_depth(y, stride):
  """Inverse of `_depth_to_space`: `(N, A·sh, B·sw, C)` -> `(N, A, B, sh·sw·C)`, channels `(rh, rw, c)`."""
  (sh, sw), (n, h, w, c) = stride, y.shape
  y = y.reshape(n, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, h // sh, w // sw, sh * sw * c)


def _pad_or_crop(x, pads):
  """Zero-pad (or, for negative entries, crop) the two spatial axes of an NHWC array."""
  (lh, hh), (lw, hw) = pads
  x = x[:, max(-lh, 0):x.shape[1] - max(-hh, 0), max(-lw, 0):x.shape[2] - max(-hw, 0)]
  return jnp.pad(x, ((0, 0), (max(lh, 0), max(hh, 0)), (max(lw, 0), max(hw, 0)), (0, 0)))


def _all_finite(*arrays):
  """One boolean scalar: every entry of every array is finite (costs one read of each array)."""
  return functools.reduce(jnp.logical_and, [jnp.isfinite(a).all() for a in arrays])


def _phase_taps(kd: int, s: int) -> int:
  """Taps of each phase kernel: the dilated kernel of `kd` taps split into `s` phases."""
  return -(-kd // s)


# ------------------------------------------------------------------------------------------------
# A stride-1 convolution with a hand-written VJP, and the matmul weight gradient
# ------------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_padded(x, w, pads, dilation):
  """`y[n, i, j] = sum_{a, b} x_pad[n, i + a·d_h, j + b·d_w] @ w[a, b]` (stride 1; `pads` may be
  negative: crop)."""
  return _conv_padded_lax(x, w, pads, dilation)


def _conv_padded_lax(x, w, pads, dilation):
  return lax.conv_general_dilated(x, w, (1, 1), pads, rhs_dilation=dilation, dimension_numbers=_DN)


def _conv_padded_fwd(x, w, pads, dilation):
  return _conv_padded_lax(x, w, pads, dilation), (x, w)


def _conv_padded_bwd(pads, dilation, res, dy):
  """The fast VJP below, or XLA's (the reference's) when a value is not finite: the fast weight
  gradient multiplies the padding zeros by `dy`, which XLA's does not (0·Inf: NaN vs ±Inf)."""
  x, w = res
  return lax.cond(_all_finite(x, w, dy), lambda: _conv_padded_vjp(pads, dilation, x, w, dy),
                  lambda: jax.vjp(lambda x, w: _conv_padded_lax(x, w, pads, dilation), x, w)[1](dy))


def _conv_padded_vjp(pads, dilation, x, w, dy):
  spans = [d * (k - 1) for k, d in zip(w.shape[:2], dilation)]
  # dx: the "full" correlation of dy with the flipped, in/out-swapped kernel: a canonical stride-1
  # conv, which XLA:CPU runs on its fast (Eigen) path; then undo the padding.
  dxp = lax.conv_general_dilated(dy, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2), (1, 1),
                                 [(sp, sp) for sp in spans], rhs_dilation=dilation, dimension_numbers=_DN)
  dx = _pad_or_crop(dxp, [(-lo, -hi) for lo, hi in pads])
  xp = _pad_or_crop(x, pads)
  if _loops_ok():
    dw = _weight_grad_blocked(xp, dy, w.shape[:2], _ConvGeometry((1, 1), ((0, 0), (0, 0)), dilation))
  else:
    dw = jnp.stack([jnp.einsum("nhwc,nhwd->cd", xp[:, a * dilation[0]:a * dilation[0] + dy.shape[1],
                                                     b * dilation[1]:b * dilation[1] + dy.shape[2]], dy)
                    for a in range(w.shape[0]) for b in range(w.shape[1])]).reshape(w.shape)
  return dx, dw.astype(w.dtype)


_conv_padded.defvjp(_conv_padded_fwd, _conv_padded_bwd)


def _weight_grad_flat(x, dy, k_hw):
  """`dw[a, b] = sum_{n, i, j} x[n, i + a, j + b]ᵀ dy[n, i, j]` (a VALID stride-1 conv) as ONE matmul,
  for the phase form's few big taps.

  Flatten x to `xᵀ (C_in, N·H·W)`: tap `(a, b)` is then the contiguous window starting at `a·W + b`
  (entries that wrap past the image edge meet the zeros `dy` is padded with to x's size), so
  `[windows stacked] @ dy_flat` gives every tap at once. Faster than one matmul per tap for a few
  big taps, slower for 3x3 taps (docs/results.md), hence only here.
  """
  (kh, kw), (n, h, w, ci), (_, oh, ow, co) = k_hw, x.shape, dy.shape
  size = n * h * w
  x_t = jnp.pad(x.reshape(size, ci).T, ((0, 0), (0, (kh - 1) * w + kw - 1)))
  windows = jnp.concatenate([lax.slice_in_dim(x_t, a * w + b, a * w + b + size, axis=1)
                             for a in range(kh) for b in range(kw)], axis=0)
  dy_flat = jnp.pad(dy, ((0, 0), (0, h - oh), (0, w - ow), (0, 0))).reshape(size, co)
  return (windows @ dy_flat).reshape(kh, kw, ci, co)


# ------------------------------------------------------------------------------------------------
# conv2d
# ------------------------------------------------------------------------------------------------


def conv2d(x, w, *, stride=1, padding=0, dilation=1, feature_group_count: int = 1, method: str = "auto"):
  """2-D convolution (cross-correlation, as in every DL library), NHWC x HWIO.

      y[n, i, j, o] = sum_{a, b, c} x_pad[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · w[a, b, c, o]

  with `x_pad` the input zero-padded by `padding`. Output size per axis:
  `floor((H + lo + hi - d·(k - 1) - 1) / s) + 1`. The forward is one `lax.conv_general_dilated`
  (dilation through `rhs_dilation`: XLA keeps the cost flat in the rate); an unpadded, ungrouped 1x1
  conv is one matmul instead (faster on CPU, the same values).

  Args:
    x: `(N, H, W, C_in)`.
    w: `(kh, kw, C_in / feature_group_count, C_out)`.
    stride: int or `(sh, sw)`, >= 1.
    padding: int, `(ph, pw)`, `((lo_h, hi_h), (lo_w, hi_w))` (each >= 0), `'SAME'` (output
      `ceil(H / s)`, extra padding at the end, like `lax`) or `'VALID'`.
    dilation: int or `(dh, dw)`, >= 1: the kernel taps are `d` pixels apart ("à trous").
    feature_group_count: grouped convolution (C_in and C_out divisible by it).
    method: which VJP: 'reference' (XLA's autodiff of the conv), 'blocked' (the same forward and
      input gradient; the weight gradient as K-blocked im2col matmuls, see `_weight_grad_blocked`;
      ungrouped convs only; on a multi-device data-parallel program XLA:CPU can deadlock on it, see
      `_loops_ok`) or 'auto' (per backend and shape, see `_conv_auto`). Values agree to
      float rounding; non-finite values propagate as in the reference.

  Returns:
    `(N, H_out, W_out, C_out)`.
  """
  check_rank(x, 4, "x", "NHWC")
  check_rank(w, 4, "w", "HWIO (kh, kw, in, out)")
  check_floating(x, "x")
  check_floating(w, "w")
  if (isinstance(feature_group_count, bool) or not isinstance(feature_group_count, int)
      or feature_group_count < 1):
    raise ValueError(f"feature_group_count: expected an int >= 1, got {feature_group_count!r}")
  g = feature_group_count
  check_channels(x.shape[-1], w.shape[2] * g, "x")
  if w.shape[3] % g:
    raise ValueError(f"w: expected out channels divisible by feature_group_count={g}, got {w.shape[3]}")
  check_choice(method, CONV2D_METHODS, "method")
  if method == "blocked" and g != 1:
    raise ValueError(f"method: expected 'reference' or 'auto' for a grouped conv (feature_group_count={g}), "
                     f"got 'blocked'")
  stride = as_pair(stride, "stride")
  dilation = as_pair(dilation, "dilation")
  pads = _conv_pads(padding, x.shape[1:3], w.shape[:2], stride, dilation)
  for axis, n, (lo, hi), k, d in zip("HW", x.shape[1:3], pads, w.shape[:2], dilation):
    if n + lo + hi < d * (k - 1) + 1:
      raise ValueError(f"x: padded {axis} size {n + lo + hi} is smaller than the dilated kernel "
                       f"{d * (k - 1) + 1} (kernel {k}, dilation {d}, padding {(lo, hi)})")
  if w.shape[:2] == (1, 1) and g == 1 and pads == ((0, 0), (0, 0)):
    return _conv1x1(x, w, stride)
  if _conv_auto(method, x, w.shape, g, dilation) == "blocked":
    return _conv_blocked(x, w, _ConvGeometry(stride, pads, dilation))
  return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation, dimension_numbers=_DN,
                                  feature_group_count=g)


CONV2D_METHODS = ("auto", "reference", "blocked")

# 'auto' takes the blocked weight gradient on CPU from this many input and output channels on:
# below it XLA's own weight-gradient conv is as fast or faster, above it slower (docs/results.md).
_BLOCKED_MIN_CHANNELS = 48


def _loops_ok() -> bool:
  """Whether the blocked weight gradient (a `fori_loop` of matmuls) may run: only when JAX has one
  device. With a batch sharded over several devices, XLA's partitioner puts the sum over devices
  (an all-reduce) inside the loop, and XLA:CPU's concurrent executor then deadlocks (two devices
  waiting in different all-reduces: "Termination timeout for all reduce ... exceeded"), so
  multi-device programs keep XLA's own (loop-free) weight gradients."""
  return jax.device_count() == 1


def _conv_auto(method: str, x, w_shape, groups: int, dilation=(1, 1)) -> str:
  """'auto' -> 'blocked' for ungrouped convs with >= `_BLOCKED_MIN_CHANNELS` channels in and out on a
  single-device JAX (`_loops_ok`): on CPU always, on GPU only when dilated; else 'reference'.
  On GPU, XLA's weight gradient (cuDNN's backward-filter conv) beats the blocked one on undilated
  convs but not on dilated ones; TPU keeps XLA's (not measured). Timings: docs/results.md. Also
  'reference' when `x` is explicitly sharded along H, W or C (spatial partitioning): the blocks slice
  rows, which would gather a sharded H."""
  if method != "auto":
    return method
  backend = jax.default_backend()
  wanted = backend == "cpu" or (backend == "gpu" and max(dilation) > 1)
  spec = tuple(getattr(getattr(jax.typeof(x), "sharding", None), "spec", ()) or ())
  if (wanted and groups == 1 and _loops_ok() and not any(p is not None for p in spec[1:])
      and min(x.shape[-1], w_shape[-1]) >= _BLOCKED_MIN_CHANNELS):
    return "blocked"
  return "reference"


class _ConvGeometry(NamedTuple):
  stride: tuple
  pads: tuple
  dilation: tuple


def _conv_lax(x, w, conf: _ConvGeometry):
  return lax.conv_general_dilated(x, w, conf.stride, conf.pads, rhs_dilation=conf.dilation,
                                  dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_blocked(x, w, conf: _ConvGeometry):
  """`lax.conv_general_dilated` with a hand-written VJP: XLA's input gradient, the blocked weight
  gradient."""
  return _conv_lax(x, w, conf)


def _conv_blocked_fwd(x, w, conf):
  return _conv_lax(x, w, conf), (x, w)


def _conv_blocked_bwd(conf, res, dy):
  x, w = res
  # dx: XLA's own transpose of the conv (a conv of dy with the flipped kernel, lhs-dilated when
  # strided), which runs near forward speed on CPU.
  _, x_vjp = jax.vjp(lambda v: _conv_lax(v, w, conf), x)
  (dx,) = x_vjp(dy)
  dw = _weight_grad_blocked(x, dy, w.shape[:2], conf)
  return dx, dw.astype(w.dtype)


_conv_blocked.defvjp(_conv_blocked_fwd, _conv_blocked_bwd)

# Pixels of `dy` per block of the blocked weight gradient: the block's im2col patch matrix
# (pixels x kh·kw·C_in) stays in the L2 cache for the channel counts of U-Net / ResNet layers;
# much smaller blocks pay loop overhead, whole images fall out of cache (docs/results.md).
_DW_BLOCK_PIXELS = 512


def _block_rows(n: int, oh: int, ow: int) -> int:
  """Output rows per block (of every image at once): up to `_DW_BLOCK_PIXELS` pixels, at least one row."""
  return max(1, min(oh, _DW_BLOCK_PIXELS // (n * ow)))


def _weight_grad_blocked(x, dy, k_hw, conf: _ConvGeometry):
  """`dw[a, b] = sum_{n, i, j} x_pad[n, i·s_h + a·d_h, j·s_w + b·d_w]ᵀ dy[n, i, j]`, accumulated in
  float32 (float64 for float64 inputs).

  The sum over the K = N·H_out·W_out pixels is split into blocks of whole output rows of every image
  (`_block_rows`); per block the patch matrix `P` (pixels, kh·kw·C_in) of the input rows the block
  reads is built in cache and `Pᵀ @ dy_block` (one matmul, kh·kw·C_in x C_out) is added to an
  accumulator in a `fori_loop`. XLA:CPU lowers the autodiff weight gradient to a convolution whose
  "kernel" is the whole output, and a single long-K matmul over a materialised patch matrix runs
  from memory; the blocked form runs near matmul speed (docs/results.md). Blocks never split the
  batch axis, so a batch sharded over devices stays sharded (each device contracts its own images,
  then one sum over devices); the price is that a block holds at least one row of every image
  (N·W_out pixels: large batches of wide images get blocks above the cache-sized target). Rows that
  do not fill a block are one more block after the loop.
  """
  (kh, kw), (sh, sw), (dh, dw_) = k_hw, conf.stride, conf.dilation
  x = jnp.pad(x, ((0, 0), *conf.pads, (0, 0)))
  n, _, _, ci = x.shape
  _, oh, ow, co = dy.shape
  acc_dtype = jnp.promote_types(jnp.result_type(x, dy), jnp.float32)
  span_w = (ow - 1) * sw + dw_ * (kw - 1) + 1

  def block(acc, r0, rows):
    """acc + Pᵀ dy for output rows [r0, r0 + rows) of every image."""
    span_h = (rows - 1) * sh + dh * (kh - 1) + 1
    slab = lax.dynamic_slice_in_dim(x, r0 * sh, span_h, axis=1)[:, :, :span_w]
    patches = jnp.concatenate(
        [slab[:, a * dh:a * dh + (rows - 1) * sh + 1:sh, b * dw_:b * dw_ + (ow - 1) * sw + 1:sw]
         for a in range(kh) for b in range(kw)], axis=-1)
    g = lax.dynamic_slice_in_dim(dy, r0, rows, axis=1)
    return acc + lax.dot_general(patches, g, (((0, 1, 2), (0, 1, 2)), ((), ())),
                                 preferred_element_type=acc_dtype, out_sharding=replicated)

  # Under explicit sharding (`AxisType.Explicit`) a dot contracting a sharded batch must name its
  # output sharding: dw is replicated, like the weights. (Auto sharding: None, the partitioner's
  # choice, which keeps each device's images local and sums once.)
  spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", ())
  replicated = jax.sharding.PartitionSpec() if any(p is not None for p in spec) else None

  rows = _block_rows(n, oh, ow)
  acc = jnp.zeros((kh * kw * ci, co), acc_dtype)
  acc = lax.fori_loop(0, oh // rows, lambda i, acc: block(acc, i * rows, rows), acc)
  if oh % rows:
    acc = block(acc, oh - oh % rows, oh % rows)
  return acc.reshape(kh, kw, ci, co)


def _conv1x1(x, w, stride):
  """An unpadded 1x1 conv is a matmul over channels of the stride-subsampled input.

  XLA:CPU runs the matmul faster than the same 1x1 `conv_general_dilated`, forward and (more so)
  backward (docs/results.md); on GPU/TPU both lower to the same dot.
  """
  x = x[:, ::stride[0], ::stride[1]]
  n, h, wd, c = x.shape
  return (x.reshape(n * h * wd, c) @ w.reshape(c, w.shape[-1])).reshape(n, h, wd, w.shape[-1])


# ------------------------------------------------------------------------------------------------
# conv_transpose2d
# ------------------------------------------------------------------------------------------------


class _TGeom(NamedTuple):
  """Per-axis geometry of the phase form of a transposed conv (see `_tgeom`)."""
  out: int      # output size
  taps: int     # M, taps of each phase kernel
  pad_lo: int   # input padding (negative = crop) before the phase conv
  pad_hi: int
  rows: int     # phase rows computed (nq)
  crop: int     # first output row inside the depth-to-space result


def _tgeom(size, k, s, p, op, d) -> _TGeom:
  """Geometry of one axis: full output row `t = o + p = q·s + r` gets `x[q - m]·w_dil[m·s + r]`.

  Only phase rows `q ∈ [q0, q1)` with `q0 = p // s`, `q1 = ceil((p + out) / s)` are computed: the
  stride-1 conv reads `x[q - M + 1 .. q]`, i.e. x padded by `M - 1 - q0` rows before.
  """
  kd = d * (k - 1) + 1
  out = (size - 1) * s - 2 * p + kd + op
  m = _phase_taps(kd, s)
  q0, q1 = p // s, -(-(p + out) // s)
  rows = q1 - q0
  pad_lo = m - 1 - q0
  return _TGeom(out, m, pad_lo, rows + m - 1 - size - pad_lo, rows, p - q0 * s)


def _phase_kernel(w, stride, dilation):
  """`(kh, kw, C_in, C_out)` -> the packed phase kernel `(Mh, Mw, C_in, sh·sw·C_out)`.

  `wc[j, :, :, (r, o)] = w_dil[(M - 1 - j)·s + r, :, :, o]`: the taps of phase `r`, flipped so that
  a correlation over `j` computes the sum over `m = M - 1 - j`.
  """
  (sh, sw), (_, _, ci, co) = stride, w.shape
  wk = _dilate_kernel(w, dilation)
  kdh, kdw = wk.shape[:2]
  mh, mw = _phase_taps(kdh, sh), _phase_taps(kdw, sw)
  wk = jnp.pad(wk, ((0, mh * sh - kdh), (0, mw * sw - kdw), (0, 0), (0, 0)))
  wk = wk.reshape(mh, sh, mw, sw, ci, co)[::-1, :, ::-1]
  return wk.transpose(0, 2, 4, 1, 3, 5).reshape(mh, mw, ci, sh * sw * co)


class _TransposeGeometry(NamedTuple):
  stride: tuple
  padding: tuple
  output_padding: tuple
  dilation: tuple


def _phase_forward(x, w, conf: _TransposeGeometry):
  gh, gw = (_tgeom(size, k, s, p, op, d) for size, k, s, p, op, d in zip(
      x.shape[1:3], w.shape[:2], conf.stride, conf.padding, conf.output_padding, conf.dilation))
  xp = _pad_or_crop(x, ((gh.pad_lo, gh.pad_hi), (gw.pad_lo, gw.pad_hi)))
  z = lax.conv_general_dilated(xp, _phase_kernel(w, conf.stride, conf.dilation), (1, 1), "VALID",
                               dimension_numbers=_DN)
  y = _depth_to_space(z, conf.stride)
  return y[:, gh.crop:gh.crop + gh.out, gw.crop:gw.crop + gw.out]


def _reference_of(conf: _TransposeGeometry):
  return lambda x, w: _conv_transpose_reference(x, w, conf.stride, conf.padding, conf.output_padding,
                                                conf.dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_transpose_phase(x, w, conf: _TransposeGeometry):
  return _phase_or_reference_forward(x, w, conf)


def _phase_or_reference_forward(x, w, conf):
  """The phase form, or the reference form when `x` or `w` holds a NaN or an Inf.

  The packed phase kernel has zero taps (the padding of `d·(k-1)+1` taps to a multiple of `s`, and
  the zeros of a dilated kernel) which multiply x: a NaN/Inf input then spreads further than in the
  reference and ±Inf becomes NaN (0·Inf). Only
  then is the reference form run (`lax.cond`: one branch executes; under `vmap` with a per-example
  predicate both run), so non-finite values propagate exactly as in the reference.
  """
  return _phase_or_reference_forward_flag(x, w, conf)[0]


def _phase_or_reference_forward_flag(x, w, conf):
  finite = _all_finite(x, w)
  return lax.cond(finite, lambda: _phase_forward(x, w, conf), lambda: _reference_of(conf)(x, w)), finite


def _conv_transpose_phase_fwd(x, w, conf):
  y, finite = _phase_or_reference_forward_flag(x, w, conf)
  return y, (x, w, finite)


def _conv_transpose_phase_bwd(conf, res, dy):
  """The phase-domain VJP, or the reference form's when a non-finite value is about (see
  `_phase_or_reference_forward`): the flipped phase kernel's zero taps would meet a non-finite `dy`."""
  x, w, finite = res  # finite: x and w, checked by the forward
  return lax.cond(finite & _all_finite(dy), lambda: _phase_vjp(conf, x, w, dy),
                  lambda: jax.vjp(_reference_of(conf), x, w)[1](dy))


def _phase_vjp(conf, x, w, dy):
  gh, gw = (_tgeom(size, k, s, p, op, d) for size, k, s, p, op, d in zip(
      x.shape[1:3], w.shape[:2], conf.stride, conf.padding, conf.output_padding, conf.dilation))
  (sh, sw) = conf.stride
  # The forward is y = crop(depth_to_space(conv_valid(xp, wc))), so its cotangent in the phase
  # domain is dz = space_to_depth(uncrop(dy)): (N, rows_h, rows_w, sh·sw·C_out), no inserted zeros.
  dz = jnp.pad(dy, ((0, 0), (gh.crop, gh.rows * sh - gh.out - gh.crop),
                    (gw.crop, gw.rows * sw - gw.out - gw.crop), (0, 0)))
  dz = _space_to_depth(dz, conf.stride)
  wc = _phase_kernel(w, conf.stride, conf.dilation)
  # dx: the "full" stride-1 correlation of dz with the flipped, in/out-swapped phase kernel (XLA's
  # fast path), un-padded back to x; faster on CPU than the equivalent strided conv of dy with w,
  # the transposed conv's adjoint written directly.
  dxp = lax.conv_general_dilated(dz, jnp.flip(wc, (0, 1)).transpose(0, 1, 3, 2), (1, 1),
                                 ((gh.taps - 1, gh.taps - 1), (gw.taps - 1, gw.taps - 1)),
                                 dimension_numbers=_DN)
  dx = _pad_or_crop(dxp, ((-gh.pad_lo, -gh.pad_hi), (-gw.pad_lo, -gw.pad_hi)))
  # dw: dwc = the weight gradient of the stride-1 phase conv (blocked im2col matmuls, faster than
  # `_weight_grad_flat` here), then back through the phase-kernel packing.
  xp = _pad_or_crop(x, ((gh.pad_lo, gh.pad_hi), (gw.pad_lo, gw.pad_hi)))
  if _loops_ok():
    dwc = _weight_grad_blocked(xp, dz, (gh.taps, gw.taps), _ConvGeometry((1, 1), ((0, 0), (0, 0)), (1, 1)))
  else:
    dwc = _weight_grad_flat(xp, dz, (gh.taps, gw.taps))
  _, kernel_vjp = jax.vjp(lambda v: _phase_kernel(v, conf.stride, conf.dilation), w)
  (dw,) = kernel_vjp(dwc.astype(w.dtype))
  return dx, dw


_conv_transpose_phase.defvjp(_conv_transpose_phase_fwd, _conv_transpose_phase_bwd)


def conv_transpose2d(x, w, *, stride, padding=0, output_padding=0, dilation=1, method: str = "auto"):
  """Transposed convolution ("deconvolution", fractionally strided conv), NHWC x `(kh, kw, in, out)`.

  Every input pixel scatters a kernel-weighted copy of itself into the output, `s` output pixels
  apart per input pixel; overlaps are summed, then `padding` rows are cropped from each border:

      y[n, i·s + a·d - p, j·s + b·d - p, o] += x[n, i, j, c] · w[a, b, c, o]

  Output size per axis: `(H - 1)·s - 2·p + d·(k - 1) + output_padding + 1`. This is exactly
  `torch.nn.functional.conv_transpose2d(x_nchw, w.transpose(2, 3, 0, 1), stride=s, padding=p,
  output_padding=op, dilation=d)` in NHWC, and the adjoint (input gradient) of `conv2d` with the
  same stride/padding/dilation and kernel `w.transpose(0, 1, 3, 2)`.

  Example (the lecture): a 3x3 transposed conv with stride 2 and padding 1 takes 2x2 to 3x3
  (padding 0 gives the full 5x5 overlap-add).

  Args:
    x: `(N, H, W, C_in)`.
    w: `(kh, kw, C_in, C_out)`.
    stride: int or `(sh, sw)`, >= 1.
    padding: int or `(ph, pw)`, >= 0: rows/columns cropped from each border of the full output.
    output_padding: int or `(oph, opw)`, >= 0, each smaller than stride or dilation (PyTorch's
      rule: `op < max(s, d)`): extra rows/columns added at the bottom/right.
    dilation: int or `(dh, dw)`, >= 1: spacing of the kernel taps.
    method: 'reference' (`lax.conv_general_dilated` with `lhs_dilation` and the flipped kernel:
      "insert zeros, then convolve"), 'phase' (sub-pixel decomposition with a hand-written VJP,
      see the module docstring) or 'auto' (per backend). The hand-written VJP supports reverse mode
      to any order (grad of grad) but not forward mode (`jax.jvp`, `jax.jacfwd`): use
      'reference' there. 'phase' gives NaN/±Inf where 'reference' does: with a non-finite input
      (or cotangent) it runs the reference form instead (a `lax.cond`; under `vmap` both branches
      run, so batched calls pay for the reference form too).

  Returns:
    `(N, H_out, W_out, C_out)`.
  """
  _check_operands(x, w)
  stride = as_pair(stride, "stride")
  padding = as_pair(padding, "padding", minimum=0)
  output_padding = as_pair(output_padding, "output_padding", minimum=0)
  dilation = as_pair(dilation, "dilation")
  check_choice(method, CONV_TRANSPOSE_METHODS, "method")
  for axis, op, s, d in zip("HW", output_padding, stride, dilation):
    if op >= max(s, d):
      raise ValueError(f"output_padding: expected a value smaller than stride ({s}) or dilation ({d}) "
                       f"along {axis}, got {op}")
  for axis, size, k, s, p, op, d in zip("HW", x.shape[1:3], w.shape[:2], stride, padding,
                                        output_padding, dilation):
    out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
    if out < 1:
      raise ValueError(f"padding: expected at most the full output (size {out + 2 * p}) along {axis} "
                       f"to be cropped, got padding {p} (output size {out})")
  method = _auto(method)
  if method == "phase" and stride == (1, 1):
    # No zeros to insert: the reference form is a plain conv of the padded input with the flipped
    # kernel. XLA runs it well unless the output is larger than the input (padding below
    # (d·(k-1) + op) / 2, e.g. the "full" conv), where its weight gradient leaves the fast path:
    # then the same conv with the hand-written VJP.
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
            for k, p, op, d in zip(w.shape[:2], padding, output_padding, dilation)]
    if any(lo + hi > d * (k - 1) for (lo, hi), k, d in zip(pads, w.shape[:2], dilation)):
      return _conv_padded(x, jnp.flip(w, (0, 1)), tuple(pads), dilation)
  elif method == "phase":
    return _conv_transpose_phase(x, w, _TransposeGeometry(stride, padding, output_padding, dilation))
  return _conv_transpose_reference(x, w, stride, padding, output_padding, dilation)


def _conv_transpose_reference(x, w, stride, padding, output_padding, dilation):
  """Insert `s - 1` zeros between input pixels, pad by `d·(k-1) - p` (+ output_padding at the end),
  convolve with the spatially flipped kernel. Negative padding crops."""
  pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
          for k, p, op, d in zip(w.shape[:2], padding, output_padding, dilation)]
  return lax.conv_general_dilated(x, jnp.flip(w, (0, 1)), (1, 1), pads, lhs_dilation=stride,
                                  rhs_dilation=dilation, dimension_numbers=_DN)
