"""Shared input handling of the dense metrics: NumPy (exact, float64 on the host) or JAX (jit-able).

A metric called on concrete arrays (NumPy, or JAX arrays outside `jit`) validates the values and
computes in float64 NumPy; called on tracers (inside `jit`) it computes with `jax.numpy` in the
input's float precision and cannot check values (only shapes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(*xs) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in xs if x is not None)


def backend(*xs):
  """(xp, traced): `jax.numpy` under tracing, else NumPy (the inputs are then converted to float64)."""
  return (jnp, True) if is_traced(*xs) else (np, False)


def as_float(x, xp):
  return jnp.asarray(x, jnp.float32) if xp is jnp else np.asarray(x, np.float64)


def check_shape(x, shape: tuple, name: str, what: str) -> None:
  if tuple(np.shape(x)) != tuple(shape):
    raise ValueError(f"{name}: expected shape {tuple(shape)} ({what}), got {tuple(np.shape(x))}")


def as_valid(valid, default, shape, xp, name: str = "valid"):
  """`valid` as a boolean array of `shape` (checked), or `default` when None."""
  if valid is None:
    return default
  check_shape(valid, shape, name, "boolean mask like the labels")
  return xp.asarray(valid).astype(bool)
