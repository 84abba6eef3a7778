"""Region Proposal Network head (Ren et al., 2015), torchvision's `RPNHead` (one conv layer).

Shared over the FPN levels: 3×3 conv (`channels`, bias) → ReLU → two 1×1 convs,
  `cls_logits`: A objectness logits per position,
  `bbox_pred`:  4·A box deltas per position (anchor a's (dx, dy, dw, dh) in channels 4a .. 4a + 3),
where A = anchors per position (3 aspect ratios). Channels are ordered anchor-major as torchvision's, so
flattening an NHWC map `(N, H, W, A)` gives the (y, x, anchor) order of its anchors. Init: normal with
std 0.01, zero bias (torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype, conv

normal_001 = nn.initializers.normal(0.01)


class RPNHead(nn.Module):
  """`__call__([maps (N, H_l, W_l, C)]) -> ([logits (N, H_l, W_l, A)], [deltas (N, H_l, W_l, 4A)])`."""
  num_anchors: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence):
    if not features:
      raise ValueError("features: expected at least one feature map, got none")
    channels = features[0].shape[-1]
    shared = conv(channels, 3, padding=1, name="conv", dtype=self.dtype, kernel_init=normal_001)
    cls = conv(self.num_anchors, 1, name="cls_logits", dtype=self.dtype, kernel_init=normal_001)
    box = conv(4 * self.num_anchors, 1, name="bbox_pred", dtype=self.dtype, kernel_init=normal_001)
    logits, deltas = [], []
    for x in features:
      h = nn.relu(shared(x))
      logits.append(cls(h))
      deltas.append(box(h))
    return logits, deltas
