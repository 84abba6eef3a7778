"""Fully convolutional networks: FCN-32s/16s/8s on VGG16 (Long, Shelhamer & Darrell, 2015) and
torchvision's FCN-ResNet50/101 head.

FCN-VGG16, as the Caffe reference (`voc-fcn{32,16,8}s`):
  VGG16 trunk (conv1_1 padded by 100, Caffe's ceil-mode pooling) → fc6 = 7×7 conv (4096, no padding)
  → ReLU → dropout → fc7 = 1×1 conv (4096) → ReLU → dropout → score_fr = 1×1 conv (classes).
  32s: upscore (transposed conv, kernel 64, stride 32) → crop to the input.
  16s: upscore2 (k 4, s 2) + crop(score_pool4 = 1×1 conv on pool4) → upscore16 (k 32, s 16) → crop.
  8s:  the 16s fusion → upscore_pool4 (k 4, s 2) + crop(score_pool3) → upscore8 (k 16, s 8) → crop.
  Transposed convs have no bias and start as bilinear upsamplers
  (`dense_jax.ops.bilinear_upsample_kernel`); score layers start at zero, as in the reference.

Why pad 100: with 7×7 "valid" fc6 the network would need inputs of at least 192 px and would lose
the borders; padding conv1_1 by 100 makes any input ≥ 1 px work and the crops put the output back
in register with the input. The crop offsets are not hard-coded: `crop_offsets` derives them from
the layer geometry by composing each layer's coordinate map (Caffe's `coord_map.py` idea); for
pad 100 they come out as the reference's 19 (32s), 5 and 27 (16s), 5, 9 and 31 (8s).

`pad100=False` (the narrow CPU variant's default) is a documented deviation: conv1_1 padding 1,
fc6 padding 3 and upsamplers with padding `factor // 2`, so every map is exactly `input / stride`
and all crop offsets are 0; the input must then be divisible by 32. It saves the ~(1 + 200/H)²
extra compute that pad 100 costs on small images.

Parameters (21 classes): FCN-8s 134,489,759, FCN-16s 134,815,994, FCN-32s 136,152,917 (1,806,336
of them the 64×64 upsampler; 134,346,581 with `learn_upsampling=False`) — the paper's "134M".

Not reproduced: the "at-once" variant's fixed scaling of score_pool4 (×0.01) and score_pool3
(×1e-4); `learn_upsampling=False` keeps all upsamplers fixed bilinear (the reference fixes upscore8
/ upscore16 / upscore with lr 0; we learn them by default, as the paper's text describes).

FCN-ResNet (torchvision `fcn_resnet50`): ResNet with output stride 8 (dilated layer3/4) → FCNHead
(3×3 conv to in/4 channels, no bias → BN → ReLU → dropout 0.1 → 1×1 conv) → bilinear resize to the
input (align_corners=False). `aux_classifier=True` adds torchvision's auxiliary FCNHead on layer3;
its logits (at input resolution) are the output entry `semantic_aux` (the semantic task adds
`aux_weight` × its loss, torchvision's recipe).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, crop, scaled, torch_like_dropout
from dense_jax.models.backbones.resnet import ResNet
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.nn import BilinearUpsample

# ----------------------------------------------------------------------------- coordinate maps
# A map (a, b) says that position x of a feature map sits at input-image coordinate a·x + b.

def _after_conv(m, kernel, stride=1, padding=0, dilation=1):
  """Map of a conv/pool output, given the map `m` of its input (window centre in input coordinates)."""
  a, b = m
  return a * stride, a * (dilation * (kernel - 1) / 2 - padding) + b


def _after_deconv(m, kernel, stride, padding=0):
  """Map of a transposed-conv output: input y lands at output x = s·y - p + (k - 1)/2."""
  a, b = m
  return a / stride, a * (padding - (kernel - 1) / 2) / stride + b


def _offset(m, ref):
  """Crop offset o such that `m`-map position o + x aligns with `ref`-map position x."""
  (a, b), (a_ref, b_ref) = m, ref
  if a != a_ref:
    raise AssertionError(f"crop between maps of different scale {a} and {a_ref}")
  o = (b_ref - b) / a
  if o < 0 or o != int(o):
    raise AssertionError(f"misaligned crop offset {o}")
  return int(o)


def crop_offsets(stride: int, pad100: bool = True) -> dict[str, int]:
  """The crops of FCN-`stride`s: `pool4` / `pool3` (score_poolN vs the upsampled map) and `final`.

  Computed from the layer geometry; pad100=True reproduces the Caffe reference (5, 9, 31 for 8s).
  """
  if stride not in (8, 16, 32):
    raise ValueError(f"stride: expected 8, 16 or 32, got {stride!r}")
  up_pad = (lambda f: 0) if pad100 else (lambda f: f // 2)
  m = _after_conv((1.0, 0.0), 3, padding=100 if pad100 else 1)  # conv1_1; later 3×3 pad-1 convs keep the map.
  pools = {}
  for b in range(1, 6):
    m = _after_conv(m, 2, stride=2)
    pools[b] = m
  score = _after_conv(pools[5], 7, padding=0 if pad100 else 3)  # fc6; fc7 and score_fr are 1×1.
  image = (1.0, 0.0)
  offsets = {}
  if stride == 32:
    offsets["final"] = _offset(_after_deconv(score, 64, 32, up_pad(32)), image)
    return offsets
  up2 = _after_deconv(score, 4, 2, up_pad(2))
  offsets["pool4"] = _offset(pools[4], up2)
  if stride == 16:
    offsets["final"] = _offset(_after_deconv(up2, 32, 16, up_pad(16)), image)
    return offsets
  up4 = _after_deconv(up2, 4, 2, up_pad(2))
  offsets["pool3"] = _offset(pools[3], up4)
  offsets["final"] = _offset(_after_deconv(up4, 16, 8, up_pad(8)), image)
  return offsets


class FCN(nn.Module):
  """FCN-32s/16s/8s on VGG16 (see the module docstring). `__call__(x (N,H,W,3), train) ->
  {'semantic': (N,H,W,classes)}`."""
  num_classes: int = 21
  stride: int = 8
  width: float = 1.0
  fc_channels: int = 4096
  pad100: bool = True
  dropout_rate: float = 0.5
  learn_upsampling: bool = True
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs

  def _upsample(self, x, factor, name):
    return BilinearUpsample(factor, learnable=self.learn_upsampling, padding=0 if self.pad100 else factor // 2,
                            dtype=self.dtype, name=name)(x)

  def _score(self, x, name):
    return conv(self.num_classes, 1, name=name, kernel_init=nn.initializers.zeros, dtype=self.dtype)(x)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    offsets = crop_offsets(self.stride, self.pad100)
    if not self.pad100:
      check_image(x, multiple=32, why="FCN without pad 100 aligns its maps only for multiples of its 5 poolings")
    size = x.shape[1:3]
    feats = VGG16(width=self.width, first_padding=100 if self.pad100 else 1, ceil_mode=self.pad100,
                  dtype=self.dtype, name="backbone")(x, train)
    fc = scaled(self.fc_channels, self.width)
    h = conv(fc, 7, padding=0 if self.pad100 else 3, name="fc6", dtype=self.dtype)(feats["pool5"])
    h = torch_like_dropout(self.dropout_rate, train)(nn.relu(h))
    h = conv(fc, 1, name="fc7", dtype=self.dtype)(h)
    h = torch_like_dropout(self.dropout_rate, train)(nn.relu(h))
    score = self._score(h, "score_fr")
    if self.stride == 32:
      return {"semantic": crop(self._upsample(score, 32, "upscore"), (offsets["final"],) * 2, size, "upscore")}
    up = self._upsample(score, 2, "upscore2")
    pool4 = self._score(feats["pool4"], "score_pool4")
    up = up + crop(pool4, (offsets["pool4"],) * 2, up.shape[1:3], "score_pool4")
    if self.stride == 16:
      return {"semantic": crop(self._upsample(up, 16, "upscore16"), (offsets["final"],) * 2, size, "upscore16")}
    up = self._upsample(up, 2, "upscore_pool4")
    pool3 = self._score(feats["pool3"], "score_pool3")
    up = up + crop(pool3, (offsets["pool3"],) * 2, up.shape[1:3], "score_pool3")
    return {"semantic": crop(self._upsample(up, 8, "upscore8"), (offsets["final"],) * 2, size, "upscore8")}


class FCNHead(nn.Module):
  """torchvision's `FCNHead`: 3×3 conv (in/4, no bias) → BN → ReLU → dropout → 1×1 conv (classes)."""
  num_classes: int
  dropout_rate: float = 0.1
  frozen_bn: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(max(1, x.shape[-1] // 4), 3, padding=1, use_bias=False, name="conv", dtype=self.dtype)(x)
    x = nn.relu(batch_norm(train, name="bn", frozen=self.frozen_bn, dtype=self.dtype)(x))
    x = torch_like_dropout(self.dropout_rate, train)(x)
    return conv(self.num_classes, 1, name="classifier", dtype=self.dtype)(x)


def _resize_to(x, size):
  from dense_jax.ops import resize_bilinear
  return resize_bilinear(x, size, align_corners=False)


def resnet_trunk(model: nn.Module, x, train: bool, *, multi_grid=None, aux_dropout_rate: float = 0.1):
  """The ResNet front FCN-ResNet and DeepLabV3 share, called inside `model`'s compact `__call__` so that
  its submodules are `model`'s own: the trunk `backbone` (`model.depth`, `.width`, `.output_stride`,
  `.frozen_bn`, `.dtype`) and, with `model.aux_classifier`, torchvision's auxiliary `FCNHead` named
  `aux_classifier` on layer3. `x` is the normalised image batch.

  Returns `(features, extra outputs)`: the trunk's maps `{'layer1'..'layer4'}` and
  `{'semantic_aux': aux logits resized to the input}` (empty without the auxiliary head)."""
  feats = ResNet(model.depth, model.width, model.output_stride, multi_grid, model.frozen_bn, model.dtype,
                 name="backbone")(x, train)
  out = {}
  if model.aux_classifier:
    aux = FCNHead(model.num_classes, aux_dropout_rate, model.frozen_bn, model.dtype, name="aux_classifier")(
        feats["layer3"], train)
    out["semantic_aux"] = _resize_to(aux, x.shape[1:3])
  return feats, out


class FCNResNet(nn.Module):
  """torchvision's `fcn_resnet50` / `fcn_resnet101` (see the module docstring)."""
  num_classes: int = 21
  depth: int = 50
  width: float = 1.0
  output_stride: int = 8
  aux_classifier: bool = False
  frozen_bn: bool = False
  head_dropout_rate: float = 0.1   # torchvision's FCNHead dropout; 0 = none (e.g. to compare a step)
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    check_image(x)
    size = x.shape[1:3]
    feats, out = resnet_trunk(self, x, train, aux_dropout_rate=self.head_dropout_rate)
    y = FCNHead(self.num_classes, self.head_dropout_rate, self.frozen_bn, self.dtype, name="classifier")(
        feats["layer4"], train)
    return {"semantic": _resize_to(y, size), **out}


# ----------------------------------------------------------------------------- registry
# Full-size variants follow the papers / torchvision; `_narrow` ones are for CPU experiments
# (1/8 width, fc 512 channels, no pad 100).
NARROW_FCN = dict(width=0.125, pad100=False)


@register_model("fcn32s")
def fcn32s(**kw) -> FCN:
  return FCN(stride=32, **kw)


@register_model("fcn16s")
def fcn16s(**kw) -> FCN:
  return FCN(stride=16, **kw)


@register_model("fcn8s")
def fcn8s(**kw) -> FCN:
  return FCN(stride=8, **kw)


@register_model("fcn8s_narrow")
def fcn8s_narrow(**kw) -> FCN:
  return FCN(stride=8, **{**NARROW_FCN, **kw})


@register_model("fcn16s_narrow")
def fcn16s_narrow(**kw) -> FCN:
  return FCN(stride=16, **{**NARROW_FCN, **kw})


@register_model("fcn32s_narrow")
def fcn32s_narrow(**kw) -> FCN:
  return FCN(stride=32, **{**NARROW_FCN, **kw})


@register_model("fcn_resnet50")
def fcn_resnet50(**kw) -> FCNResNet:
  return FCNResNet(depth=50, **kw)


@register_model("fcn_resnet101")
def fcn_resnet101(**kw) -> FCNResNet:
  return FCNResNet(depth=101, **kw)


@register_model("fcn_resnet50_narrow")
def fcn_resnet50_narrow(**kw) -> FCNResNet:
  return FCNResNet(depth=50, **{"width": 0.125, **kw})
