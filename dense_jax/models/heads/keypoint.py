"""Keypoint R-CNN keypoint head (He et al., 2017), torchvision's `KeypointRCNNHeads` + `KeypointRCNNPredictor`.

  `keypoint_head`:      eight 3×3 convs (512, pad 1, bias), each followed by ReLU, on 14×14 RoI features;
                        `norm='gn'`: each conv without bias and followed by GroupNorm (32 groups, or the
                        largest count dividing the channels) before its ReLU (detectron2's NORM option for
                        its conv heads; not torchvision's)
  `keypoint_predictor`: `kps_score_lowres` 4×4 stride-2 transposed conv (pad 1, K maps, 14 → 28), then
                        a 2× bilinear resize (half-pixel centres, torch's `align_corners=False`) → 56×56

Each of the K maps is a logit over the 56² positions of the RoI (a softmax over positions gives the
keypoint's location; the loss is a cross-entropy against the one-hot target position).
Init (torchvision): `kaiming_normal_(mode='fan_out', nonlinearity='relu')`, zero bias.

Why GroupNorm is offered: the RoI features come from the FPN's unnormalised outputs (std ~15-35 on the narrow
model), and with Adam each step moves every one of a first conv's 9·C weights by ~lr, so its pre-activations
swing by ~lr·9·C·|x| per step. From scratch at lr 2e-3 (experiments/keypointrcnn_dense_shapes.py) that killed
97% of the first conv's ReLUs within the run (none of them ever fires on validation RoIs) and the head learnt
only the position prior; GroupNorm re-scales each conv's output, so no unit is driven off for good.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, conv, kaiming_fan_out
from dense_jax.models.heads.mask import kaiming_transpose
from dense_jax.nn.conv import ConvTranspose
from dense_jax.ops.resize import resize_bilinear

NORMS = ("", "gn")


class KeypointHead(nn.Module):
  """`(R, 14, 14, C) -> (R, 14, 14, layers[-1])`: 3×3 conv (+ GroupNorm with `norm='gn'`) + ReLU stack."""
  layers: Sequence[int] = (512,) * 8
  norm: str = ""   # '' (torchvision's) or 'gn'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.norm not in NORMS:
      raise ValueError(f"keypoint_head_norm: expected one of {NORMS}, got {self.norm!r}")
    for i, c in enumerate(self.layers):
      x = conv(c, 3, padding=1, use_bias=not self.norm, name=f"conv_fcn{i + 1}", dtype=self.dtype,
               kernel_init=kaiming_fan_out)(x)
      if self.norm == "gn":
        x = nn.GroupNorm(num_groups=math.gcd(32, c), epsilon=1e-5, dtype=self.dtype, name=f"gn{i + 1}")(x)
      x = nn.relu(x)
    return x


class KeypointPredictor(nn.Module):
  """`(R, 14, 14, C) -> (R, 56, 56, num_keypoints)` keypoint logits."""
  num_keypoints: int = 17
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = ConvTranspose(self.num_keypoints, 4, stride=2, padding=1, kernel_init=kaiming_transpose,
                      dtype=self.dtype, name="kps_score_lowres")(x)
    return resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]))
