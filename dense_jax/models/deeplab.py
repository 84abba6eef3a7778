"""DeepLabV3 (Chen, Papandreou, Schroff & Adam, 2017) on ResNet-50/101, torchvision's layout.

  ResNet trunk with output stride 8 or 16 by dilation (`backbones.resnet`; optional Multi-Grid on
  layer4, e.g. (1, 2, 4)) →
  ASPP on layer4: five parallel branches of `aspp_channels` (256) each, conv (no bias) → BN → ReLU:
    a 1×1 conv; three 3×3 convs with dilation r for r in `atrous_rates`; image pooling
    (global average → 1×1 conv → BN → ReLU → broadcast back to the map size)
  → concat (5·256) → 1×1 projection (256) → BN → ReLU → dropout 0.5
  → 3×3 conv (256, no bias) → BN → ReLU → 1×1 conv (classes, bias) → bilinear resize to the input.

`atrous_rates=None` means the paper's (6, 12, 18) at output stride 16 and their double, (12, 24, 36),
at output stride 8 (torchvision's `deeplabv3_resnet50`, which uses output stride 8, no Multi-Grid).
`aux_classifier=True` adds torchvision's auxiliary FCNHead on layer3; its logits are the output entry
`semantic_aux` (see `fcn.py`). Parameter counts equal torchvision's: 39,638,869 for
`deeplabv3_resnet50` with 21 classes, 42,004,074 with the auxiliary head (the figure its docs list).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, torch_like_dropout
from dense_jax.models.fcn import resnet_trunk
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model


def default_rates(output_stride: int) -> tuple[int, ...]:
  """The paper's ASPP rates: (6, 12, 18) at output stride 16, scaled by 16 / output_stride."""
  if output_stride not in (8, 16, 32):
    raise ValueError(f"output_stride: expected 8, 16 or 32, got {output_stride!r}")
  return tuple(r * 16 // output_stride for r in (6, 12, 18))


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling with image pooling (torchvision's `ASPP`)."""
  rates: Sequence[int]
  channels: int = 256
  dropout_rate: float = 0.5
  frozen_bn: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    def branch(h, kernel, rate, name):
      h = conv(self.channels, kernel, padding=rate if kernel == 3 else 0, dilation=rate, use_bias=False,
               name=f"{name}_conv", dtype=self.dtype)(h)
      return nn.relu(batch_norm(train, name=f"{name}_bn", frozen=self.frozen_bn, dtype=self.dtype)(h))

    outs = [branch(x, 1, 1, "branch0")]
    outs += [branch(x, 3, int(r), f"branch{i}") for i, r in enumerate(self.rates, start=1)]
    pooled = branch(jnp.mean(x, axis=(1, 2), keepdims=True), 1, 1, "pool")
    # Bilinear upsampling of a 1×1 map (torchvision's interpolate) is a broadcast.
    outs.append(jnp.broadcast_to(pooled, x.shape[:3] + pooled.shape[-1:]))
    h = branch(jnp.concatenate(outs, axis=-1), 1, 1, "project")
    return torch_like_dropout(self.dropout_rate, train)(h)


class DeepLabV3(nn.Module):
  """DeepLabV3 (see the module docstring). `__call__(x (N,H,W,3), train) -> {'semantic': (N,H,W,classes)}`."""
  num_classes: int = 21
  depth: int = 50
  width: float = 1.0
  output_stride: int = 8
  multi_grid: Sequence[int] | None = None
  atrous_rates: Sequence[int] | None = None
  aspp_channels: int = 256
  aux_classifier: bool = False
  frozen_bn: bool = False
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs

  @nn.compact
  def __call__(self, x, train: bool = False):
    from dense_jax.ops import resize_bilinear
    x = normalise_images(x, self.input_norm)
    check_image(x)
    size = x.shape[1:3]
    rates = default_rates(self.output_stride) if self.atrous_rates is None else tuple(self.atrous_rates)
    feats, out = resnet_trunk(self, x, train, multi_grid=self.multi_grid)
    h = ASPP(rates, self.aspp_channels, frozen_bn=self.frozen_bn, dtype=self.dtype, name="aspp")(
        feats["layer4"], train)
    h = conv(self.aspp_channels, 3, padding=1, use_bias=False, name="head_conv", dtype=self.dtype)(h)
    h = nn.relu(batch_norm(train, name="head_bn", frozen=self.frozen_bn, dtype=self.dtype)(h))
    h = conv(self.num_classes, 1, name="classifier", dtype=self.dtype)(h)
    return {"semantic": resize_bilinear(h, size), **out}


@register_model("deeplabv3_resnet50")
def deeplabv3_resnet50(**kw) -> DeepLabV3:
  return DeepLabV3(depth=50, **kw)


@register_model("deeplabv3_resnet101")
def deeplabv3_resnet101(**kw) -> DeepLabV3:
  return DeepLabV3(depth=101, **kw)


@register_model("deeplabv3_resnet50_narrow")
def deeplabv3_resnet50_narrow(**kw) -> DeepLabV3:
  return DeepLabV3(depth=50, **{"width": 0.125, "aspp_channels": 32, **kw})
