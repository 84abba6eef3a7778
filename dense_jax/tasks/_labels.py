"""Helpers the dense regression tasks share: which examples carry a label, and label maps at the
output's size.

Per-example label presence: a batch may carry `has_<label>` `(B,)` flags (the `<dataset>+one_label`
variants of `dense_jax.data.partial_labels` do: each training example keeps one label type); an
example with flag 0 — or `batch_mask` 0, the evaluation padding — contributes nothing to that task's
loss or accumulator. Without the flag every real example has the label.
"""

from __future__ import annotations

import jax.numpy as jnp

from dense_jax.tasks.base import example_mask


def presence_key(label: str) -> str:
  """The batch key of the per-example presence flag of `label` (e.g. `has_depth`)."""
  return f"has_{label}"


def presence_keys(info, label: str) -> tuple[str, ...]:
  """`('has_<label>',)` when the dataset `info` offers the flag, else `()`."""
  key = presence_key(label)
  return (key,) if info is not None and key in info.keys else ()


def has_label(batch, label: str, batch_size: int):
  """`(B,)` bool: real examples (`batch_mask`) that carry `label` (`has_<label>`, default all)."""
  mask = example_mask(batch, batch_size)
  key = presence_key(label)
  if key in batch:
    mask = mask & (jnp.asarray(batch[key]) > 0)
  return mask
