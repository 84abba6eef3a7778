"""Fixed-size balanced sampling of positives and negatives (torchvision's BalancedPositiveNegativeSampler).

Given labels `(N,)` (>= 1 positive, 0 negative, < 0 ignored, as torchvision's sampler reads them), draw

  num_pos = min(#positives, int(num_samples * positive_fraction))
  num_neg = min(#negatives, num_samples - num_pos)

uniformly without replacement: the RPN uses 256 anchors at 50 % positives, the box head 512 RoIs at 25 %.
The counts depend on the data but the shapes never do: every element gets a distinct random rank
(`jax.random.permutation`), selected positives get priority `2N + rank`, negatives `N + rank`, the rest
-1, and one `top_k` of size `num_samples` picks the sample. Selected positives come first (in random
order), then negatives, then padding. Two views of the same draw:

  balanced_sample(key, labels, num_samples, positive_fraction)
      -> indices int32 (num_samples,), is_positive bool, is_valid bool   (padding: index 0, both False)
  balanced_sample_mask(key, labels, num_samples, positive_fraction)
      -> positive bool (N,), negative bool (N,)                           (masks for dense losses)

Leading batch dimensions of `labels` are sampled independently (the key is split per row). Because the
positives come first, `indices[:int(num_samples * positive_fraction)]` holds every sampled positive:
the mask head can take just those slots.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax


def _check(labels, num_samples, positive_fraction):
  if getattr(labels, "ndim", 0) < 1:
    raise ValueError(f"labels: expected shape (..., N), got {getattr(labels, 'shape', type(labels))}")
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ValueError(f"num_samples: expected an int >= 1, got {num_samples!r}")
  if not 0.0 <= float(positive_fraction) <= 1.0:
    raise ValueError(f"positive_fraction: expected a number in [0, 1], got {positive_fraction!r}")


def _priorities(key, labels, num_samples, positive_fraction):
  """int32 `(N,)`: selected positives 2N + rank, negatives N + rank, others -1."""
  n = labels.shape[-1]
  max_pos = int(num_samples * positive_fraction)
  rank = jax.random.permutation(key, n).astype(jnp.int32)
  pos_rank = jnp.where(labels >= 1, rank, -1)
  if max_pos == 0:
    selected_pos = jnp.zeros_like(pos_rank, bool)
  elif max_pos >= n:
    selected_pos = pos_rank >= 0
  else:
    kth = lax.top_k(pos_rank, max_pos)[0][max_pos - 1]  # ranks are distinct: exactly min(#pos, max_pos)
    selected_pos = (pos_rank >= 0) & (pos_rank >= kth)
  return jnp.where(selected_pos, 2 * n + rank, jnp.where(labels == 0, n + rank, -1))


def _batched(fn, labels, key):
  lead = labels.shape[:-1]
  flat = labels.reshape(math.prod(lead), labels.shape[-1])
  keys = jax.random.split(key, flat.shape[0]) if lead else key[None]
  out = jax.vmap(fn)(keys, flat)
  return jax.tree_util.tree_map(lambda x: x.reshape(*lead, *x.shape[1:]), out)


@functools.partial(jax.jit, static_argnames=("num_samples", "positive_fraction"))
def balanced_sample(key, labels, num_samples: int, positive_fraction: float):
  """Indices of a balanced sample (see the module docstring).

  Args:
    key: a PRNG key.
    labels: int `(..., N)`: >= 1 positive, 0 negative, < 0 never sampled (ignored, padding).
    num_samples: static sample size (256 RPN, 512 box head).
    positive_fraction: at most `int(num_samples * positive_fraction)` positives.

  Returns:
    `(indices int32 (..., num_samples), is_positive bool, is_valid bool)`.
  """
  _check(labels, num_samples, positive_fraction)

  def one(k, lab):
    n = lab.shape[0]
    prio = _priorities(k, lab, num_samples, positive_fraction)
    if n < num_samples:
      prio = jnp.pad(prio, (0, num_samples - n), constant_values=-1)
    values, idx = lax.top_k(prio, num_samples)
    valid = values >= 0
    return jnp.where(valid, idx, 0).astype(jnp.int32), values >= 2 * n, valid

  return _batched(one, jnp.asarray(labels), key)


@functools.partial(jax.jit, static_argnames=("num_samples", "positive_fraction"))
def balanced_sample_mask(key, labels, num_samples: int, positive_fraction: float):
  """The same draw as `balanced_sample` (same key, same labels) as masks `(positive, negative)`, each bool
  `(..., N)`."""
  _check(labels, num_samples, positive_fraction)

  def one(k, lab):
    n = lab.shape[0]
    prio = _priorities(k, lab, num_samples, positive_fraction)
    if n <= num_samples:
      chosen = prio >= 0
    else:
      kth = lax.top_k(prio, num_samples)[0][num_samples - 1]
      chosen = (prio >= 0) & (prio >= kth)
    return chosen & (prio >= 2 * n), chosen & (prio < 2 * n)

  return _batched(one, jnp.asarray(labels), key)
