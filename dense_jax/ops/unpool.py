"""Fixed (parameter-free) unpooling: nearest neighbour and "bed of nails".

Both are written as broadcast + reshape (depth-to-space), so they compile to copies with no
scatter, and their gradients are reshapes + reductions / strided slices with no scatter either.
"""

from __future__ import annotations

import jax.numpy as jnp

from dense_jax.checks import as_pair, check_rank


def unpool_nearest(x, factor):
  """Nearest-neighbour unpooling: every pixel becomes an `fh × fw` block of copies.

      y[n, h, w, c] = x[n, h // fh, w // fw, c]

  Args:
    x: `(N, H, W, C)`.
    factor: int or `(fh, fw)`, each >= 1.

  Returns:
    `(N, H·fh, W·fw, C)`. The gradient sums each block.
  """
  check_rank(x, 4, "x", "NHWC")
  fh, fw = as_pair(factor, "factor")
  n, h, w, c = x.shape
  y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, fh, w, fw, c))
  return y.reshape(n, h * fh, w * fw, c)


def unpool_bed_of_nails(x, factor):
  """"Bed of nails" unpooling: each value goes to the top-left of its `fh × fw` block, zeros elsewhere.

      y[n, h, w, c] = x[n, h // fh, w // fw, c]  if h % fh == 0 and w % fw == 0, else 0

  Args:
    x: `(N, H, W, C)`.
    factor: int or `(fh, fw)`, each >= 1.

  Returns:
    `(N, H·fh, W·fw, C)`. The gradient is the strided subsample `g[:, ::fh, ::fw]`.
  """
  check_rank(x, 4, "x", "NHWC")
  fh, fw = as_pair(factor, "factor")
  n, h, w, c = x.shape
  # Pad each pixel into a block on two new axes, then fold the blocks into the spatial axes.
  y = jnp.pad(x[:, :, None, :, None, :], ((0, 0), (0, 0), (0, fh - 1), (0, 0), (0, fw - 1), (0, 0)))
  return y.reshape(n, h * fh, w * fw, c)
