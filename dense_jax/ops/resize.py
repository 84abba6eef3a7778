"""Bilinear resizing (PyTorch semantics) and the bilinear kernel for transposed convolutions.

`resize_bilinear` computes what `torch.nn.functional.interpolate(x, size, mode='bilinear',
align_corners=...)` computes (no antialiasing, for up- and down-sampling alike). It is *not*
`jax.image.resize`, which antialiases when it downsamples and only knows the half-pixel
(`align_corners=False`) convention.

Bilinear resizing is separable and linear, so it is written as two small interpolation matrices,
`y = A_h @ x @ A_w^T` per (batch, channel) plane, applied with two einsums. The matrices are built
in NumPy at trace time (shapes are static), so the program is two dense contractions: no gather,
no scatter, and the gradient is the same contractions transposed. Cost: `2·N·C·(H_out·H_in·W_in +
H_out·W_out·W_in)` FLOPs, i.e. it grows with the input size per output pixel; it is the right
trade for the sizes of dense prediction heads (a few hundred pixels a side), where the matrix
form beats a gather (whose gradient would be a scatter-add).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from dense_jax.checks import as_pair, check_rank


def _source_coordinates(out_size: int, in_size: int, align_corners: bool) -> np.ndarray:
  """Input coordinate (in pixels, float64) sampled by each output pixel, as PyTorch computes it.

  align_corners=True:  src = dst · (in - 1) / (out - 1)   (src = 0 when out == 1): the corner
                        pixel centres of input and output coincide.
  align_corners=False: src = (dst + 0.5) · in / out - 0.5, clamped below at 0: pixels are unit
                        squares and their centres are mapped (the "half-pixel" convention).
  """
  dst = np.arange(out_size, dtype=np.float64)
  if align_corners:
    if out_size == 1:
      return np.zeros(1)
    return dst * ((in_size - 1) / (out_size - 1))
  return np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)


def interpolation_matrix(out_size: int, in_size: int, align_corners: bool = False) -> np.ndarray:
  """The `(out_size, in_size)` float64 matrix of 1-D linear interpolation (PyTorch's convention).

  Row `o` holds weight `1 - λ` at `i0 = floor(src_o)` and `λ = src_o - i0` at `min(i0 + 1,
  in_size - 1)`; rows sum to one. Resizing along one axis is `A @ x` along that axis.
  """
  src = _source_coordinates(out_size, in_size, align_corners)
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  lam = src - i0
  a = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(a, (rows, i0), 1.0 - lam)  # add.at: i0 == i1 at the last input pixel.
  np.add.at(a, (rows, i1), lam)
  return a


def resize_bilinear(x, size, align_corners: bool = False):
  """Bilinear resize of NHWC `x` to spatial `size = (H_out, W_out)` (an int means square).

  Equal to `torch.nn.functional.interpolate(x_nchw, size=size, mode='bilinear',
  align_corners=align_corners)` transposed to NHWC, for up- and down-sampling (no antialias).

  Args:
    x: `(N, H, W, C)` floating array.
    size: output `(H_out, W_out)`, or an int for both.
    align_corners: PyTorch's flag (see `interpolation_matrix`).

  Returns:
    `(N, H_out, W_out, C)` array of `x.dtype`. Low-precision inputs (bf16/f16) are interpolated in
    float32 and cast back; float32 contractions use HIGHEST precision so TPUs do not round the
    weights to bf16.
  """
  check_rank(x, 4, "x", "NHWC")
  out_h, out_w = as_pair(size, "size")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x: expected a floating dtype, got {x.dtype}")
  _, in_h, in_w, _ = x.shape
  compute = jnp.promote_types(x.dtype, jnp.float32)
  a_h = jnp.asarray(interpolation_matrix(out_h, in_h, align_corners), compute)
  a_w = jnp.asarray(interpolation_matrix(out_w, in_w, align_corners), compute)
  xc = x.astype(compute)
  hp = lax.Precision.HIGHEST
  # Contract the smaller blow-up first: resizing H first costs H_out·H_in·W_in, then W costs
  # H_out·W_out·W_in; the other order costs W_out·W_in·H_in + H_out·W_out·H_in.
  cost_h_first = out_h * in_h * in_w + out_h * out_w * in_w
  cost_w_first = out_w * in_w * in_h + out_h * out_w * in_h
  if cost_h_first <= cost_w_first:
    y = jnp.einsum("oh,nhwc->nowc", a_h, xc, precision=hp)
    y = jnp.einsum("pw,nowc->nopc", a_w, y, precision=hp)
  else:
    y = jnp.einsum("pw,nhwc->nhpc", a_w, xc, precision=hp)
    y = jnp.einsum("oh,nhpc->nopc", a_h, y, precision=hp)
  return y.astype(x.dtype)


def bilinear_upsample_kernel(factor: int, channels: int, dtype=jnp.float32):
  """The HWIO kernel `(k, k, channels, channels)` that makes a transposed conv a bilinear upsampler.

  `k = 2·factor - factor % 2` and, with `c = factor - 1` (k odd) or `factor - 0.5` (k even),
      w[i, j, a, b] = (1 - |i - c| / factor) · (1 - |j - c| / factor) · [a == b]
  — FCN's `get_upsampling_weight` (Long et al., 2015): diagonal in channels, each channel upsampled
  on its own.

  Alignment: `conv_transpose2d(x, w, stride=factor, padding=factor // 2)` has output size
  `H·factor` exactly (`(H - 1)·f - 2·(f // 2) + k = H·f`) and equals
  `resize_bilinear(x, (H·f, W·f), align_corners=False)` everywhere except a border of `factor // 2`
  output pixels on each side, where the transposed conv sees zeros beyond the image while
  `resize_bilinear` repeats the edge pixel. Edge-padding the input by one pixel and using
  `padding = factor // 2 + factor` makes the two equal everywhere. (FCN itself uses padding 0
  and crops `factor // 2` pixels, i.e. the same alignment.)

  Args:
    factor: the upsampling factor (the transposed conv's stride), >= 1.
    channels: number of channels C (in == out).
    dtype: dtype of the returned kernel.
  """
  if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
    raise ValueError(f"factor: expected an int >= 1, got {factor!r}")
  if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
    raise ValueError(f"channels: expected an int >= 1, got {channels!r}")
  k = 2 * factor - factor % 2
  center = factor - 1 if k % 2 == 1 else factor - 0.5
  t = 1.0 - np.abs(np.arange(k, dtype=np.float64) - center) / factor
  filt = np.outer(t, t)
  w = np.zeros((k, k, channels, channels), np.float64)
  w[:, :, np.arange(channels), np.arange(channels)] = filt[:, :, None]
  return jnp.asarray(w, dtype)
