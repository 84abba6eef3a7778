"""Small segmentation nets whose one knob is the thing an ablation varies (experiments/*.py).

Each takes images `(B, H, W, 3)` in [0, 1] (normalised here as `(x - 0.5) / 0.25`, `input_norm='centred'`) and returns logits
`(B, H, W, num_classes)` at the input resolution. Convolutions use symmetric "same" padding
(`padding = dilation·(k - 1) / 2`), so every variant's output is in register with its input.

`stride_ablation` — dilation vs. downsampling (experiments/dilation_vs_downsampling.py).
  backbone 'small': stem 3×3/2 conv (16w) → 4 stages of `blocks[s]` basic residual blocks
  (two 3×3 convs + BN, ReLU after the sum; 16w, 32w, 64w, 128w channels), each stage starting with
  stride 2: output stride 32. backbone 'resnet50' / 'resnet101': `backbones.resnet.ResNet` (width
  multiplier `width`). `output_stride` 16 or 8 replaces the stride of the last one or two stages with
  dilation, torchvision's rule (the first 3×3 conv of a dilated stage keeps the previous dilation, the
  later ones double it), so the receptive field in input pixels is the same at every output stride;
  what changes is the resolution of the last stages (and their cost).
  Head: 1×1 conv to the classes at 1/output_stride, then ×output_stride to the input size:
  `upsample='learned'` — one transposed conv (kernel 2·OS, stride OS, padding OS/2; FCN-32s style),
  initialised to bilinear interpolation and trained (`nn.BilinearUpsample`); `'bilinear'` — fixed
  bilinear resize (`ops.resize_bilinear`).
  `tasks` (default `('semantic',)`) picks the heads on the one backbone, any subset of semantic, depth,
  normals: each is the same 1×1 conv + up-sampler with the task's channels (K, 1, 3) and outputs follow
  `_dense_tasks` — semantic logits `(B, H, W, K)`, depth as **log**-depth `(B, H, W)` (metres =
  exp), normals `(B, H, W, 3)` not normalised. The semantic head keeps the names `classifier` /
  `upsample` (so semantic-only parameters are those of the model before `tasks` existed); the others
  are `{task}_head` / `{task}_upsample`.

`context_ablation` — context-module dilation schedules (experiments/receptive_field.py).
  front-end: `frontend_layers` 3×3 conv + BN + ReLU (`width` channels; the last one has stride
  `frontend_stride`) → Yu & Koltun's basic context module (`dilated.ContextModule`, identity
  initialised, one 3×3 conv + ReLU per entry of `dilations`, then a 1×1 conv) on the `width`
  channels → 1×1 conv to the classes → bilinear ×frontend_stride. The theoretical receptive field
  is `rf_frontend + 2·frontend_stride·Σ dilations` input pixels, so the schedule alone sets it:
  (1,1,2,4,8,16,1) → 67 front-end pixels of context, (1,)·7 → 15, (2,2,2) → 13, (1,2,5,1,2,5) → 33.

`upsampling_ablation` — the up-sampling operator of a decoder (experiments/upsampling.py).
  SegNet-like, without skip connections (so the decoder's up-sampling does all the work):
  encoder level i (i = 0..levels-1): `convs` × (3×3 conv, `width·2^i` channels, BN, ReLU) then a 2×2
  max-pool that also returns its argmax (`nn.MaxPoolWithArgmax`; values equal to plain max-pooling);
  a 3×3 conv at the bottom; decoder level i (reverse order): ×2 up-sampling by `up`, then 3×3 conv +
  BN + ReLU (`width·2^(i-1)` channels, `width` at the top); a 1×1 conv to the classes.
  `up`: 'nearest' and 'bed_of_nails' (`nn.Unpool`), 'max_unpool' (`nn.MaxUnpool` with the encoder's
  indices of the same level), 'transposed' (a learned 4×4 stride-2 transposed conv, padding 1, channels
  kept; `transposed_init` 'bilinear' starts it as bilinear interpolation — `nn.BilinearUpsample(2)` —,
  'random' from He init — `nn.ConvTranspose`), 'bilinear' (`ops.resize_bilinear`, fixed).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv, scaled
from dense_jax.models._common import batch_norm as _batch_norm
from dense_jax.models._dense_tasks import check_tasks, finalize, raw_channels
from dense_jax.models.backbones.resnet import ResNet
from dense_jax.models.dilated import CONTEXT_DILATIONS, ContextModule
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.nn import BilinearUpsample, ConvTranspose, MaxPoolWithArgmax, MaxUnpool, Unpool
from dense_jax.ops import resize_bilinear

UPSAMPLERS = ("nearest", "bed_of_nails", "max_unpool", "transposed", "bilinear")
STRIDE_ABLATION_TASKS = ("semantic", "depth", "normals")
SMALL_CHANNELS = (16, 32, 64, 128)


def _check_choice(value, choices, name: str) -> None:
  if value not in choices:
    raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Dilation vs. downsampling.
# ---------------------------------------------------------------------------------------------------
def small_plan(num_stages: int, output_stride: int) -> list[tuple[int, int, int]]:
  """Per stage of the small backbone, `(stride, dilation of the first 3×3 conv, dilation after)`.

  The stem has stride 2; stages are strided until the output stride is reached, then dilated.

  >>> small_plan(4, 8)
  [(2, 1, 1), (2, 1, 1), (1, 1, 2), (1, 2, 4)]
  """
  allowed = [2 ** i for i in range(1, num_stages + 2)]
  if output_stride not in allowed:
    raise ValueError(f"output_stride: expected one of {allowed} for {num_stages} stages, got {output_stride!r}")
  total, dilation, plan = 2, 1, []
  for _ in range(num_stages):
    previous = dilation
    if total * 2 <= output_stride:
      stride, total = 2, total * 2
    else:
      stride, dilation = 1, dilation * 2
    plan.append((stride, previous, dilation))
  return plan


class BasicBlock(nn.Module):
  """Two 3×3 convs with BN (the first with `stride` and `first_dilation`), identity or 1×1 shortcut."""
  features: int
  stride: int = 1
  first_dilation: int = 1
  dilation: int = 1
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    batch_norm = functools.partial(_batch_norm, frozen=self.frozen_bn)
    y = conv(self.features, 3, stride=self.stride, padding=self.first_dilation, dilation=self.first_dilation,
             use_bias=False, name="conv1", dtype=self.dtype)(x)
    y = nn.relu(batch_norm(train, name="bn1", dtype=self.dtype)(y))
    y = conv(self.features, 3, padding=self.dilation, dilation=self.dilation, use_bias=False, name="conv2",
             dtype=self.dtype)(y)
    y = batch_norm(train, name="bn2", dtype=self.dtype)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, stride=self.stride, use_bias=False, name="shortcut_conv", dtype=self.dtype)(x)
      x = batch_norm(train, name="shortcut_bn", dtype=self.dtype)(x)
    return nn.relu(x + y)


class SmallBackbone(nn.Module):
  """Stem 3×3/2 + `len(blocks)` stages of basic blocks; output stride `output_stride` (see `small_plan`)."""
  width: float = 1.0
  blocks: Sequence[int] = (1, 1, 1, 1)
  output_stride: int = 32
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    batch_norm = functools.partial(_batch_norm, frozen=self.frozen_bn)
    plan = small_plan(len(self.blocks), self.output_stride)
    if len(self.blocks) > len(SMALL_CHANNELS):
      raise ValueError(f"blocks: expected at most {len(SMALL_CHANNELS)} stages, got {tuple(self.blocks)}")
    x = conv(scaled(16, self.width), 3, stride=2, padding=1, use_bias=False, name="stem_conv", dtype=self.dtype)(x)
    x = nn.relu(batch_norm(train, name="stem_bn", dtype=self.dtype)(x))
    for s, ((stride, first, dilation), n) in enumerate(zip(plan, self.blocks)):
      for i in range(n):
        x = BasicBlock(scaled(SMALL_CHANNELS[s], self.width), stride if i == 0 else 1,
                       first if i == 0 else dilation, dilation, self.dtype, self.frozen_bn,
                       name=f"stage{s + 1}_{i}")(x, train)
    return x


class StrideAblationNet(nn.Module):
  """Backbone at `output_stride` → per task a 1×1 conv → ×output_stride up-sampling (module docstring)."""
  num_classes: int = 9
  backbone: str = "small"
  width: float = 1.0
  blocks: Sequence[int] = (1, 1, 1, 1)
  output_stride: int = 32
  upsample: str = "learned"
  tasks: Sequence[str] = ("semantic",)
  dtype: Dtype = jnp.float32
  input_norm: str = "centred"   # see dense_jax.models.inputs
  frozen_bn: bool = False   # backbone BNs use running statistics, never updated (the ResNet's frozen_bn)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    _check_choice(self.backbone, ("small", "resnet50", "resnet101"), "backbone")
    _check_choice(self.upsample, ("learned", "bilinear"), "upsample")
    tasks = check_tasks(self.tasks, STRIDE_ABLATION_TASKS)
    os_ = self.output_stride
    check_image(x, multiple=os_, why=f"output stride {os_}")
    h = x
    if self.backbone == "small":
      h = SmallBackbone(self.width, tuple(self.blocks), os_, self.dtype, self.frozen_bn, name="backbone")(h, train)
    else:
      h = ResNet(int(self.backbone[6:]), self.width, os_, frozen_bn=self.frozen_bn, dtype=self.dtype,
                 name="backbone")(h, train)["layer4"]
    outputs = {}
    for task in tasks:
      # The semantic head keeps its original names, so semantic-only checkpoints are unchanged.
      head, up = ("classifier", "upsample") if task == "semantic" else (f"{task}_head", f"{task}_upsample")
      y = conv(raw_channels(task, num_classes=self.num_classes, num_bins=0), 1, name=head, dtype=self.dtype)(h)
      if self.upsample == "bilinear" or os_ == 1:
        y = resize_bilinear(y, x.shape[1:3])
      else:
        y = BilinearUpsample(os_, learnable=True, use_bias=True, dtype=self.dtype, name=up)(y)
      outputs[task] = finalize(task, y)
    return outputs


# ---------------------------------------------------------------------------------------------------
# Context-module dilation schedules.
# ---------------------------------------------------------------------------------------------------
class ContextAblationNet(nn.Module):
  """Small front-end → basic context module with `dilations` → classifier (module docstring)."""
  num_classes: int = 9
  width: int = 16
  frontend_layers: int = 2
  frontend_stride: int = 1
  dilations: Sequence[int] = CONTEXT_DILATIONS
  init_noise: float = 1e-3
  dtype: Dtype = jnp.float32
  input_norm: str = "centred"   # see dense_jax.models.inputs

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    if self.frontend_layers < 1:
      raise ValueError(f"frontend_layers: expected >= 1, got {self.frontend_layers!r}")
    if self.frontend_stride not in (1, 2, 4):
      raise ValueError(f"frontend_stride: expected 1, 2 or 4, got {self.frontend_stride!r}")
    if not self.dilations or any(int(d) < 1 for d in self.dilations):
      raise ValueError(f"dilations: expected a non-empty sequence of ints >= 1, got {self.dilations!r}")
    check_image(x, multiple=self.frontend_stride, why="the front-end's stride")
    h = x
    for i in range(self.frontend_layers):
      stride = self.frontend_stride if i == self.frontend_layers - 1 else 1
      h = conv(self.width, 3, stride=stride, padding=1, use_bias=False, name=f"frontend_conv{i + 1}",
               dtype=self.dtype)(h)
      h = nn.relu(batch_norm(train, name=f"frontend_bn{i + 1}", dtype=self.dtype)(h))
    h = ContextModule(False, tuple(int(d) for d in self.dilations), self.init_noise, self.dtype,
                      name="context")(h, train)
    h = conv(self.num_classes, 1, name="classifier", dtype=self.dtype)(h)
    if self.frontend_stride > 1:
      h = resize_bilinear(h, x.shape[1:3])
    return {"semantic": h}


# ---------------------------------------------------------------------------------------------------
# Up-sampling operators in one decoder.
# ---------------------------------------------------------------------------------------------------
class UpsamplingAblationNet(nn.Module):
  """SegNet-like encoder-decoder without skips, its ×2 up-sampling chosen by `up` (module docstring)."""
  num_classes: int = 9
  width: int = 16
  levels: int = 3
  convs: int = 1
  up: str = "nearest"
  transposed_init: str = "bilinear"
  dtype: Dtype = jnp.float32
  input_norm: str = "centred"   # see dense_jax.models.inputs

  def _upsample(self, x, indices, size, level: int):
    if self.up in ("nearest", "bed_of_nails"):
      return Unpool(2, self.up, name=f"up{level}")(x)
    if self.up == "max_unpool":
      return MaxUnpool(2, name=f"up{level}")(x, indices, size)
    if self.up == "bilinear":
      return resize_bilinear(x, size)
    if self.transposed_init == "bilinear":   # kernel 4, stride 2, padding 1, starting as bilinear
      return BilinearUpsample(2, learnable=True, use_bias=True, dtype=self.dtype, name=f"up{level}")(x)
    return ConvTranspose(x.shape[-1], 4, stride=2, padding=1, kernel_init=nn.initializers.he_normal(),
                         dtype=self.dtype, name=f"up{level}")(x)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = normalise_images(x, self.input_norm)
    _check_choice(self.up, UPSAMPLERS, "up")
    _check_choice(self.transposed_init, ("bilinear", "random"), "transposed_init")
    if self.levels < 1 or self.convs < 1:
      raise ValueError(f"levels, convs: expected >= 1, got {self.levels!r}, {self.convs!r}")
    check_image(x, multiple=2 ** self.levels, why=f"{self.levels} 2×2 poolings")

    def block(h, features, name):
      for j in range(self.convs):
        h = conv(features, 3, padding=1, use_bias=False, name=f"{name}_conv{j + 1}", dtype=self.dtype)(h)
        h = nn.relu(batch_norm(train, name=f"{name}_bn{j + 1}", dtype=self.dtype)(h))
      return h

    h = x
    skips = []   # (indices, pre-pooling size) per level: only max-unpooling reads the indices
    for i in range(self.levels):
      h = block(h, self.width * 2 ** i, f"enc{i}")
      size = h.shape[1:3]
      h, indices = MaxPoolWithArgmax(2, name=f"pool{i}")(h)
      skips.append((indices, size))
    h = block(h, h.shape[-1], "bottom")
    for i in reversed(range(self.levels)):
      indices, size = skips[i]
      h = self._upsample(h, indices, size, i)
      h = block(h, self.width * 2 ** max(i - 1, 0), f"dec{i}")
    return {"semantic": conv(self.num_classes, 1, name="classifier", dtype=self.dtype)(h)}


@register_model("stride_ablation")
def stride_ablation(**kw) -> StrideAblationNet:
  return StrideAblationNet(**kw)


@register_model("context_ablation")
def context_ablation(**kw) -> ContextAblationNet:
  return ContextAblationNet(**kw)


@register_model("upsampling_ablation")
def upsampling_ablation(**kw) -> UpsamplingAblationNet:
  return UpsamplingAblationNet(**kw)
