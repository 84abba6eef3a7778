"""The multi-scale network of Eigen & Fergus (ICCV 2015) for depth, surface normals and semantic labels.

"Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale Convolutional
Architecture". Three stacks, coarse to fine (VGG version; sizes for an H×W input):

  Scale 1 (full-image view, shared by every task):
    VGG16 convolutions (13 convs, 5 poolings) → pool5 (H/32 × W/32 × 512, floor) → flatten
    → full1: fully connected, 4096, ReLU, dropout → full2: fully connected to 64·(H/16)·(W/16), ReLU
    → reshaped to a 64-channel map at 1/16 → bilinear ×4 to 1/4.
  Scale 2 (predictions at 1/4):
    conv 2.1: 9×9 stride 2, 96 channels, on the image, ReLU → pool 2.1: 3×3 max, stride 2   (shared)
    → concat with scale 1's map (96 + 64 channels)
    → per task: conv 2.2–2.4 (5×5, 64, ReLU) → conv 2.5 (5×5, C)  → bilinear ×2 to 1/2.
  Scale 3 (refinement at 1/2):
    conv 3.1: 9×9 stride 2, 96 channels, on the image, ReLU → pool 3.1: 3×3 max, stride 1   (shared)
    → concat with the scale-2 predictions of every task (96 + ΣC channels)
    → per task: conv 3.2–3.3 (5×5, 64, ReLU) → conv 3.4 (5×5, C) → bilinear ×2 to the input size.

C = 1 (depth), 3 (normals), K (semantic). Sharing follows the authors' released joint depth–normals
model: scale 1 and the first layers of scales 2 and 3 are shared, the stacks after the concatenations are
per task, and each task's scale-3 stack sees the scale-2 predictions of all tasks (the normals
prediction normalised to unit length, the semantic one as softmax probabilities, depth as log-depth), as
the released network feeds both depth and normals to both scale-3 stacks. `tasks` picks any non-empty
subset of {depth, normals, semantic}. Outputs follow `_dense_tasks` (depth is log-depth, as the paper
regresses); the scale-2 predictions are sown as `intermediates/{task}_scale2` (at 1/4; the paper trains
scales 1–2 first, on these).

Deviations (documented, not hidden): "same" padding everywhere, so every map is exactly 1/16, 1/4, 1/2
of an input whose sides are multiples of 16 (the paper's valid convolutions give 74×55 / 147×109 for
304×228 and a crop); the output is bilinearly resized to the input size (the paper upsamples its 1/2
prediction for evaluation); the released model's 0.01 scaling of the pretrained pool5 features and its
dropping of four conv 3.1 channels (to keep 96 inputs in scale 3) are not reproduced. The fully
connected layers make the parameter count depend on the input size (the paper's input is 304×228).
Channel counts: 96 (conv 2.1 / 3.1), 64 (full2's maps, the 5×5 stacks), as in the released network's
concatenation widths (96 + 64 at scale 2); the widths of the 5×5 stacks of the VGG version were not
re-checked against the paper's table here, so they are arguments (`scale2_channels`, `scale3_channels`).
The paper gives no total parameter count; tests/models/test_eigen_fergus.py pins ours against a
layer-by-layer formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dense_jax.models._common import Dtype, check_image, conv, scaled, torch_like_dropout
from dense_jax.models._dense_tasks import check_tasks, finalize, raw_channels
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.ops.resize import resize_bilinear

TASKS = ("depth", "normals", "semantic")


def _scale2_feed(task: str, y):
  """What scale 3 sees of a scale-2 prediction: unit normals, class probabilities, raw log-depth."""
  if task == "normals":
    return y * jax.lax.rsqrt(jnp.sum(jnp.square(y), -1, keepdims=True) + 1e-4)  # the release's eps
  if task == "semantic":
    return jax.nn.softmax(y, axis=-1)
  return y


class EigenFergus(nn.Module):
  """See the module docstring. `__call__(images (B,H,W,3), *, train) -> {task: output}`.

  Attributes:
    tasks: subset of ("depth", "normals", "semantic").
    num_classes: K of the semantic head (the paper's NYUv2 set: 40 (+ none)).
    width: channel multiplier of every layer (the narrow CPU variant uses 1/8).
    fc_channels, coarse_channels: full1's width and the channels of full2's map (4096, 64).
    image_channels: conv 2.1 / 3.1 (96); scale2_channels, scale3_channels: the 5×5 stacks (64).
    dropout_rate: after full1.
    input_norm: how the [0, 1] images are normalised first (dense_jax.models.inputs); every scale sees
      the normalised image.
  """
  tasks: Sequence[str] = ("depth", "normals")
  num_classes: int = 40
  width: float = 1.0
  fc_channels: int = 4096
  coarse_channels: int = 64
  image_channels: int = 96
  scale2_channels: int = 64
  scale3_channels: int = 64
  dropout_rate: float = 0.5
  input_norm: str = "imagenet"   # a VGG16 trunk (torchvision weights); see dense_jax.models.inputs
  dtype: Dtype = jnp.float32

  def _conv(self, features, kernel, name, stride=1, scale_width=True):
    features = scaled(features, self.width) if scale_width else features
    return conv(features, kernel, stride=stride, padding=kernel // 2, name=name, dtype=self.dtype)

  def _image_features(self, x, stride2_pool: bool, name: str):
    """conv {2,3}.1 (9×9 / 2, ReLU) + a 3×3 max-pool (stride 2 at scale 2, 1 at scale 3)."""
    h = nn.relu(self._conv(self.image_channels, 9, f"{name}_conv", stride=2)(x))
    s = 2 if stride2_pool else 1
    return nn.max_pool(h, (3, 3), strides=(s, s), padding=((1, 1), (1, 1)))

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    tasks = check_tasks(self.tasks, TASKS)
    check_image(images, "images", multiple=16, min_size=32,
                why="scale 1's map is 1/16 of the input and VGG16 pools five times")
    b, h, w, _ = images.shape
    x = normalise_images(images, self.input_norm).astype(self.dtype)
    channels = {t: raw_channels(t, num_classes=self.num_classes, num_bins=0) for t in tasks}

    # Scale 1: VGG16 → two fully connected layers → a coarse map at 1/16, upsampled to 1/4.
    pool5 = VGG16(width=self.width, dtype=self.dtype, name="scale1_vgg")(x, train)["pool5"]
    f = nn.Dense(scaled(self.fc_channels, self.width), dtype=self.dtype, name="scale1_full1")(
        pool5.reshape(b, -1))
    f = torch_like_dropout(self.dropout_rate, train)(nn.relu(f))
    cc, (gh, gw) = scaled(self.coarse_channels, self.width), (h // 16, w // 16)
    f = nn.relu(nn.Dense(cc * gh * gw, dtype=self.dtype, name="scale1_full2")(f))
    coarse = resize_bilinear(f.reshape(b, gh, gw, cc), (h // 4, w // 4))

    # Scale 2: image features at 1/4 + the coarse map → a prediction per task at 1/4.
    s2_in = jnp.concatenate([self._image_features(x, True, "scale2"), coarse], axis=-1)
    s2_feeds, s2_up = [], {}
    for t in tasks:
      y = s2_in
      for i in (2, 3, 4):
        y = nn.relu(self._conv(self.scale2_channels, 5, f"{t}_scale2_conv{i}")(y))
      y = self._conv(channels[t], 5, f"{t}_scale2_conv5", scale_width=False)(y)
      self.sow("intermediates", f"{t}_scale2", finalize(t, y))
      s2_up[t] = resize_bilinear(_scale2_feed(t, y), (h // 2, w // 2))
      s2_feeds.append(s2_up[t])

    # Scale 3: image features at 1/2 + every task's scale-2 prediction → the final prediction.
    s3_in = jnp.concatenate([self._image_features(x, False, "scale3")] + s2_feeds, axis=-1)
    outputs = {}
    for t in tasks:
      y = s3_in
      for i in (2, 3):
        y = nn.relu(self._conv(self.scale3_channels, 5, f"{t}_scale3_conv{i}")(y))
      y = self._conv(channels[t], 5, f"{t}_scale3_conv4", scale_width=False)(y)
      outputs[t] = finalize(t, resize_bilinear(y, (h, w)))
    return outputs


@register_model("eigen_fergus")
def eigen_fergus(**kw) -> EigenFergus:
  """The VGG version of the paper (depth and normals by default; pass `tasks=` for others)."""
  return EigenFergus(**kw)


@register_model("eigen_fergus_narrow")
def eigen_fergus_narrow(**kw) -> EigenFergus:
  """Every layer at 1/8 width (full1 512, the coarse map 8 channels): the CPU variant."""
  return EigenFergus(**{"width": 0.125, **kw})
