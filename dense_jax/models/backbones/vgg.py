"""VGG16 and VGG16-BN convolutional trunks (Simonyan & Zisserman, 2015), torchvision's layout.

The 13 3×3 convolutions of configuration D in five blocks (64², 128², 256³, 512³, 512³ channels),
each block followed by a 2×2 stride-2 max pooling; `batch_norm=True` puts a BatchNorm after every
conv (torchvision's `vgg16_bn`: conv with bias → BN → ReLU). The classifier (fc6/fc7/fc8) is not
here: the segmentation heads turn it into convolutions themselves.

Options used by the zoo:
- `width`: channel multiplier (narrow CPU variants).
- `pools`: per block, keep the stride-2 pooling (True) or remove it (False). Removing a pooling
  doubles the dilation of every later conv, so each conv keeps its receptive field in input pixels
  (Yu & Koltun's front-end: `pools=(True, True, True, False, False)`, conv5 dilated 2, and
  `output_dilation` = 4 for the fc6 that follows). Output stride = 2 ** number of kept poolings.
- `first_padding`: padding of conv1_1 (FCN's Caffe reference uses 100 and crops later).
- `ceil_mode`: Caffe's pooling size `ceil((H - 2) / 2) + 1` instead of `floor` (what FCN's
  pad-100 geometry assumes); done by padding the bottom/right with -inf when H is odd.
- `return_indices`: also return each pooling's argmax (flat `h·W + w` per (n, c) plane,
  `dense_jax.ops.max_pool_with_argmax`) for SegNet / DeconvNet unpooling.
- `frozen_bn` (with `batch_norm=True`): normalise with the running statistics even in training and
  never update them (`_common.batch_norm(train, frozen=...)`, as the ResNet's `frozen_bn`).

Returns a dict: `conv{b}` (block b's last ReLU output, before pooling), `pool{b}` (after pooling,
or the same map as `conv{b}` when that pooling is removed), and `indices{b}` when asked.
Parameter names: `conv{b}_{i}` (kernel HWIO, bias) and `bn{b}_{i}`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, scaled

# Configuration "D": output channels of each conv, per block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
  """VGG16 trunk; see the module docstring. `__call__(x (N,H,W,3), train) -> dict of NHWC maps`."""
  width: float = 1.0
  batch_norm: bool = False
  pools: Sequence[bool] = (True, True, True, True, True)
  first_padding: int = 1
  ceil_mode: bool = False
  return_indices: bool = False
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @property
  def output_dilation(self) -> int:
    """Dilation that a layer after the trunk needs to keep its receptive field: 2 ** removed pools."""
    return 2 ** sum(not p for p in self.pools)

  @property
  def output_stride(self) -> int:
    return 2 ** sum(bool(p) for p in self.pools)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.pools) != 5:
      raise ValueError(f"pools: expected 5 booleans (one per block), got {self.pools!r}")
    if self.return_indices and self.ceil_mode:
      raise ValueError("ceil_mode: argmax pooling is floor-mode only; got ceil_mode=True with "
                       "return_indices=True")
    check_image(x)
    feats = {}
    dilation = 1
    for b, block in enumerate(VGG16_BLOCKS, start=1):
      for i, channels in enumerate(block, start=1):
        first = (b, i) == (1, 1)
        x = conv(scaled(channels, self.width), 3, padding=self.first_padding if first else dilation,
                 dilation=dilation, name=f"conv{b}_{i}", dtype=self.dtype)(x)
        if self.batch_norm:
          x = batch_norm(train, name=f"bn{b}_{i}", frozen=self.frozen_bn, dtype=self.dtype)(x)
        x = nn.relu(x)
      feats[f"conv{b}"] = x
      if not self.pools[b - 1]:
        dilation *= 2
      elif self.return_indices:
        from dense_jax.ops import max_pool_with_argmax  # Late import: a sibling helper owns the op.
        x, feats[f"indices{b}"] = max_pool_with_argmax(x, 2, 2)
      else:
        pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2)) if self.ceil_mode else ((0, 0), (0, 0))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding=pad)
      feats[f"pool{b}"] = x
    return feats
