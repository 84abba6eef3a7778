"""ResNet-50 / ResNet-101 with bottleneck blocks, v1.5 like torchvision (He et al., 2016).

Layout (torchvision `resnet50` / `resnet101`, `width` = 1):
  stem: conv1 7×7/2 (64, no bias) → bn1 → ReLU → max-pool 3×3/2 pad 1           (stride 4)
  layer1..layer4: [3, 4, 6, 3] (R-50) or [3, 4, 23, 3] (R-101) bottlenecks with `planes`
  64, 128, 256, 512 and `4·planes` output channels; layer2..4 start with stride 2.
  Bottleneck v1.5: 1×1 (planes) → 3×3 (planes, the block's stride and dilation, padding = dilation)
  → 1×1 (4·planes, BN not zero-initialised), each conv followed by BN, ReLU after the sum with the
  shortcut (1×1 conv + BN with the block's stride where shape or stride changes).

Output stride (`output_stride`): 32 (plain), 16 or 8, by replacing the stride of layer4 (16) or of
layer3 and layer4 (8) with dilation, as torchvision's `replace_stride_with_dilation`: the first
block of a dilated stage keeps the previous dilation in its 3×3 conv, the later blocks use the new one
(so `fcn_resnet50` / `deeplabv3_resnet50` weights carry over). `multi_grid=(1, 2, 4)` (DeepLabV3's
Multi-Grid) instead sets the dilation of layer4's block i to `rate · multi_grid[i]`, `rate` being the
stage's dilation (2 at output stride 16, 4 at 8).

`frozen_bn=True` normalises with running statistics even in training (and never updates them);
`frozen_bn="buffers"` also makes the affine terms constants (torchvision's `FrozenBatchNorm2d`, all four
vectors in `batch_stats`; see `_common.FrozenBatchNorm`).
Returns a dict of NHWC maps: `stem` (after the max-pool), `layer1` .. `layer4`.
Parameter names follow torchvision: `conv1`, `bn1`, `layer{s}_{i}/{conv1,bn1,...,downsample_conv,downsample_bn}`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, scaled

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
EXPANSION = 4


class Bottleneck(nn.Module):
  """torchvision's `Bottleneck` (v1.5: stride on the 3×3 conv)."""
  planes: int
  out_channels: int
  stride: int = 1
  dilation: int = 1
  frozen_bn: bool | str = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = lambda name: batch_norm(train, name=name, frozen=self.frozen_bn, dtype=self.dtype)
    y = conv(self.planes, 1, use_bias=False, name="conv1", dtype=self.dtype)(x)
    y = nn.relu(bn("bn1")(y))
    y = conv(self.planes, 3, stride=self.stride, padding=self.dilation, dilation=self.dilation,
             use_bias=False, name="conv2", dtype=self.dtype)(y)
    y = nn.relu(bn("bn2")(y))
    y = conv(self.out_channels, 1, use_bias=False, name="conv3", dtype=self.dtype)(y)
    y = bn("bn3")(y)
    if self.stride != 1 or x.shape[-1] != self.out_channels:
      x = conv(self.out_channels, 1, stride=self.stride, use_bias=False, name="downsample_conv",
               dtype=self.dtype)(x)
      x = bn("downsample_bn")(x)
    return nn.relu(y + x)


def stage_dilations(depths: Sequence[int], output_stride: int, multi_grid=None):
  """Per stage, (stride, [dilation of each block]) following torchvision's dilation rule.

  >>> stage_dilations((3, 4, 6, 3), 8)[2:]
  [(1, [1, 2, 2, 2, 2, 2]), (1, [2, 4, 4])]
  """
  if output_stride not in (8, 16, 32):
    raise ValueError(f"output_stride: expected 8, 16 or 32, got {output_stride!r}")
  replace = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}[output_stride]
  plan, dilation = [], 1
  for s, n in enumerate(depths):
    stride = 1 if s == 0 else 2
    previous = dilation
    if s > 0 and replace[s - 1]:
      dilation *= stride
      stride = 1
    rates = [previous] + [dilation] * (n - 1)
    if s == len(depths) - 1 and multi_grid is not None:
      if len(multi_grid) != n:
        raise ValueError(f"multi_grid: expected {n} unit rates for the last stage, got {multi_grid!r}")
      rates = [dilation * int(g) for g in multi_grid]
    plan.append((stride, rates))
  return plan


class ResNet(nn.Module):
  """ResNet-50/101 trunk; see the module docstring. `__call__(x, train) -> dict of NHWC maps`."""
  depth: int = 50
  width: float = 1.0
  output_stride: int = 32
  multi_grid: Sequence[int] | None = None
  frozen_bn: bool | str = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.depth not in DEPTHS:
      raise ValueError(f"depth: expected one of {sorted(DEPTHS)}, got {self.depth!r}")
    check_image(x)
    plan = stage_dilations(DEPTHS[self.depth], self.output_stride, self.multi_grid)
    x = conv(scaled(64, self.width), 7, stride=2, padding=3, use_bias=False, name="conv1",
             dtype=self.dtype)(x)
    x = batch_norm(train, name="bn1", frozen=self.frozen_bn, dtype=self.dtype)(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    feats = {"stem": x}
    for s, (stride, rates) in enumerate(plan, start=1):
      planes = scaled(64 * 2 ** (s - 1), self.width)
      for i, rate in enumerate(rates):
        x = Bottleneck(planes, planes * EXPANSION, stride=stride if i == 0 else 1, dilation=rate,
                       frozen_bn=self.frozen_bn, dtype=self.dtype, name=f"layer{s}_{i}")(x, train)
      feats[f"layer{s}"] = x
    return feats
