"""`upsampling_ablation`: the up-sampling operator of a decoder (experiments/upsampling.py), a small
segmentation net whose one knob is how its decoder up-samples.

It takes images `(B, H, W, 3)` in [0, 1] (normalised here as `(x - 0.5) / 0.25`, `input_norm='centred'`)
and returns logits `(B, H, W, num_classes)` at the input resolution. Convolutions use symmetric "same"
padding (`padding = dilation·(k - 1) / 2`), so every variant's output is in register with its input.

SegNet-like, without skip connections (so the decoder's up-sampling does all the work):
encoder level i (i = 0..levels-1): `convs` × (3×3 conv, `width·2^i` channels, BN, ReLU) then a 2×2
max-pool that also returns its argmax (`nn.MaxPoolWithArgmax`; values equal to plain max-pooling);
a 3×3 conv at the bottom; decoder level i (reverse order): ×2 up-sampling by `up`, then 3×3 conv +
BN + ReLU (`width·2^(i-1)` channels, `width` at the top); a 1×1 conv to the classes.
`up`: 'nearest' and 'bed_of_nails' (`nn.Unpool`), 'max_unpool' (`nn.MaxUnpool` with the encoder's
indices of the same level), 'transposed' (a learned 4×4 stride-2 transposed conv, padding 1, channels
kept; `transposed_init` 'bilinear' starts it as bilinear interpolation — `nn.BilinearUpsample(2)` —,
'random' from He init — `nn.ConvTranspose`), 'bilinear' (`ops.resize_bilinear`, fixed).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.checks import check_choice
from dense_jax.models._common import Dtype, batch_norm, check_image, conv
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.nn import BilinearUpsample, ConvTranspose, MaxPoolWithArgmax, MaxUnpool, Unpool
from dense_jax.ops import resize_bilinear

UPSAMPLERS = ("nearest", "bed_of_nails", "max_unpool", "transposed", "bilinear")


class UpsamplingAblationNet(nn.Module):
  """SegNet-like encoder-decoder without skips, its ×2 up-sampling chosen by `up` (module docstring)."""
  num_classes: int = 9
  width: int = 16
  levels: int = 3
  convs: int = 1
  up: str = "nearest"
  transposed_init: str = "bilinear"
  dtype: Dtype = jnp.float32
  input_norm: str = "centred"   # see dense_jax.models.inputs

  def _upsample(self, x, indices, size, level: int):
    if self.up in ("nearest", "bed_of_nails"):
      return Unpool(2, self.up, name=f"up{level}")(x)
    if self.up == "max_unpool":
      return MaxUnpool(2, name=f"up{level}")(x, indices, size)
    if self.up == "bilinear":
      return resize_bilinear(x, size)
    if self.transposed_init == "bilinear":   # kernel 4, stride 2, padding 1, starting as bilinear
      return BilinearUpsample(2, learnable=True, use_bias=True, dtype=self.dtype, name=f"up{level}")(x)
    return ConvTranspose(x.shape[-1], 4, stride=2, padding=1, kernel_init=nn.initializers.he_normal(),
                         dtype=self.dtype, name=f"up{level}")(x)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    check_choice(self.up, UPSAMPLERS, "up")
    check_choice(self.transposed_init, ("bilinear", "random"), "transposed_init")
    if self.levels < 1 or self.convs < 1:
      raise ValueError(f"levels, convs: expected >= 1, got {self.levels!r}, {self.convs!r}")
    check_image(x, multiple=2 ** self.levels, why=f"{self.levels} 2×2 poolings")

    def block(h, features, name):
      for j in range(self.convs):
        h = conv(features, 3, padding=1, use_bias=False, name=f"{name}_conv{j + 1}", dtype=self.dtype)(h)
        h = nn.relu(batch_norm(train, name=f"{name}_bn{j + 1}", dtype=self.dtype)(h))
      return h

    h = x
    skips = []   # (indices, pre-pooling size) per level: only max-unpooling reads the indices
    for i in range(self.levels):
      h = block(h, self.width * 2 ** i, f"enc{i}")
      size = h.shape[1:3]
      h, indices = MaxPoolWithArgmax(2, name=f"pool{i}")(h)
      skips.append((indices, size))
    h = block(h, h.shape[-1], "bottom")
    for i in reversed(range(self.levels)):
      indices, size = skips[i]
      h = self._upsample(h, indices, size, i)
      h = block(h, self.width * 2 ** max(i - 1, 0), f"dec{i}")
    return {"semantic": conv(self.num_classes, 1, name="classifier", dtype=self.dtype)(h)}


@register_model("upsampling_ablation")
def upsampling_ablation(**kw) -> UpsamplingAblationNet:
  return UpsamplingAblationNet(**kw)
