"""Fast R-CNN box head on RoI features: torchvision's `TwoMLPHead` + `FastRCNNPredictor`.

  `box_head`:      flatten the (7, 7, C) RoI features → fc6 (1024) → ReLU → fc7 (1024) → ReLU
  `box_predictor`: `cls_score` (num_classes logits, class 0 = background) and `bbox_pred`
                   (4·num_classes deltas, class c's (dx, dy, dw, dh) at 4c .. 4c + 3)

The flattening is NHWC `(h, w, c)`; the importer permutes torchvision's NCHW-flattened fc6 weight to it.
Dense layers use `torch.nn.Linear`'s init (uniform ±1/sqrt(fan_in)); torchvision keeps it here.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models._common import Dtype

linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # U(±1/sqrt(fan_in))


def dense(features: int, name: str, dtype: Dtype) -> nn.Dense:
  return nn.Dense(features, kernel_init=linear_init, dtype=dtype, name=name)


class TwoMLPHead(nn.Module):
  """`(R, h, w, C) -> (R, representation)`: two fully connected layers with ReLU."""
  representation: int = 1024
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(dense(self.representation, "fc6", self.dtype)(x))
    return nn.relu(dense(self.representation, "fc7", self.dtype)(x))


class FastRCNNPredictor(nn.Module):
  """`(R, D) -> (class logits (R, num_classes), box deltas (R, num_classes, 4))`."""
  num_classes: int = 91
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    logits = dense(self.num_classes, "cls_score", self.dtype)(x)
    deltas = dense(4 * self.num_classes, "bbox_pred", self.dtype)(x)
    return logits, deltas.reshape(x.shape[0], self.num_classes, 4)
