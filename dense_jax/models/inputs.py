"""Input normalisation, the one rule.

Every registered model takes images float `(B, H, W, 3)` in [0, 1] — what `dense_jax.data` yields,
unnormalised — and normalises them itself, first thing in its `__call__`, with
`normalise_images(images, self.input_norm)`. The model's field `input_norm` says how:

  'imagenet'  (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225), per RGB channel: the families whose
              weights `dense_jax.convert` imports from torchvision (VGG16 / ResNet encoders: FCN,
              FCN-ResNet, DeepLabV3, SegNet, DeconvNet, the dilated front-end and context network, Mask
              R-CNN / Keypoint R-CNN),
              because torchvision's weights were trained on images normalised so.
  'centred'   (x - 0.5) / 0.25: the ablation networks (trained from scratch; a zero-mean input of
              roughly unit spread).
  'none'      x as it is: the U-Net and the sliding-window classifier (trained from scratch; their
              first layers learn the scale, as in the papers).

So a caller never normalises: `model.apply(variables, images_in_0_1, train=...)` is right for every
model, including imported weights (tested: tests/models/test_inputs.py; the torchvision parity tests
feed torchvision the normalised image and our model the [0, 1] one).
"""

from __future__ import annotations

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NORMS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "centred": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    "none": None,
}


def normalise_images(images, mode: str):
  """`(images - mean) / std` of `mode` (see the module docstring) over the last (RGB) axis."""
  if mode not in INPUT_NORMS:
    raise ValueError(f"input_norm: expected one of {sorted(INPUT_NORMS)}, got {mode!r}")
  stats = INPUT_NORMS[mode]
  if stats is None:
    return images
  if images.shape[-1] != len(stats[0]):
    raise ValueError(f"images: expected {len(stats[0])} channels (RGB) for input_norm={mode!r}, got shape "
                     f"{images.shape}")
  mean = jnp.asarray(stats[0], images.dtype)
  std = jnp.asarray(stats[1], images.dtype)
  return (images - mean) / std


def denormalise_images(images, mode: str):
  """The inverse of `normalise_images`: `images * std + mean` (e.g. to feed a reference model's input
  to ours)."""
  if mode not in INPUT_NORMS:
    raise ValueError(f"input_norm: expected one of {sorted(INPUT_NORMS)}, got {mode!r}")
  stats = INPUT_NORMS[mode]
  if stats is None:
    return images
  return images * jnp.asarray(stats[1], images.dtype) + jnp.asarray(stats[0], images.dtype)
