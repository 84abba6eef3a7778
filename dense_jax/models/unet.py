"""U-Net (Ronneberger, Fischer & Brox, 2015): a contracting path, an expanding path, concatenation skips.

Level l (0 = full resolution) has `width · 2^l` channels (64 … 1024 in the paper, `depth` = 4 poolings).
Each level is a double 3×3 convolution + ReLU; the contracting path max-pools 2×2 between levels; the
expanding path up-samples ×2 while halving the channels ("up-conv"), concatenates the contracting
path's feature map of the same level and applies a double convolution; a final 1×1 convolution maps
to `num_classes` scores.

Two forms:
- `padding='valid'` — the paper's: unpadded convolutions shrink every map by 2 pixels per conv, so the
  skip is the *centre crop* of the contracting map, and the output is smaller than the input
  (572×572 → 388×388 at depth 4). Sizes must keep every pooled map even; `valid_sizes` lists them.
- `padding='same'` — zero padding, output the size of the input; the input side must be divisible
  by 2^depth.

Layers are `dense_jax.nn.Conv` / `dense_jax.nn.ConvTranspose` (PyTorch semantics, fast forms per
backend). Up-sampling: `up='transposed'` is the paper's 2×2 stride-2 transposed convolution
(`(2, 2, C, C/2)` kernel, torch's `ConvTranspose2d` weight `.transpose(2, 3, 0, 1)`); `up='bilinear'` is a
parameter-free ×2 bilinear resize (PyTorch `align_corners=True`) followed by a 1×1 convolution that halves
the channels.

`norm='batch'` adds batch norm after every 3×3 convolution (the common modern variant; the
convolutions then carry no bias). Parameter counts (checked in tests against a PyTorch build of the
same nets): paper form, 2 classes: 31,031,810; padded + batch norm, bias-free convs, 1 class
(milesial/Pytorch-UNet): 31,037,633.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dense_jax import nn as dnn
from dense_jax.checks import check_rank
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.ops import resize_bilinear

# He et al. initialisation, as the paper prescribes (std = sqrt(2 / fan_in)).
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DoubleConv(nn.Module):
  """(3×3 conv → [batch norm] → ReLU) × 2; with `padding='valid'` the map shrinks by 4 pixels."""
  features: int
  padding: str = "same"
  norm: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    pad = 1 if self.padding == "same" else 0
    for i in range(2):
      x = dnn.Conv(self.features, 3, padding=pad, use_bias=self.norm is None, kernel_init=he_normal,
                   dtype=self.dtype, name=f"conv{i}")(x)
      if self.norm == "batch":
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                         name=f"bn{i}")(x)
      x = nn.relu(x)
    return x


class Up(nn.Module):
  """×2 up-sampling that maps `x.shape[-1]` channels to `features`."""
  features: int
  mode: str = "transposed"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.mode == "transposed":
      # k = s = 2: every input pixel writes its own 2x2 output block (no overlap); the phase form
      # of dense_jax.ops.conv_transpose2d makes that one 1x1 conv + depth-to-space on CPU.
      return dnn.ConvTranspose(self.features, 2, stride=2, padding=0, kernel_init=he_normal,
                               dtype=self.dtype, name="upconv")(x)
    _, h, w, _ = x.shape
    x = resize_bilinear(x, (2 * h, 2 * w), align_corners=True)
    return dnn.Conv(self.features, 1, kernel_init=he_normal, dtype=self.dtype, name="proj")(x)


def max_pool_2x2(x):
  """2×2 max pooling with stride 2 (the map's height and width must be even) as a reshape and a max.

  Same values as `nn.max_pool(x, (2, 2), strides=(2, 2))`; the gradient is a compare-and-select
  instead of XLA's `select_and_scatter`, which costs several times more on CPU (docs/results.md).
  Ties share the gradient (PyTorch gives it to the first maximum); after a ReLU the only likely ties
  are zeros, whose gradient the ReLU discards anyway.
  """
  n, h, w, c = x.shape
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _centre_crop(x, size: tuple[int, int]):
  dh, dw = (x.shape[1] - size[0]) // 2, (x.shape[2] - size[1]) // 2
  return x[:, dh:dh + size[0], dw:dw + size[1], :]


def valid_output_size(size: int, depth: int) -> int | None:
  """Output side of the valid U-Net for input side `size`, or None if some pooled map would be odd
  or empty. Down: s → s - 4, then halve (must be even); bottom: s - 4; up: s → 2s - 4."""
  s = size
  for _ in range(depth):
    s -= 4
    if s <= 0 or s % 2:
      return None
    s //= 2
  s -= 4
  if s <= 0:
    return None
  for _ in range(depth):
    s = 2 * s - 4
  return s if s > 0 else None


def valid_sizes(depth: int, up_to: int = 1024) -> list[int]:
  """Input sides (≤ `up_to`) the valid U-Net of `depth` poolings accepts (572 is one for depth 4)."""
  return [s for s in range(1, up_to + 1) if valid_output_size(s, depth) is not None]


@register_model("unet")
class UNet(nn.Module):
  """U-Net; defaults are the paper's network (valid convolutions, 64 … 1024 channels, 2 classes).

  Attributes:
    num_classes: output channels (class scores).
    width: channels of the first level (64 in the paper); level l has `width · 2^l`.
    depth: number of 2×2 poolings (4 in the paper).
    padding: 'valid' (paper: output smaller than the input) or 'same'.
    up: 'transposed' (2×2 stride-2 transposed conv) or 'bilinear' (resize + 1×1 conv).
    norm: None or 'batch'.
    dtype: compute dtype (parameters stay float32).
    remat: recompute each level's activations in the backward pass instead of storing them.
    input_norm: how the [0, 1] images are normalised first ('none'; see dense_jax.models.inputs).
  """
  num_classes: int = 2
  width: int = 64
  depth: int = 4
  padding: str = "valid"
  up: str = "transposed"
  norm: str | None = None
  dtype: Any = jnp.float32
  remat: bool = False
  input_norm: str = "none"   # images in [0, 1] used as they are (see dense_jax.models.inputs)

  def _check(self, x):
    check_rank(x, 4, "images", "NHWC")
    for name, value, allowed in (("padding", self.padding, ("valid", "same")),
                                 ("up", self.up, ("transposed", "bilinear")),
                                 ("norm", self.norm, (None, "batch"))):
      if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
    if self.depth < 1 or self.width < 1 or self.num_classes < 1:
      raise ValueError(f"depth, width, num_classes: expected >= 1, got {self.depth}, {self.width}, "
                       f"{self.num_classes}")
    for side in x.shape[1:3]:
      if self.padding == "same" and side % 2 ** self.depth:
        raise ValueError(f"images: expected height and width divisible by 2^depth = {2 ** self.depth} "
                         f"for the padded U-Net, got shape {x.shape}")
      if self.padding == "valid" and valid_output_size(side, self.depth) is None:
        near = [s for s in valid_sizes(self.depth, 2 * side + 64) if abs(s - side) <= 32]
        raise ValueError(f"images: side {side} does not fit the valid U-Net of depth {self.depth} "
                         f"(every pooled map must be even); nearby valid sides: {near}, got shape {x.shape}")

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    images = normalise_images(images, self.input_norm)
    self._check(images)
    block = nn.remat(DoubleConv, static_argnums=(2,)) if self.remat else DoubleConv
    kw = dict(padding=self.padding, norm=self.norm, dtype=self.dtype)
    x = images.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = block(self.width * 2 ** level, name=f"down{level}", **kw)(x, train)
      skips.append(x)
      x = max_pool_2x2(x)
    x = block(self.width * 2 ** self.depth, name="bottom", **kw)(x, train)
    for level in reversed(range(self.depth)):
      features = self.width * 2 ** level
      x = Up(features, self.up, dtype=self.dtype, name=f"up{level}")(x)
      skip = _centre_crop(skips[level], x.shape[1:3])
      x = jnp.concatenate([skip, x], axis=-1)
      x = block(features, name=f"dec{level}", **kw)(x, train)
    logits = dnn.Conv(self.num_classes, 1, kernel_init=he_normal, dtype=self.dtype, name="head")(x)
    return {"semantic": logits.astype(jnp.float32)}
