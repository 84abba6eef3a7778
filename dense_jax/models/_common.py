"""Small pieces shared by the model-zoo families: PyTorch-style conv/BN, width scaling, input checks.

Conventions: activations NHWC, conv kernels HWIO `(kh, kw, in, out)`; transposed convs
and FCN's bilinear upsamplers are `dense_jax.nn.ConvTranspose` / `BilinearUpsample`.

Convolutions use *symmetric* integer padding like `torch.nn.Conv2d(padding=p)` (not XLA's 'SAME',
which pads (0, 1) for a stride-2 conv on an even input), so imported torchvision weights reproduce
torchvision's outputs. Initialisers follow torchvision (`kaiming_normal_(mode='fan_out')` for convs).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dense_jax.checks import check_rank
from dense_jax.nn.conv import Conv

# torchvision: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu") -> N(0, 2 / fan_out).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

Dtype = Any


def scaled(channels: int, width: float) -> int:
  """Channel count `channels · width`, rounded, at least 1 (the width multiplier of the narrow variants)."""
  if width <= 0:
    raise ValueError(f"width: expected a multiplier > 0, got {width!r}")
  return max(1, int(round(channels * width)))


def conv(features: int, kernel: int, *, stride: int = 1, padding: int = 0, dilation: int = 1,
         use_bias: bool = True, name: str | None = None, dtype: Dtype = jnp.float32,
         kernel_init=kaiming_fan_out) -> Conv:
  """`torch.nn.Conv2d(in, features, kernel, stride, padding, dilation, bias=use_bias)` as
  `dense_jax.nn.Conv` (parameters `kernel`, `bias` as in `flax.linen.Conv`).

  Output size per axis: `(H + 2·padding - dilation·(kernel - 1) - 1) // stride + 1`.
  """
  return Conv(features, kernel, stride=stride, padding=padding, dilation=dilation, use_bias=use_bias,
              dtype=dtype, kernel_init=kernel_init, name=name)


def batch_norm(train: bool, *, name: str | None = None, frozen: bool | str = False,
               dtype: Dtype = jnp.float32) -> nn.Module:
  """`torch.nn.BatchNorm2d` defaults (momentum 0.1 → flax 0.9, eps 1e-5); batch statistics in training.

  `frozen=True` always normalises with the running statistics (and never updates them), the usual
  choice when fine-tuning a pretrained backbone with small per-device batches. `frozen="buffers"` is
  torchvision's `FrozenBatchNorm2d`: the affine terms are constants too (`FrozenBatchNorm`), so they
  are not trainable parameters (the detection models' pretrained builds count them so).
  """
  if frozen == "buffers":
    return FrozenBatchNorm(dtype=dtype, name=name)
  if frozen not in (True, False):
    raise ValueError(f"frozen: expected True, False or 'buffers', got {frozen!r}")
  return nn.BatchNorm(use_running_average=frozen or not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


class FrozenBatchNorm(nn.Module):
  """torchvision's `FrozenBatchNorm2d`: `y = (x - mean) · scale / sqrt(var + eps) + bias` with all four
  vectors in the `batch_stats` collection (constants: never trained, never updated); eps 1e-5.

  Variable names equal `nn.BatchNorm`'s (`scale`, `bias`, `mean`, `var`), only the collection differs.
  """
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    stat = lambda name, value: self.variable("batch_stats", name, lambda: jnp.full((c,), value, jnp.float32)).value
    scale, bias, mean, var = stat("scale", 1.0), stat("bias", 0.0), stat("mean", 0.0), stat("var", 1.0)
    # Folded into one multiply-add, as torchvision does.
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    add = bias - mean * mul
    return (x * mul.astype(self.dtype) + add.astype(self.dtype)).astype(self.dtype)


def check_image(x, name: str = "x", *, multiple: int = 1, min_size: int = 1, why: str = "") -> None:
  """ValueError unless `x` is NHWC with height and width divisible by `multiple` and >= `min_size`."""
  check_rank(x, 4, name, "NHWC")
  h, w = x.shape[1], x.shape[2]
  reason = f" ({why})" if why else ""
  if h % multiple or w % multiple:
    raise ValueError(f"{name}: expected height and width divisible by {multiple}{reason}, got "
                     f"{h}x{w} (shape {tuple(x.shape)})")
  if min(h, w) < min_size:
    raise ValueError(f"{name}: expected height and width >= {min_size}{reason}, got {h}x{w} "
                     f"(shape {tuple(x.shape)})")


def crop(x, offset: tuple[int, int], size: tuple[int, int], name: str = "x"):
  """`x[:, oh:oh + H, ow:ow + W]` (Caffe's Crop layer), ValueError if `x` is too small for it."""
  (oh, ow), (h, w) = offset, size
  if oh < 0 or ow < 0 or x.shape[1] < oh + h or x.shape[2] < ow + w:
    raise ValueError(f"{name}: cannot crop {h}x{w} at offset {(oh, ow)} from a map of "
                     f"{x.shape[1]}x{x.shape[2]}")
  return x[:, oh:oh + h, ow:ow + w]


def torch_like_dropout(rate: float, train: bool, name: str | None = None) -> nn.Dropout:
  """`torch.nn.Dropout(rate)`: active only in training (needs the 'dropout' PRNG stream then)."""
  return nn.Dropout(rate, deterministic=not train or rate == 0.0, name=name)
