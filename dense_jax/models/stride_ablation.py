"""`stride_ablation`: dilation vs. downsampling (experiments/dilation_vs_downsampling.py), a small
segmentation net whose one knob is its output stride.

It takes images `(B, H, W, 3)` in [0, 1] (normalised here as `(x - 0.5) / 0.25`, `input_norm='centred'`)
and returns logits `(B, H, W, num_classes)` at the input resolution. Convolutions use symmetric "same"
padding (`padding = dilation·(k - 1) / 2`), so every variant's output is in register with its input.

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
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.checks import check_choice
from dense_jax.models._common import Dtype, batch_norm as _batch_norm, check_image, conv, scaled
from dense_jax.models._dense_tasks import check_tasks, finalize, raw_channels
from dense_jax.models.backbones.resnet import ResNet
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.nn import BilinearUpsample
from dense_jax.ops import resize_bilinear

STRIDE_ABLATION_TASKS = ("semantic", "depth", "normals")
SMALL_CHANNELS = (16, 32, 64, 128)


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
    check_choice(self.backbone, ("small", "resnet50", "resnet101"), "backbone")
    check_choice(self.upsample, ("learned", "bilinear"), "upsample")
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


@register_model("stride_ablation")
def stride_ablation(**kw) -> StrideAblationNet:
  return StrideAblationNet(**kw)
