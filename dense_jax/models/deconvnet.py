"""DeconvNet (Noh, Hong & Han, 2015): VGG16-BN encoder + fc6/fc7 + a mirrored unpooling/deconv decoder.

Encoder: VGG16 with BatchNorm after every conv and five 2×2 stride-2 max poolings that keep their
argmax. Then, as the reference `DeconvNet_inference_deploy.prototxt`:
  fc6 = 7×7 conv (4096, no padding: 7×7 → 1×1 at 224 px) → BN → ReLU
  fc7 = 1×1 conv (4096) → BN → ReLU
  fc6-deconv = 7×7 transposed conv (512, no padding: 1×1 → 7×7) → BN → ReLU
Decoder, for block b = 5 … 1: max-unpool with the encoder's block-b argmax to the encoder's
pre-pooling size, then 3×3 stride-1 pad-1 transposed convs (→ BN → ReLU) with channels
  5: 512, 512, 512   4: 512, 512, 256   3: 256, 256, 128   2: 128, 64   1: 64, 64
and a final 1×1 conv to the classes (`seg-score`).
Transposed convs run through `dense_jax.ops.conv_transpose2d` (a stride-1 pad-1 3×3 transposed conv
is a conv with the kernel flipped; it is kept as a transposed conv so reference weights load as is).

Parameters (21 classes): 251,805,653 trainable (BN running statistics excluded) — the paper's "252M".

`fc_padding='valid'` (default, the paper) needs pool5 ≥ 7×7, i.e. inputs ≥ 224 px; `fc_padding='same'`
(pad 3 in fc6 and fc6-deconv; the narrow CPU variant) keeps every spatial size and takes any
input of at least 32×32. Odd sizes are fine: pooling floors them and unpooling returns to the
encoder's exact pre-pooling size. The unpooled maps are sown as `intermediates/unpool{b}`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, kaiming_fan_out, scaled
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.nn import ConvTranspose

DECONVNET_DECODER = ((5, (512, 512, 512)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)),
                     (1, (64, 64)))


class DeconvNet(nn.Module):
  """DeconvNet (see the module docstring). `__call__(x (N,H,W,3), train) -> (N,H,W,classes)`."""
  num_classes: int = 21
  width: float = 1.0
  fc_channels: int = 4096
  fc_padding: str = "valid"
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs
  frozen_bn: bool = False   # every BN (encoder, fc and decoder) uses running statistics, never updated

  @nn.compact
  def __call__(self, x, train: bool = False):
    from dense_jax.ops import max_unpool
    x = normalise_images(x, self.input_norm)
    if self.fc_padding not in ("valid", "same"):
      raise ValueError(f"fc_padding: expected 'valid' or 'same', got {self.fc_padding!r}")
    valid = self.fc_padding == "valid"
    check_image(x, min_size=224 if valid else 32,
                why="fc6 is a 7x7 'valid' conv on pool5 = input / 32" if valid else "five poolings")
    bn = lambda name: batch_norm(train, name=name, frozen=self.frozen_bn, dtype=self.dtype)
    feats = VGG16(width=self.width, batch_norm=True, return_indices=True, dtype=self.dtype,
                  frozen_bn=self.frozen_bn, name="encoder")(x, train)
    pad = 0 if valid else 3
    fc = scaled(self.fc_channels, self.width)
    h = nn.relu(bn("fc6_bn")(conv(fc, 7, padding=pad, name="fc6", dtype=self.dtype)(feats["pool5"])))
    h = nn.relu(bn("fc7_bn")(conv(fc, 1, name="fc7", dtype=self.dtype)(h)))
    deconv = functools.partial(ConvTranspose, stride=1, kernel_init=kaiming_fan_out, dtype=self.dtype)
    h = deconv(scaled(512, self.width), 7, padding=pad, name="fc6_deconv")(h)
    h = nn.relu(bn("fc6_deconv_bn")(h))
    for b, channels in DECONVNET_DECODER:
      h = max_unpool(h, feats[f"indices{b}"], 2, 2, output_size=feats[f"conv{b}"].shape[1:3])
      self.sow("intermediates", f"unpool{b}", h)
      for i, c in enumerate(channels, start=1):
        h = deconv(scaled(c, self.width), 3, padding=1, name=f"deconv{b}_{i}")(h)
        h = nn.relu(bn(f"deconv{b}_{i}_bn")(h))
    return {"semantic": conv(self.num_classes, 1, name="seg_score", dtype=self.dtype)(h)}


@register_model("deconvnet")
def deconvnet(**kw) -> DeconvNet:
  return DeconvNet(**kw)


@register_model("deconvnet_narrow")
def deconvnet_narrow(**kw) -> DeconvNet:
  return DeconvNet(**{"width": 0.125, "fc_padding": "same", **kw})
