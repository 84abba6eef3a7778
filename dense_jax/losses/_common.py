"""Private helpers the dense-label losses (depth, normals, colorization) share.

Masking convention: `valid (B, H, W)` marks the pixels that carry the label (each loss derives a default
from the label itself, e.g. the data contract's "0 = invalid"), `example_mask (B,)` the examples that
carry it at all (multi-task batches where each example has only some labels; evaluation padding). A
masked pixel contributes nothing: its prediction is replaced by a harmless constant before any log,
division or normalisation, so its gradient is exactly 0 (never 0 * NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _label_mask(valid, default, example_mask, shape, name="valid"):
  """`valid & example_mask[:, None, None]` as bool (B, H, W), `default` when `valid` is None."""
  if valid is None:
    mask = default
  else:
    if tuple(valid.shape) != tuple(shape):
      raise ValueError(f"{name}: expected a boolean mask of shape {tuple(shape)}, got {tuple(valid.shape)}")
    mask = jnp.asarray(valid).astype(bool)
  if example_mask is not None:
    if tuple(jnp.shape(example_mask)) != (shape[0],):
      raise ValueError(f"example_mask: expected shape ({shape[0]},) (one flag per example), got "
                       f"{tuple(jnp.shape(example_mask))}")
    mask = mask & (jnp.asarray(example_mask) > 0)[:, None, None]
  return mask


def _concrete(x) -> bool:
  """Whether `x`'s values are known here (not a tracer), so a value check can read them."""
  return not isinstance(x, jax.core.Tracer)
