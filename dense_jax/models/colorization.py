"""The colorization network of Zhang, Isola & Efros (ECCV 2016), "Colorful Image Colorization".

Input the lightness L of an image, output a distribution over Q quantized ab colours per pixel at 1/4
resolution (colorization as classification). Layout of the released Caffe model
(`colorization_deploy_v2.prototxt`), for an H×W input with sides divisible by 8:

  block  convs (3×3, ReLU each)                 stride / dilation          out size
  conv1  64, 64                                 last conv stride 2          H/2
  conv2  128, 128                               last conv stride 2          H/4
  conv3  256, 256, 256                          last conv stride 2          H/8
  conv4  512, 512, 512                          1                           H/8
  conv5  512, 512, 512                          dilation 2 (padding 2)      H/8
  conv6  512, 512, 512                          dilation 2 (padding 2)      H/8
  conv7  512, 512, 512                          1                           H/8
  conv8  4×4 transposed conv 256 (stride 2, padding 1), 256, 256 (3×3)     H/4
  conv8_Q  1×1 conv to Q logits (the "conv8_313" layer)                     H/4

Blocks 1–7 end with a batch normalisation *after* the ReLU and without learned scale or offset (Caffe's
`BatchNorm` layer with no `Scale`), statistics in `batch_stats`; block 8 has none. The network input is
`L - 50` (the training prototxt's mean subtraction). Parameters with Q = 313: 32,230,393 (the released
model's learned blobs; conv8_313 alone is 80,441) — tests/models/test_colorization.py checks that by layer
arithmetic. The fixed 313→2 "class8_ab" layer and the softmax temperature live in `decode_ab`, outside
the network, as the annealed mean of `dense_jax.data.color.AbBins.decode` (T = 0.38).

The figure of the paper (grayscale input / prediction / truth) is `figure_panels`.

`images` may be the L channel `(B, H, W, 1)` in [0, 100], or sRGB `(B, H, W, 3)` in [0, 1], from which the
model takes L itself (`rgb_to_lightness`, CIE L* of D65 sRGB, as `data.color.rgb_to_lab`), so the
engine can feed its usual `image`. Q defaults to the in-gamut bins of `data.color.gamut_bins()` (262);
pass `num_bins=313` for the paper's set. Returns `{"colorization": logits (B, H/4, W/4, Q)}`.
Not reproduced: the deep-supervision readouts the paper mentions on conv6–8 (not in the release).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dense_jax.data import color
from dense_jax.models._common import Dtype, check_image, conv, scaled
from dense_jax.models.registry import register_model
from dense_jax.nn import ConvTranspose
from dense_jax.ops.resize import resize_bilinear

# (channels, number of convs, stride of the last conv, dilation) of blocks 1-7.
BLOCKS = ((64, 2, 2, 1), (128, 2, 2, 1), (256, 3, 2, 1), (512, 3, 1, 1), (512, 3, 1, 2), (512, 3, 1, 2),
          (512, 3, 1, 1))
ANNEALED_MEAN_T = 0.38


def rgb_to_lightness(rgb):
  """CIE L* in [0, 100] `(..., 1)` of sRGB `(..., 3)` in [0, 1] (D65; the `data.color.rgb_to_lab` formulas).

  Y = 0.212671 R + 0.715160 G + 0.072169 B on linearised channels; L = 116 f(Y) - 16.
  """
  rgb = jnp.clip(rgb.astype(jnp.float32), 0.0, 1.0)
  lin = jnp.where(rgb <= 0.04045, rgb / 12.92, ((jnp.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4)
  y = lin @ jnp.asarray(color.SRGB_TO_XYZ[1], jnp.float32)   # the white's Y is 1
  delta = 6.0 / 29.0
  f = jnp.where(y > delta ** 3, jnp.cbrt(jnp.maximum(y, delta ** 3)), y / (3 * delta ** 2) + 4.0 / 29.0)
  return (116.0 * f - 16.0)[..., None]


def default_num_bins() -> int:
  """Q of the in-gamut ab bins of `data.color` (262)."""
  return len(color.gamut_bins())


class Colorization(nn.Module):
  """See the module docstring. `__call__(images, *, train) -> {"colorization": (B, H/4, W/4, Q)}`.

  Attributes:
    num_bins: Q (None: `default_num_bins()`).
    width: channel multiplier (the narrow CPU variant uses 1/8).
    input_norm: 'none' only (dense_jax.models.inputs): the input is converted to L, then L - 50.
  """
  num_bins: int | None = None
  width: float = 1.0
  input_norm: str = "none"   # [0, 1] sRGB (or L) taken as it is; the net centres L itself (L - 50)
  dtype: Dtype = jnp.float32

  def _bn(self, train, name):
    # Caffe's BatchNorm (moving averages, eps 1e-5) with no Scale layer after it: nothing to learn.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, use_scale=False,
                        use_bias=False, dtype=self.dtype, name=name)

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    check_image(images, "images", multiple=8, why="three stride-2 convolutions and a 2x transposed conv")
    if images.shape[-1] not in (1, 3):
      raise ValueError(f"images: expected L (B, H, W, 1) or sRGB (B, H, W, 3), got shape {images.shape}")
    if self.input_norm != "none":
      raise ValueError(f"input_norm: expected 'none' (the network centres L itself), got {self.input_norm!r}")
    q = default_num_bins() if self.num_bins is None else self.num_bins
    if q < 2:
      raise ValueError(f"num_bins: expected >= 2, got {q!r}")
    lightness = images if images.shape[-1] == 1 else rgb_to_lightness(images)
    x = (lightness - 50.0).astype(self.dtype)
    for b, (channels, n, stride, dilation) in enumerate(BLOCKS, start=1):
      for i in range(1, n + 1):
        x = conv(scaled(channels, self.width), 3, stride=stride if i == n else 1, padding=dilation,
                 dilation=dilation, name=f"conv{b}_{i}", dtype=self.dtype)(x)
        x = nn.relu(x)
      x = self._bn(train, f"conv{b}_norm")(x)
    x = ConvTranspose(scaled(256, self.width), 4, stride=2, padding=1, dtype=self.dtype,
                      kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                      name="conv8_1")(x)
    x = nn.relu(x)
    for i in (2, 3):
      x = nn.relu(conv(scaled(256, self.width), 3, padding=1, name=f"conv8_{i}", dtype=self.dtype)(x))
    return {"colorization": conv(q, 1, name="conv8_bins", dtype=self.dtype)(x)}


def decode_ab(logits, bins: color.AbBins | None = None, temperature: float = ANNEALED_MEAN_T,
              size: tuple[int, int] | None = None) -> np.ndarray:
  """ab `(B, h, w, 2)` float64 from logits `(B, h, w, Q)`: softmax, then the annealed mean
  `AbBins.decode` (E[ab] under p^(1/T), renormalised); bilinearly resized to `size = (H, W)` when given
  (the release upsamples the 1/4 map to the input). Host-side NumPy, not jit-able.

  Combine with the input L (`np.concatenate([L, ab], -1)`) and `data.color.lab_to_rgb` for a picture.
  """
  bins = color.AbBins() if bins is None else bins
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 4 or logits.shape[-1] != bins.num_bins:
    raise ValueError(f"logits: expected (B, h, w, {bins.num_bins}) for {bins.num_bins} bins, got "
                     f"shape {logits.shape}")
  z = logits - logits.max(-1, keepdims=True)
  probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  ab = bins.decode(probs, temperature)
  if size is not None and tuple(size) != ab.shape[1:3]:
    ab = np.asarray(resize_bilinear(jnp.asarray(ab, jnp.float32), tuple(size)), np.float64)
  return ab


@register_model("colorization")
def colorization(**kw) -> Colorization:
  kw.pop("num_classes", None)   # the config builder's dataset default: colorization has no classes
  return Colorization(**kw)


@register_model("colorization_narrow")
def colorization_narrow(**kw) -> Colorization:
  """1/8 width (8 … 64 channels): the CPU variant."""
  kw.pop("num_classes", None)
  return Colorization(**{"width": 0.125, **kw})


def figure_panels(lightness, logits, ab_true, bins: color.AbBins | None = None,
                  temperature: float = ANNEALED_MEAN_T) -> list[tuple[str, np.ndarray]]:
  """The paper's figure for one image: `[("grayscale input", ...), ("prediction", ...), ("truth", ...)]`,
  each `(H, W, 3)` uint8 sRGB.

  Args: `lightness (H, W, 1)` in [0, 100]; `logits (H/4, W/4, Q)` (one image of the model's output);
  `ab_true (H, W, 2)`. The prediction is the annealed mean (`decode_ab`) upsampled to H×W on the input L.
  """
  lightness, ab_true = np.asarray(lightness, np.float64), np.asarray(ab_true, np.float64)
  if lightness.ndim != 3 or lightness.shape[-1] != 1:
    raise ValueError(f"lightness: expected (H, W, 1), got shape {lightness.shape}")
  if ab_true.shape != lightness.shape[:2] + (2,):
    raise ValueError(f"ab_true: expected {lightness.shape[:2] + (2,)}, got shape {ab_true.shape}")
  ab = decode_ab(np.asarray(logits)[None], bins, temperature, size=lightness.shape[:2])[0]
  to_rgb = lambda ab_map: (color.lab_to_rgb(np.concatenate([lightness, ab_map], -1)) * 255 + 0.5).astype(np.uint8)
  return [("grayscale input", to_rgb(np.zeros_like(ab))), ("prediction", to_rgb(ab)), ("truth", to_rgb(ab_true))]
