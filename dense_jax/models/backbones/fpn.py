"""Feature Pyramid Network on ResNet-50/101 (Lin et al., CVPR 2017), torchvision's `resnet_fpn_backbone`.

  body: `backbones.ResNet` (output stride 32), its `layer1..layer4` (C2..C5: 256, 512, 1024, 2048
        channels at strides 4, 8, 16, 32).
  fpn:  lateral 1×1 convs `inner_{i}` (→ `channels`, bias) on C2..C5; top-down path
        `m_5 = inner_3(C5)`, `m_i = inner_{i-2}(C_i) + nearest_resize(m_{i+1}, size of C_i)`;
        output 3×3 convs `layer_{i}` (pad 1, bias): `P_i = layer_{i-2}(m_i)`;
        LastLevelMaxPool: `P6 = max_pool(P5, kernel 1, stride 2)` = `P5[:, ::2, ::2]`.
Returns `{'p2': ..., 'p6': ...}` (NHWC, `channels` each, strides 4, 8, 16, 32, 64).

Nearest resizing follows `torch.nn.functional.interpolate(mode='nearest', size=...)`: output pixel i
reads input pixel `floor(i · in / out)` (a plain 2× repeat when the sizes halve exactly). The FPN
convs use torchvision's init, `kaiming_uniform_(a=1)` (uniform with variance 1 / fan_in), zero bias.
`frozen_bn` is passed to the ResNet (True: running statistics; "buffers": torchvision's
`FrozenBatchNorm2d`, whose affine terms are not parameters either, as in its pretrained builds).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dense_jax.models._common import Dtype, check_image, conv, scaled
from dense_jax.models.backbones.resnet import ResNet

LEVELS = ("p2", "p3", "p4", "p5", "p6")
STRIDES = (4, 8, 16, 32, 64)

# kaiming_uniform_(a=1): gain sqrt(2 / (1 + a²)) = 1, bound sqrt(3 / fan_in).
kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def nearest_resize(x, size: tuple[int, int]):
  """`x (N, h, w, C)` → `(N, H, W, C)` with torch's `interpolate(mode='nearest')` index rule."""
  (h, w), (oh, ow) = x.shape[1:3], size
  rows = np.floor(np.arange(oh) * (h / oh)).astype(np.int32).clip(0, h - 1)
  cols = np.floor(np.arange(ow) * (w / ow)).astype(np.int32).clip(0, w - 1)
  if oh == 2 * h and ow == 2 * w:  # The common case as a broadcast (no gather).
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, rows][:, :, cols]


class FPN(nn.Module):
  """torchvision's `FeaturePyramidNetwork` + `LastLevelMaxPool`: `[C2..C5] -> {'p2'..'p6'}`."""
  channels: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features):
    conv_ = lambda k, name: conv(self.channels, k, padding=k // 2, name=name, dtype=self.dtype,
                                 kernel_init=kaiming_uniform_a1)
    n = len(features)
    inner = conv_(1, f"inner_{n - 1}")(features[-1])
    outs = [conv_(3, f"layer_{n - 1}")(inner)]
    for i in range(n - 2, -1, -1):
      lateral = conv_(1, f"inner_{i}")(features[i])
      inner = lateral + nearest_resize(inner, lateral.shape[1:3])
      outs.insert(0, conv_(3, f"layer_{i}")(inner))
    outs.append(outs[-1][:, ::2, ::2])  # max_pool2d(kernel_size=1, stride=2)
    return dict(zip(LEVELS, outs))


class ResNetFPN(nn.Module):
  """ResNet-50/101 trunk + FPN: `__call__(x (N, H, W, 3), train) -> {'p2'..'p6'}` (see module docstring).

  `width` scales the trunk's channels and the FPN width (`channels · width`) for the narrow variants.
  """
  depth: int = 50
  width: float = 1.0
  channels: int = 256
  frozen_bn: bool | str = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_image(x)
    feats = ResNet(depth=self.depth, width=self.width, frozen_bn=self.frozen_bn, dtype=self.dtype,
                   name="body")(x, train)
    return FPN(scaled(self.channels, self.width), dtype=self.dtype, name="fpn")(
        [feats[f"layer{s}"] for s in (1, 2, 3, 4)])
