"""The U-Net of `dense_jax.models.unet` written in PyTorch (NCHW), for the speed benchmark and the
parity tests: same layers, same order, same parameter count; `load_flax_params` copies our weights in.

Only imported where torch is installed (`pytest.importorskip("torch")` in tests).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
  def __init__(self, cin: int, cout: int, padding: int, norm: bool):
    layers = []
    for c in (cin, cout):
      layers.append(nn.Conv2d(c, cout, 3, padding=padding, bias=not norm))
      if norm:
        layers.append(nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5))
      layers.append(nn.ReLU(inplace=True))
    super().__init__(*layers)


class Up(nn.Module):
  def __init__(self, cin: int, cout: int, mode: str):
    super().__init__()
    self.mode = mode
    if mode == "transposed":
      self.upconv = nn.ConvTranspose2d(cin, cout, 2, stride=2)
    else:
      self.proj = nn.Conv2d(cin, cout, 1)

  def forward(self, x):
    if self.mode == "transposed":
      return self.upconv(x)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    return self.proj(x)


def _centre_crop(x, size):
  dh, dw = (x.shape[2] - size[0]) // 2, (x.shape[3] - size[1]) // 2
  return x[:, :, dh:dh + size[0], dw:dw + size[1]]


class TorchUNet(nn.Module):
  """Arguments as `dense_jax.models.UNet` (norm: None or 'batch')."""

  def __init__(self, num_classes=2, width=64, depth=4, padding="valid", up="transposed", norm=None):
    super().__init__()
    pad, bn = (1 if padding == "same" else 0), norm == "batch"
    self.depth = depth
    chans = [width * 2 ** l for l in range(depth + 1)]
    self.down = nn.ModuleList([DoubleConv(3 if l == 0 else chans[l - 1], chans[l], pad, bn) for l in range(depth)])
    self.bottom = DoubleConv(chans[depth - 1], chans[depth], pad, bn)
    self.up = nn.ModuleList([Up(chans[l + 1], chans[l], up) for l in range(depth)])
    self.dec = nn.ModuleList([DoubleConv(2 * chans[l], chans[l], pad, bn) for l in range(depth)])
    self.head = nn.Conv2d(chans[0], num_classes, 1)

  def forward(self, x):
    skips = []
    for l in range(self.depth):
      x = self.down[l](x)
      skips.append(x)
      x = F.max_pool2d(x, 2)
    x = self.bottom(x)
    for l in reversed(range(self.depth)):
      x = self.up[l](x)
      x = torch.cat([_centre_crop(skips[l], x.shape[2:]), x], dim=1)
      x = self.dec[l](x)
    return self.head(x)


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, np.float32))  # a writable copy


def load_flax_params(net: TorchUNet, variables: dict) -> None:
  """Copies `dense_jax` U-Net variables (`{'params', 'batch_stats'}`) into `net`.

  Conv kernels HWIO → OIHW; transposed-conv kernels `(kh, kw, in, out)` → torch's `(in, out, kh, kw)`.
  """
  params, stats = variables["params"], variables.get("batch_stats", {})

  def conv(module: nn.Conv2d, p):
    module.weight.data = _t(np.transpose(p["kernel"], (3, 2, 0, 1)))
    if module.bias is not None:
      module.bias.data = _t(p["bias"])

  def double(seq: nn.Sequential, p, s):
    convs = [m for m in seq if isinstance(m, nn.Conv2d)]
    bns = [m for m in seq if isinstance(m, nn.BatchNorm2d)]
    for i, c in enumerate(convs):
      conv(c, p[f"conv{i}"])
    for i, b in enumerate(bns):
      b.weight.data, b.bias.data = _t(p[f"bn{i}"]["scale"]), _t(p[f"bn{i}"]["bias"])
      b.running_mean.data, b.running_var.data = _t(s[f"bn{i}"]["mean"]), _t(s[f"bn{i}"]["var"])

  for l in range(net.depth):
    double(net.down[l], params[f"down{l}"], stats.get(f"down{l}", {}))
    double(net.dec[l], params[f"dec{l}"], stats.get(f"dec{l}", {}))
    up, p = net.up[l], params[f"up{l}"]
    if up.mode == "transposed":
      k = np.asarray(p["upconv"]["kernel"])
      up.upconv.weight.data = _t(np.transpose(k, (2, 3, 0, 1)))
      up.upconv.bias.data = _t(p["upconv"]["bias"])
    else:
      conv(up.proj, p["proj"])
  double(net.bottom, params["bottom"], stats.get("bottom", {}))
  conv(net.head, params["head"])
