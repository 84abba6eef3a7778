"""Argument checks every package shares; each raises a ValueError naming the argument, what was expected
and what was got.

Shape and type checks run at trace time. Value checks (`check_in_range`) read values only when they are
known on the host (`concrete`) and are skipped for tracers, so a checked function stays jit-able.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def check_rank(x, rank: int, name: str, layout: str = "") -> None:
  """Raise ValueError unless `x` has `rank` dimensions (`layout` e.g. 'NHWC' is quoted in the error)."""
  ndim = getattr(x, "ndim", None)
  if ndim != rank:
    what = f" ({layout})" if layout else ""
    raise ValueError(f"{name}: expected a rank-{rank} array{what}, got shape {getattr(x, 'shape', type(x))}")


def as_pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
  """An int or a pair of ints -> (h, w), each an int >= `minimum`."""
  if isinstance(value, (int,)) and not isinstance(value, bool):
    pair = (value, value)
  elif isinstance(value, Sequence) and len(value) == 2 and all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    pair = (int(value[0]), int(value[1]))
  else:
    raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
  if min(pair) < minimum:
    raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
  return pair


def check_channels(actual: int, expected: int, name: str) -> None:
  """Raise ValueError unless a channel count `actual` equals `expected`."""
  if actual != expected:
    raise ValueError(f"{name}: expected {expected} channels, got {actual}")


def as_pad_pairs(value, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
  """An int, a pair of ints `(ph, pw)` or a pair of `(lo, hi)` pairs -> `((lo_h, hi_h), (lo_w, hi_w))`,
  each an int >= 0."""
  def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)
  if is_int(value) or (isinstance(value, Sequence) and len(value) == 2 and all(is_int(v) for v in value)):
    ph, pw = as_pair(value, name, minimum=0)
    return (ph, ph), (pw, pw)
  if (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(
      isinstance(v, Sequence) and len(v) == 2 and all(is_int(u) for u in v) for v in value)):
    pairs = tuple((int(v[0]), int(v[1])) for v in value)
    if min(min(v) for v in pairs) < 0:
      raise ValueError(f"{name}: expected values >= 0, got {value!r}")
    return pairs  # type: ignore[return-value]
  raise ValueError(f"{name}: expected an int, a pair of ints or a pair of (lo, hi) pairs, got {value!r}")


def check_choice(value, choices: Sequence, name: str) -> None:
  """Raise ValueError unless `value` is one of `choices`."""
  if value not in tuple(choices):
    raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")


def concrete(x):
  """`x` as a NumPy array when its value is known here (NumPy, a Python number, a JAX array outside
  `jit`), else None (a tracer under `jit` / `vmap` / `grad`: its values cannot be checked, and checking
  them must not force a recompile). Value checks use this, so traced calls keep working unchanged."""
  if x is None or isinstance(x, jax.core.Tracer):
    return None
  try:
    return np.asarray(x)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


def check_floating(x, name: str) -> None:
  """Raise ValueError unless `x` has a floating dtype (ints would reach XLA and fail deep inside)."""
  dtype = getattr(x, "dtype", None)
  if dtype is None or not jax.numpy.issubdtype(dtype, jax.numpy.floating):
    raise ValueError(f"{name}: expected a floating dtype (float32, bfloat16, ...), got dtype {dtype}; cast it "
                     f"first, e.g. {name}.astype(jnp.float32)")


def check_in_range(x, low: int, high: int, name: str, what: str, hint: str = "") -> None:
  """Raise ValueError if the concrete values of `x` leave `[low, high)` (`what` says what they index);
  no check on tracers (see `concrete`)."""
  v = concrete(x)
  if v is None or v.size == 0:
    return
  bad = (v < low) | (v >= high)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" at index {first}" if v.ndim else ""
    raise ValueError(f"{name}: expected {what} in [{low}, {high}), got {v[first] if v.ndim else v.item()}{where} "
                     f"({int(bad.sum())} of {v.size} out of range; min {v.min()}, max {v.max()}){hint}")
