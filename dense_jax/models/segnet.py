"""SegNet (Badrinarayanan, Kendall & Cipolla, 2017): VGG16-BN encoder, index-unpooling decoder, no FC.

Encoder: the 13 convs of VGG16 with BatchNorm (conv with bias → BN → ReLU), five 2×2 stride-2 max
poolings that keep their argmax (`dense_jax.ops.max_pool_with_argmax`).
Decoder (the reference `segnet_train.prototxt`, mirrored): for block b = 5 … 1, max-unpool with the
encoder's block-b indices back to the encoder's pre-pooling size (`dense_jax.ops.max_unpool`:
values go exactly to the positions the encoder's maxima came from, zeros elsewhere), then the
block's convs in reverse with the channels stepping down at the block's last conv:
  5: 512, 512, 512   4: 512, 512, 256   3: 256, 256, 128   2: 128, 64   1: 64, classes
each conv 3×3 pad 1 + BN + ReLU except the last (`conv1_1_D`: plain 3×3 conv to the classes).
No skip of feature maps: only the indices cross from encoder to decoder (that is SegNet's memory
saving over U-Net / FCN).

Trainable parameters (conv weights and biases, BN scale and offset; running statistics excluded):
29,455,125 with 21 classes, 29,449,355 with CamVid's 11 — the paper's "29.5M".
Any input of at least 32×32 works: pooling floors odd sizes and unpooling returns to the encoder's
exact pre-pooling size (the reference's `upsample_h/w`, e.g. CamVid's 360×480). The unpooled maps are
sown as `intermediates/unpool{b}` (apply with `mutable=['intermediates']` to inspect them).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, scaled
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model

# Output channels of the decoder convs of blocks 5 … 1 (None = number of classes).
SEGNET_DECODER = ((5, (512, 512, 512)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)),
                  (1, (64, None)))


class SegNet(nn.Module):
  """SegNet (see the module docstring). `__call__(x (N,H,W,3), train) -> (N,H,W,classes)`."""
  num_classes: int = 21
  width: float = 1.0
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs
  frozen_bn: bool = False   # every BN (encoder and decoder) uses running statistics, never updated

  @nn.compact
  def __call__(self, x, train: bool = False):
    from dense_jax.ops import max_unpool
    x = normalise_images(x, self.input_norm)
    check_image(x, min_size=32, why="SegNet pools 5 times")
    feats = VGG16(width=self.width, batch_norm=True, return_indices=True, dtype=self.dtype,
                  frozen_bn=self.frozen_bn, name="encoder")(x, train)
    h = feats["pool5"]
    for b, channels in SEGNET_DECODER:
      h = max_unpool(h, feats[f"indices{b}"], 2, 2, output_size=feats[f"conv{b}"].shape[1:3])
      self.sow("intermediates", f"unpool{b}", h)
      for i, c in enumerate(channels):
        name = f"conv{b}_{len(channels) - i}_D"  # Caffe names count down: conv5_3_D, conv5_2_D, ...
        if c is None:
          return {"semantic": conv(self.num_classes, 3, padding=1, name=name, dtype=self.dtype)(h)}
        h = conv(scaled(c, self.width), 3, padding=1, name=name, dtype=self.dtype)(h)
        h = nn.relu(batch_norm(train, name=name + "_bn", frozen=self.frozen_bn, dtype=self.dtype)(h))
    raise AssertionError("unreachable: the decoder ends with the classifier")


@register_model("segnet")
def segnet(**kw) -> SegNet:
  return SegNet(**kw)


@register_model("segnet_narrow")
def segnet_narrow(**kw) -> SegNet:
  return SegNet(**{"width": 0.125, **kw})
