"""Flax modules for the argmax-pooling / max-unpooling pair (SegNet, DeconvNet).

Parameter-free wrappers over `dense_jax.ops.pooling`; indices follow PyTorch (flat `h * W + w`
per (batch, channel) plane), so a decoder can unpool with the encoder's indices:

  pool = MaxPoolWithArgmax(2)
  unpool = MaxUnpool(2)
  y, idx = pool(x)                  # (N, H/2, W/2, C), int32 indices
  x_up = unpool(y, idx, x.shape[1:3])
"""

from __future__ import annotations

import flax.linen as nn

from dense_jax.ops.pooling import max_pool_with_argmax, max_unpool

IntOrPair = int | tuple[int, int]


class MaxPoolWithArgmax(nn.Module):
  """`x (N, H, W, C) -> (pooled (N, Ho, Wo, C), indices int32)`; see `ops.max_pool_with_argmax`.

  Attributes:
    window: pooling window, int or (kh, kw).
    stride: stride, int or (sh, sw); None means `window` (as PyTorch).
    padding: int or (ph, pw), at most half the window; padded pixels never win.
  """
  window: IntOrPair = 2
  stride: IntOrPair | None = None
  padding: IntOrPair = 0

  @nn.compact
  def __call__(self, x):
    return max_pool_with_argmax(x, self.window, self.stride, self.padding)


class MaxUnpool(nn.Module):
  """`(y, indices[, output_size]) -> (N, H, W, C)`, zeros except at the indices; see `ops.max_unpool`.

  Attributes:
    window, stride, padding: those of the pooling that produced the indices.
    method: 'auto' / 'window' (scatter-free, fast) or 'dense' (reference).
  """
  window: IntOrPair = 2
  stride: IntOrPair | None = None
  padding: IntOrPair = 0
  method: str = "auto"

  @nn.compact
  def __call__(self, y, indices, output_size: IntOrPair | None = None):
    """`output_size` = (H, W) of the pooled input; default `(Ho - 1)·s - 2·p + k` (PyTorch's)."""
    return max_unpool(y, indices, self.window, self.stride, self.padding, output_size,
                      method=self.method)
