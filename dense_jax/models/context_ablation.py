"""`context_ablation`: context-module dilation schedules (experiments/receptive_field.py), a small
segmentation net whose one knob is the dilation schedule of its context module.

It takes images `(B, H, W, 3)` in [0, 1] (normalised here as `(x - 0.5) / 0.25`, `input_norm='centred'`)
and returns logits `(B, H, W, num_classes)` at the input resolution. Convolutions use symmetric "same"
padding (`padding = dilation·(k - 1) / 2`), so every variant's output is in register with its input.

front-end: `frontend_layers` 3×3 conv + BN + ReLU (`width` channels; the last one has stride
`frontend_stride`) → Yu & Koltun's basic context module (`dilated.ContextModule`, identity
initialised, one 3×3 conv + ReLU per entry of `dilations`, then a 1×1 conv) on the `width`
channels → 1×1 conv to the classes → bilinear ×frontend_stride. The theoretical receptive field
is `rf_frontend + 2·frontend_stride·Σ dilations` input pixels, so the schedule alone sets it:
(1,1,2,4,8,16,1) → 67 front-end pixels of context, (1,)·7 → 15, (2,2,2) → 13, (1,2,5,1,2,5) → 33.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, batch_norm, check_image, conv
from dense_jax.models.dilated import CONTEXT_DILATIONS, ContextModule
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.ops import resize_bilinear


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


@register_model("context_ablation")
def context_ablation(**kw) -> ContextAblationNet:
  return ContextAblationNet(**kw)
