"""Panoptic FPN's semantic head (Kirillov, Girshick, He & Dollár, CVPR 2019; detectron2's `SemSegFPNHead`).

Every FPN level P2..P5 (strides 4, 8, 16, 32) is brought to stride 4 by a stack of stages, each a 3×3 conv
(`channels`, no bias) + GroupNorm (32 groups) + ReLU followed, on every level but P2, by a 2× bilinear
upsampling (align_corners=False); P2 has one stage without upsampling, P_k has k - 2 stages. The four
stride-4 maps are summed, a 1×1 conv (with bias) maps them to `num_classes` logits, and a 4× bilinear
upsampling brings them to the input resolution:

  (B, H/4, W/4, C), (B, H/8, W/8, C), (B, H/16, W/16, C), (B, H/32, W/32, C)  ->  (B, H, W, num_classes)

In Panoptic FPN `num_classes` = the stuff classes + one "thing" class (every thing pixel), so the head
learns where stuff is and where the instance branch takes over. Init: detectron2's c2_msra_fill (He
normal, fan_out) for the 3×3 convs, N(0, 0.001) for the predictor (its `nn.init.normal_(std=0.001)`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.checks import check_rank
from dense_jax.models._common import Dtype, conv, kaiming_fan_out
from dense_jax.ops.resize import resize_bilinear

LEVELS = ("p2", "p3", "p4", "p5")


class SemanticFPNHead(nn.Module):
  """`{'p2'..'p5': (B, H/s, W/s, C)} -> (B, 4·H/4, 4·W/4, num_classes)` logits (module docstring)."""
  num_classes: int
  channels: int = 128
  groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feats: dict):
    missing = [k for k in LEVELS if k not in feats]
    if missing:
      raise ValueError(f"feats: expected FPN levels {list(LEVELS)}, missing {missing} (got {sorted(feats)})")
    if self.num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {self.num_classes!r}")
    base = feats["p2"].shape[1:3]
    # GroupNorm needs groups dividing the channels (the narrow variants have fewer than 32 channels).
    groups = math.gcd(self.groups, self.channels)
    total = None
    for level, key in enumerate(LEVELS):
      x = feats[key]
      check_rank(x, 4, f"feats[{key!r}]", "NHWC")
      for stage in range(max(1, level)):
        x = conv(self.channels, 3, padding=1, use_bias=False, dtype=self.dtype, kernel_init=kaiming_fan_out,
                 name=f"{key}_conv{stage}")(x)
        x = nn.relu(nn.GroupNorm(num_groups=groups, epsilon=1e-5, dtype=self.dtype, name=f"{key}_gn{stage}")(x))
        if level > 0:
          x = resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]))
      if tuple(x.shape[1:3]) != tuple(base):
        raise ValueError(f"feats[{key!r}]: expected 1/{2 ** level} of P2's size {tuple(base)}, got spatial size "
                         f"{tuple(feats[key].shape[1:3])}")
      total = x if total is None else total + x
    logits = conv(self.num_classes, 1, dtype=self.dtype, kernel_init=nn.initializers.normal(0.001),
                  name="predictor")(total)
    return resize_bilinear(logits.astype(jnp.float32), (4 * base[0], 4 * base[1]))
