"""A multi-task network in the spirit of UberNet (Kokkinos, CVPR 2017): one trunk, every task at once.

  image pyramid (scales 1, 1/2 by default)  ──►  one VGG16 trunk, weights tied across scales
                                                  (rematerialised: its activations are recomputed in
                                                  the backward pass instead of being stored)
  per task, per pyramid level: task-specific skip layers on the trunk's block outputs conv1 … conv5
      skip_d = 1×1 conv_d(BatchNorm_d(conv_d features))    (batch norm on each skip: the depths have
                                                            very different activation scales)
      level output = Σ_d skip_d, summed coarse to fine      (fusion across depths: the running sum is
                     upsampled to each finer depth, then the total resized to the task output size)
      (the skip layers are shared by the pyramid levels: tied weights)
  per task: fusion across the pyramid = 1×1 conv over the concatenated level outputs
  → the task's output (`_dense_tasks` convention; colorization at 1/4, the others at the input size)

`tasks` is any non-empty subset of {semantic, depth, normals, colorization, boundaries}.

Memory. Training memory must not grow like the number of tasks. What a task adds is its head: its
skip maps and its output. The heads are built so that this is about one output-sized map per pyramid level:
depths are summed coarse to fine at their own resolution, and a depth finer than the task's output is
resized *before* its 1×1 conv (the two commute), so colorization's Q = 262 channels never exist at the
finest depth's resolution. Both the trunk and each head also run under `nn.remat` (`remat=True`): the
backward pass recomputes their inner activations instead of storing them, one head after another.
Five tasks cost well under twice one task's training-step memory (`experiments/benchmarks/multitask_memory.py`;
numbers in docs/results.md; tests/models/test_multitask.py bounds the 5/1 ratio). On XLA CPU at small sizes
remat does not lower the peak: XLA fuses the batch norms into the 1×1 convs, so the heads store little, and
the peak is the trunk's own backward pass, which remat recomputes in full. It is kept because on
accelerators, larger images and batches the stored trunk activations are what remat removes.

Colour would give colorization's answer away, so when `colorization` is among the tasks the trunk sees
the grey image (CIE L*/100 replicated on three channels; `gray_input=None` decides so, True/False force
it) — the other tasks then learn from grey images too, as a network trained on both must.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv
from dense_jax.models._dense_tasks import ALL_TASKS, check_tasks, finalize, raw_channels
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.colorization import default_num_bins, rgb_to_lightness
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.ops.resize import resize_bilinear

DEPTHS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class Trunk(nn.Module):
  """VGG16 returning the block outputs the skip layers read, as a tuple (a remat-friendly output)."""
  width: float = 1.0
  batch_norm: bool = False
  depths: Sequence[str] = DEPTHS
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    feats = VGG16(width=self.width, batch_norm=self.batch_norm, dtype=self.dtype, frozen_bn=self.frozen_bn,
                  name="vgg")(x, train)
    return tuple(feats[d] for d in self.depths)


class TaskHead(nn.Module):
  """One task's skip layers (per depth: batch norm → 1×1 conv to `channels`), summed over depths at
  `out_size`, on each pyramid level with the same weights, then a 1×1 conv fusing the levels."""
  channels: int
  out_size: tuple[int, int]
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, pyramid, train: bool = False):
    num_depths = len(pyramid[0])
    norms = [batch_norm(train, name=f"skip{d}_bn", frozen=self.frozen_bn, dtype=self.dtype)
             for d in range(num_depths)]
    convs = [conv(self.channels, 1, name=f"skip{d}_conv", dtype=self.dtype) for d in range(num_depths)]
    levels = []
    for feats in pyramid:
      # Coarse to fine (FPN-style): upsample the running sum to the next finer depth and add its skip, so
      # only one map per depth exists, at that depth's own resolution, and one at the output size.
      # A depth finer than the output is resized *before* its 1×1 conv: a 1×1 conv (bias included) and a
      # bilinear resize (weights summing to 1) commute, and a task with many channels (colorization's Q
      # bins) would otherwise make a Q-channel map at the finest depth's resolution.
      order = sorted(range(num_depths), key=lambda d: feats[d].shape[1])
      y = None
      for d in order:
        f = norms[d](feats[d])
        if f.shape[1] > self.out_size[0]:
          f = resize_bilinear(f, self.out_size)
        s = convs[d](f)
        y = s if y is None else s + (y if y.shape[1:3] == s.shape[1:3] else resize_bilinear(y, s.shape[1:3]))
      levels.append(resize_bilinear(y, self.out_size) if y.shape[1:3] != tuple(self.out_size) else y)
    return conv(self.channels, 1, name="scale_fusion", dtype=self.dtype)(jnp.concatenate(levels, -1))


class MultiTask(nn.Module):
  """See the module docstring. `__call__(images (B,H,W,3), *, train) -> {task: output}`.

  Attributes:
    tasks: subset of ("semantic", "depth", "normals", "colorization", "boundaries").
    num_classes: K of the semantic head. num_bins: Q of the colorization head (None: data.color's 262).
    width: trunk channel multiplier (narrow variant 1/8). trunk_batch_norm: VGG16-BN trunk.
    scales: the image pyramid (1 first; each level's sides integers >= 32).
    depths: trunk block outputs the skip layers read.
    remat: rematerialise the trunk and the heads (False only to measure what it saves).
    gray_input: feed the grey image (None: iff colorization is a task).
    input_norm: how the [0, 1] (possibly grey) images are normalised first (dense_jax.models.inputs).
    frozen_bn: every batch norm (trunk and skip layers) uses its running statistics, even in training,
      and never updates them (`_common.batch_norm(train, frozen=True)`).
  """
  tasks: Sequence[str] = ("semantic", "depth", "normals")
  num_classes: int = 21
  num_bins: int | None = None
  width: float = 1.0
  trunk_batch_norm: bool = False
  scales: Sequence[float] = (1.0, 0.5)
  depths: Sequence[str] = DEPTHS
  remat: bool = True
  gray_input: bool | None = None
  input_norm: str = "imagenet"   # a VGG16 trunk (torchvision weights); see dense_jax.models.inputs
  dtype: Dtype = jnp.float32
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    tasks = check_tasks(self.tasks, ALL_TASKS)
    check_image(images, "images", multiple=4)
    if images.shape[-1] != 3:
      raise ValueError(f"images: expected sRGB (B, H, W, 3), got shape {images.shape}")
    if not self.scales or self.scales[0] != 1.0 or any(not 0 < s <= 1 for s in self.scales):
      raise ValueError(f"scales: expected 1.0 first, then factors in (0, 1], got {tuple(self.scales)!r}")
    bad = [d for d in self.depths if d not in DEPTHS]
    if not self.depths or bad:
      raise ValueError(f"depths: expected a non-empty subset of {DEPTHS}, got {tuple(self.depths)!r}")
    _, h, w, _ = images.shape
    sizes = [(round(h * s), round(w * s)) for s in self.scales]
    for (sh, sw), s in zip(sizes, self.scales):
      if sh != h * s or sw != w * s or min(sh, sw) < 32:
        raise ValueError(f"images: expected a size whose every pyramid level ({tuple(self.scales)}) has "
                         f"integer sides >= 32 (VGG16 pools five times), got {h}x{w} (level {s}: {h * s}x{w * s})")

    gray = ("colorization" in tasks) if self.gray_input is None else self.gray_input
    x = images.astype(jnp.float32)
    if gray:
      x = jnp.repeat(rgb_to_lightness(x) / 100.0, 3, axis=-1)
    x = normalise_images(x, self.input_norm).astype(self.dtype)

    trunk_cls = nn.remat(Trunk, static_argnums=(2,)) if self.remat else Trunk
    trunk = trunk_cls(self.width, self.trunk_batch_norm, tuple(self.depths), self.dtype, self.frozen_bn,
                      name="trunk")
    pyramid = tuple(trunk(x if size == (h, w) else resize_bilinear(x, size), train) for size in sizes)

    head_cls = nn.remat(TaskHead, static_argnums=(2,)) if self.remat else TaskHead
    q = default_num_bins() if self.num_bins is None else self.num_bins
    outputs = {}
    for t in tasks:   # one head after another; under remat each keeps only its output for backward
      out_size = (h // 4, w // 4) if t == "colorization" else (h, w)
      channels = raw_channels(t, num_classes=self.num_classes, num_bins=q)
      y = head_cls(channels, out_size, self.dtype, self.frozen_bn, name=f"{t}_head")(pyramid, train)
      outputs[t] = finalize(t, y)
    return outputs


@register_model("multitask")
def multitask(**kw) -> MultiTask:
  """VGG16 trunk at full width, pyramid (1, 1/2), skips from conv1 … conv5."""
  return MultiTask(**kw)


@register_model("multitask_narrow")
def multitask_narrow(**kw) -> MultiTask:
  """1/8-width trunk with batch norm (it trains from scratch on CPU): the CPU variant."""
  return MultiTask(**{"width": 0.125, "trunk_batch_norm": True, **kw})
