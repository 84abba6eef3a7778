"""Flax modules over `dense_jax.ops.conv`: `Conv` (strided / dilated / grouped), `ConvTranspose`
(PyTorch semantics) and `BilinearUpsample` (FCN's bilinear-initialised transposed conv).

Parameters are named as in `flax.linen`: `kernel` `(kh, kw, C_in / groups, C_out)` and `bias`
`(C_out,)`, so converters map PyTorch weights with `kernel = weight.permute(2, 3, 1, 0)` (Conv2d) or
`kernel = weight.permute(2, 3, 0, 1)` (ConvTranspose2d, whose weight is `(C_in, C_out, kh, kw)`).

Unlike `flax.linen.ConvTranspose` (padding applied to the zero-inserted input, kernel not flipped
unless `transpose_kernel=True`), `ConvTranspose` here computes exactly
`torch.nn.ConvTranspose2d(C_in, C_out, k, stride, padding, output_padding, dilation=dilation)`,
and runs the fast phase form on CPU (see `dense_jax.ops.conv`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.checks import as_pair
from dense_jax.ops.conv import conv2d, conv_transpose2d
from dense_jax.ops.resize import bilinear_upsample_kernel

IntOrPair = int | tuple[int, int]
Initializer = Callable[..., Any]


class Conv(nn.Module):
  """`x (N, H, W, C_in) -> (N, H_out, W_out, features)`: `ops.conv2d` plus an optional bias.

  Attributes:
    features: output channels.
    kernel_size: int or (kh, kw).
    stride: int or (sh, sw).
    padding: 'SAME' (default; output `ceil(H / s)`), 'VALID', an int, `(ph, pw)` or
      `((lo_h, hi_h), (lo_w, hi_w))`.
    dilation: int or (dh, dw): the atrous rate (keeps resolution with 'SAME' and stride 1).
    feature_group_count: grouped convolution (`C_in` for depthwise).
    use_bias: add a learned bias.
    kernel_init, bias_init: initialisers (Flax defaults: LeCun normal, zeros).
    dtype: computation dtype (None: from the input); param_dtype: parameter dtype.
  """
  features: int
  kernel_size: IntOrPair = 3
  stride: IntOrPair = 1
  padding: Any = "SAME"
  dilation: IntOrPair = 1
  feature_group_count: int = 1
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any | None = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kh, kw = as_pair(self.kernel_size, "kernel_size")
    groups = self.feature_group_count
    if groups < 1 or x.shape[-1] % groups:
      raise ValueError(f"feature_group_count: expected a divisor of the input channels {x.shape[-1]}, "
                       f"got {groups}")
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1] // groups, self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, stride=self.stride, padding=self.padding, dilation=self.dilation,
               feature_group_count=groups)
    return y if bias is None else y + bias


class ConvTranspose(nn.Module):
  """`x (N, H, W, C_in) -> (N, H_out, W_out, features)`: `ops.conv_transpose2d` plus a bias.

  `H_out = (H - 1)·s - 2·p + d·(k - 1) + output_padding + 1`; e.g. kernel 4, stride 2, padding 1
  doubles the resolution (U-Net, DCGAN).

  Attributes:
    features: output channels.
    kernel_size: int or (kh, kw); the kernel is `(kh, kw, C_in, features)`.
    stride, padding, output_padding, dilation: as `torch.nn.ConvTranspose2d`.
    use_bias, kernel_init, bias_init, dtype, param_dtype: as `Conv`.
    method: `ops.conv_transpose2d` method ('auto', 'reference', 'phase').
  """
  features: int
  kernel_size: IntOrPair = 4
  stride: IntOrPair = 2
  padding: IntOrPair = 1
  output_padding: IntOrPair = 0
  dilation: IntOrPair = 1
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any | None = None
  param_dtype: Any = jnp.float32
  method: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = as_pair(self.kernel_size, "kernel_size")
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_transpose2d(x, kernel, stride=self.stride, padding=self.padding,
                         output_padding=self.output_padding, dilation=self.dilation, method=self.method)
    return y if bias is None else y + bias


class BilinearUpsample(nn.Module):
  """`x (N, H, W, C) -> (N, H·f, W·f, C)`: FCN's upsampler, a stride-`f` transposed conv with kernel
  `k = 2f - f % 2` initialised to bilinear interpolation (`ops.bilinear_upsample_kernel`: diagonal
  in channels, tent-shaped in space).

  With the default `padding = f // 2` the output is exactly `f` times the input and equals
  `ops.resize_bilinear(x, (H·f, W·f))` away from a border of `f // 2` pixels (see the kernel's
  docstring). FCN uses `padding=0` and crops later.

  Attributes:
    factor: the upsampling factor f (int >= 1).
    learnable: True (FCN): the kernel is a parameter `kernel (k, k, C, C)` starting at bilinear and
      trained with the network; False: a fixed bilinear upsampler with no parameters.
    padding: None (`f // 2`) or an explicit int.
    use_bias: add a learned bias (zeros at init); only with `learnable`.
    dtype, param_dtype, method: as `ConvTranspose`.
  """
  factor: int = 2
  learnable: bool = True
  padding: int | None = None
  use_bias: bool = False
  dtype: Any | None = None
  param_dtype: Any = jnp.float32
  method: str = "auto"

  @nn.compact
  def __call__(self, x):
    if self.use_bias and not self.learnable:
      raise ValueError("use_bias: expected False for a fixed (learnable=False) upsampler, got True")
    channels = x.shape[-1]
    init = lambda _key, shape, dtype: bilinear_upsample_kernel(self.factor, shape[-1], dtype)
    k = 2 * self.factor - self.factor % 2
    if self.learnable:
      kernel = self.param("kernel", init, (k, k, channels, channels), self.param_dtype)
    else:
      kernel = bilinear_upsample_kernel(self.factor, channels, self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (channels,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    padding = self.factor // 2 if self.padding is None else self.padding
    y = conv_transpose2d(x, kernel, stride=self.factor, padding=padding, method=self.method)
    return y if bias is None else y + bias
