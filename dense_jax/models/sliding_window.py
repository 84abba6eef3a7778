"""The sliding-window baseline: a patch classifier run around every pixel, and its fully convolutional twin.

The patch classifier labels the centre pixel of a P×P patch (P = `patch_size`, even):
  conv1 3×3 valid (c1) → ReLU → conv2 3×3 valid (c2) → ReLU → max-pool 2×2 stride 2
  → conv3 3×3 valid (c3) → ReLU → fc = k×k valid "dense" layer (hidden) → ReLU → out = 1×1 (classes)
with k = (P - 4) / 2 - 2 the map size left before fc (P = 18 → k = 5). The patch of pixel (i, j)
covers rows i - P/2 … i + P/2 - 1 (likewise columns) of the zero-padded image.

`mode='sliding'` is the lecture's slow baseline: cut out H·W patches and classify each on its own
(in chunks of `chunk` patches, so memory stays bounded); neighbouring patches overlap in P² - P
pixels and all that shared work is recomputed.

`mode='dense'` computes exactly the same numbers with the same parameters in one pass over the
padded image: every layer becomes a convolution over the whole image, and the stride-2 pooling
becomes a stride-1 pooling whose later layers are dilated by 2 (the patch's pooling grid, seen
from every possible patch offset at once — the "à trous" / shift-and-stitch argument). The fc layer
is a k×k conv with dilation 2. Output: (N, H, W, classes) for both modes.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from dense_jax.models._common import Dtype, check_image, kaiming_fan_out, scaled
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model

_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, b, dilation=1):
  y = lax.conv_general_dilated(x, w, (1, 1), "VALID", rhs_dilation=(dilation, dilation), dimension_numbers=_DN)
  return y + b


def _pool(x, stride):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, stride, stride, 1), "VALID")


class SlidingWindow(nn.Module):
  """Patch classifier around every pixel (see the module docstring); `mode` 'sliding' or 'dense'."""
  num_classes: int = 21
  patch_size: int = 18
  channels: Sequence[int] = (32, 64, 128)
  hidden: int = 256
  width: float = 1.0
  mode: str = "dense"
  chunk: int = 4096
  dtype: Dtype = jnp.float32
  input_norm: str = "none"   # see dense_jax.models.inputs

  @property
  def fc_size(self) -> int:
    return (self.patch_size - 4) // 2 - 2

  def _weights(self, c_in):
    c1, c2, c3 = (scaled(c, self.width) for c in self.channels)
    hidden, k = scaled(self.hidden, self.width), self.fc_size
    layers = {}
    for name, shape in [("conv1", (3, 3, c_in, c1)), ("conv2", (3, 3, c1, c2)), ("conv3", (3, 3, c2, c3)),
                        ("fc", (k, k, c3, hidden)), ("out", (1, 1, hidden, self.num_classes))]:
      w = self.param(f"{name}_kernel", kaiming_fan_out, shape, jnp.float32).astype(self.dtype)
      b = self.param(f"{name}_bias", nn.initializers.zeros, (shape[-1],), jnp.float32).astype(self.dtype)
      layers[name] = (w, b)
    return layers

  def _head(self, x, p, d):
    """Layers after the pooling; `d` = 1 on a patch, 2 in the dense form."""
    x = nn.relu(_conv(x, *p["conv3"], dilation=d))
    x = nn.relu(_conv(x, *p["fc"], dilation=d))
    return _conv(x, *p["out"])

  def _classify_patches(self, patches, p):
    """(M, P, P, C) patches -> (M, classes): the patch classifier, patch by patch."""
    x = nn.relu(_conv(patches, *p["conv1"]))
    x = nn.relu(_conv(x, *p["conv2"]))
    return self._head(_pool(x, 2), p, 1)[:, 0, 0, :]

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout.
    x = normalise_images(x, self.input_norm)
    if self.mode not in ("sliding", "dense"):
      raise ValueError(f"mode: expected 'sliding' or 'dense', got {self.mode!r}")
    if self.patch_size % 2 or self.fc_size < 1:
      raise ValueError(f"patch_size: expected an even size >= 10 (two 3x3 convs, a 2x2 pool, a 3x3 conv "
                       f"and a fc need it), got {self.patch_size!r}")
    check_image(x)
    p = self._weights(x.shape[-1])
    n, h, w, c = x.shape
    half = self.patch_size // 2
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (half, self.patch_size - 1 - half),
                                        (half, self.patch_size - 1 - half), (0, 0)))
    if self.mode == "dense":
      y = nn.relu(_conv(xp, *p["conv1"]))
      y = nn.relu(_conv(y, *p["conv2"]))
      return {"semantic": self._head(_pool(y, 1), p, 2)}
    # Sliding: gather the P×P patch of every pixel, then classify the patches chunk by chunk.
    rows = jnp.arange(h)[:, None] + jnp.arange(self.patch_size)[None, :]   # (H, P)
    cols = jnp.arange(w)[:, None] + jnp.arange(self.patch_size)[None, :]   # (W, P)
    patches = xp[:, rows[:, None, :, None], cols[None, :, None, :], :]    # (N, H, W, P, P, C)
    patches = patches.reshape(n * h * w, self.patch_size, self.patch_size, c)
    # lax.map vmaps the one-patch classifier over chunks of `chunk` patches.
    scores = lax.map(lambda q: self._classify_patches(q[None], p)[0], patches,
                     batch_size=min(self.chunk, n * h * w))
    return {"semantic": scores.reshape(n, h, w, self.num_classes)}


@register_model("sliding_window")
def sliding_window(**kw) -> SlidingWindow:
  return SlidingWindow(**kw)


@register_model("sliding_window_narrow")
def sliding_window_narrow(**kw) -> SlidingWindow:
  return SlidingWindow(**{"width": 0.25, **kw})
