"""Variables for a model without running `model.init`: shapes from `jax.eval_shape`, values from NumPy.

Compiling `model.init` means compiling one threefry PRNG program per parameter, which costs seconds
on a loaded 2-core CPU; tests and benchmarks that only need plausible weights use this instead.
Kernels get He-normal values N(0, 2 / fan_in) (fan_in = all axes but the last), so activations keep
their scale through ReLU stacks; biases 0; BatchNorm scale 1, offset 0, mean 0, var 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, shape, seed: int = 0, dtype=jnp.float32, **init_kwargs):
  """Variables shaped like `model.init(key, zeros(shape), train=False, **init_kwargs)`, filled by NumPy."""
  x = jax.ShapeDtypeStruct(tuple(shape), dtype)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False, **init_kwargs), x)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name in ("scale", "var"):
      value = np.ones(leaf.shape)
    elif leaf.ndim >= 2:
      fan_in = math.prod(leaf.shape[:-1])
      value = rng.normal(0.0, math.sqrt(2.0 / fan_in), leaf.shape)
    else:
      value = np.zeros(leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)
