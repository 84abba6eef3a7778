"""Dilated convolutions for dense prediction (Yu & Koltun, 2016): the front-end and the context module.

Front-end: VGG16 with pool4 and pool5 removed; every conv after a removed pooling is dilated so it
keeps its receptive field in input pixels (conv5_x dilation 2), and the fc layers become convs:
  fc6 = 7×7 conv dilated 4 (4096) → ReLU → dropout → fc7 = 1×1 conv (4096) → ReLU → dropout
  → final = 1×1 conv (classes)
Output stride 8 (three poolings); the scores are upsampled ×8 bilinearly to the input size (the
paper's deconvolution with fixed bilinear weights; `dense_jax.ops.resize_bilinear` here).
Deviation, documented: the reference removes all padding and reflection-pads the image by 186 px;
we use "same" padding (padding = dilation·(k - 1)/2) so the output is in register with the input
without that crop. Inputs must be multiples of 8.

Context module (Table 1 of the paper), on C = classes channels:
  layers 1-7: 3×3 convs with dilations `dilations` (default 1, 1, 2, 4, 8, 16, 1; receptive field
  3, 5, 9, 17, 33, 65, 67), each followed by the truncation max(·, 0);
  layer 8: 1×1 conv to C channels, no truncation.
  basic: C channels everywhere; large: 2C, 2C, 4C, 8C, 16C, 32C, 32C then C.
Identity initialisation (the paper's eq. 3 and 4): basic layers get k(t, a → b) = [t = 0][a = b];
large layers get k(t, a → b) = C / c_out if t = 0 and ⌊a·C / c_in⌋ = ⌊b·C / c_out⌋, plus
N(0, σ) noise with σ = `init_noise` · C / c_out (σ ≪ C / c_out), biases zero. With zero noise the
module is exactly the identity on non-negative inputs (its truncations pass them unchanged), which
is what lets it be appended to a trained front-end without hurting it.
`DilatedContext` = front-end → context module on the 1/8-resolution scores → bilinear ×8.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._common import Dtype, check_image, conv, scaled, torch_like_dropout
from dense_jax.models.backbones.vgg import VGG16
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
LARGE_MULTIPLIERS = (2, 2, 4, 8, 16, 32, 32)


def identity_kernel(kernel: int, c_in: int, c_out: int, base: int):
  """Yu & Koltun's identity initialiser for a `kernel`×`kernel` conv from c_in to c_out channels.

  `base` is C, the module's input/output channel count; c_in and c_out are multiples of it (or equal).
  """
  a = np.arange(c_in)[:, None]
  b = np.arange(c_out)[None, :]
  centre = np.where((a * base) // c_in == (b * base) // c_out, base / c_out, 0.0)
  w = np.zeros((kernel, kernel, c_in, c_out), np.float32)
  w[kernel // 2, kernel // 2] = centre
  return w


def _identity_init(base: int, noise: float):
  def init(key, shape, dtype=jnp.float32):
    k, _, c_in, c_out = shape
    w = jnp.asarray(identity_kernel(k, c_in, c_out, base), dtype)
    if noise > 0:
      w = w + noise * (base / c_out) * jax.random.normal(key, shape, dtype)
    return w
  return init


class ContextModule(nn.Module):
  """Yu & Koltun's context module (basic or large), identity-initialised. NHWC in, same shape out."""
  large: bool = False
  dilations: Sequence[int] = CONTEXT_DILATIONS
  init_noise: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout in the module.
    base = x.shape[-1]
    if self.large and len(self.dilations) > len(LARGE_MULTIPLIERS):
      raise ValueError(f"dilations: the large module defines {len(LARGE_MULTIPLIERS)} 3x3 layers, "
                       f"got {len(self.dilations)} dilations")
    for i, d in enumerate(self.dilations):
      c = base * LARGE_MULTIPLIERS[i] if self.large else base
      x = conv(c, 3, padding=int(d), dilation=int(d), kernel_init=_identity_init(base, self.init_noise),
               name=f"ctx_conv{i + 1}", dtype=self.dtype)(x)
      x = nn.relu(x)
    return conv(base, 1, kernel_init=_identity_init(base, self.init_noise), name="ctx_final",
                dtype=self.dtype)(x)


class DilatedFrontEnd(nn.Module):
  """Yu & Koltun's front-end. `__call__(x, train, upsample=True)`: logits at input (or 1/8) resolution."""
  num_classes: int = 21
  width: float = 1.0
  fc_channels: int = 4096
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs

  @nn.compact
  def __call__(self, x, train: bool = False, upsample: bool = True):
    from dense_jax.ops import resize_bilinear
    x = normalise_images(x, self.input_norm)
    check_image(x, multiple=8, why="the front-end's output stride is 8")
    trunk = VGG16(width=self.width, pools=(True, True, True, False, False), dtype=self.dtype, name="backbone")
    h = trunk(x, train)["pool5"]
    d = trunk.output_dilation  # 4: fc6 sees the same image extent as in the strided VGG.
    fc = scaled(self.fc_channels, self.width)
    h = conv(fc, 7, padding=3 * d, dilation=d, name="fc6", dtype=self.dtype)(h)
    h = torch_like_dropout(self.dropout_rate, train)(nn.relu(h))
    h = conv(fc, 1, name="fc7", dtype=self.dtype)(h)
    h = torch_like_dropout(self.dropout_rate, train)(nn.relu(h))
    h = conv(self.num_classes, 1, name="final", dtype=self.dtype)(h)
    return {"semantic": resize_bilinear(h, x.shape[1:3]) if upsample else h}


class DilatedContext(nn.Module):
  """Front-end + context module on its 1/8-resolution scores, then bilinear ×8 to the input size."""
  num_classes: int = 21
  width: float = 1.0
  fc_channels: int = 4096
  large: bool = True
  dilations: Sequence[int] = CONTEXT_DILATIONS
  init_noise: float = 1e-3
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  input_norm: str = "imagenet"   # see dense_jax.models.inputs

  @nn.compact
  def __call__(self, x, train: bool = False):
    from dense_jax.ops import resize_bilinear
    h = DilatedFrontEnd(self.num_classes, self.width, self.fc_channels, self.dropout_rate, self.dtype,
                        input_norm=self.input_norm, name="frontend")(x, train, upsample=False)["semantic"]
    h = ContextModule(self.large, self.dilations, self.init_noise, self.dtype, name="context")(h, train)
    return {"semantic": resize_bilinear(h, x.shape[1:3])}


@register_model("dilated_frontend")
def dilated_frontend(**kw) -> DilatedFrontEnd:
  return DilatedFrontEnd(**kw)


@register_model("dilated_context")
def dilated_context(**kw) -> DilatedContext:
  return DilatedContext(**kw)


@register_model("dilated_frontend_narrow")
def dilated_frontend_narrow(**kw) -> DilatedFrontEnd:
  return DilatedFrontEnd(**{"width": 0.125, **kw})


@register_model("dilated_context_narrow")
def dilated_context_narrow(**kw) -> DilatedContext:
  return DilatedContext(**{"width": 0.125, **kw})
