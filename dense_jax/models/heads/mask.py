"""Mask R-CNN mask head (He et al., 2017), torchvision's `MaskRCNNHeads` + `MaskRCNNPredictor`.

  `mask_head`:      four 3×3 convs (`channels` = 256, pad 1, bias), each followed by ReLU, on 14×14 RoI
                    features
  `mask_predictor`: `conv5_mask` 2×2 stride-2 transposed conv (256, bias) → ReLU → `mask_fcn_logits`
                    1×1 conv (num_classes): per-class 28×28 mask logits

Init (torchvision): `kaiming_normal_(mode='fan_out', nonlinearity='relu')`, zero bias; for the
transposed conv torch's "fan_out" of its `(in, out, kh, kw)` weight is `in·kh·kw`, our HWIO fan_in.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, conv, kaiming_fan_out
from dense_jax.nn.conv import ConvTranspose

# torch's kaiming_normal_(mode='fan_out') of a ConvTranspose2d weight (in, out, kh, kw) is N(0, 2 / (in·kh·kw)).
kaiming_transpose = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class MaskHead(nn.Module):
  """`(R, 14, 14, C) -> (R, 14, 14, layers[-1])`: 3×3 conv + ReLU stack."""
  layers: Sequence[int] = (256, 256, 256, 256)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, c in enumerate(self.layers):
      x = nn.relu(conv(c, 3, padding=1, name=f"mask_fcn{i + 1}", dtype=self.dtype, kernel_init=kaiming_fan_out)(x))
    return x


class MaskPredictor(nn.Module):
  """`(R, 14, 14, C) -> (R, 28, 28, num_classes)` mask logits."""
  num_classes: int = 91
  channels: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = ConvTranspose(self.channels, 2, stride=2, padding=0, kernel_init=kaiming_transpose, dtype=self.dtype,
                      name="conv5_mask")(x)
    return conv(self.num_classes, 1, name="mask_fcn_logits", dtype=self.dtype, kernel_init=kaiming_fan_out)(
        nn.relu(x))
