"""Flax module for fixed unpooling (nearest neighbour or bed of nails); no parameters."""

from __future__ import annotations

import flax.linen as nn

from dense_jax.ops.unpool import unpool_bed_of_nails, unpool_nearest

_MODES = {"nearest": unpool_nearest, "bed_of_nails": unpool_bed_of_nails}


class Unpool(nn.Module):
  """`x (N, H, W, C) -> (N, H·fh, W·fw, C)`.

  Attributes:
    factor: int or (fh, fw), each >= 1.
    mode: 'nearest' (copy each pixel into its block) or 'bed_of_nails' (pixel at the block's
      top-left, zeros elsewhere).
  """
  factor: int | tuple[int, int] = 2
  mode: str = "nearest"

  @nn.compact
  def __call__(self, x):
    if self.mode not in _MODES:
      raise ValueError(f"mode: expected one of {sorted(_MODES)}, got {self.mode!r}")
    return _MODES[self.mode](x, self.factor)
