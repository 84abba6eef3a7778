"""Parameter counts and FLOPs per image of a model, from shapes only or from XLA's cost analysis.

- `count_params(tree)`: number of scalars in a pytree (e.g. `variables['params']`).
- `param_counts(model, shape)`: trainable parameters and other state (batch-norm statistics) of
  `model` for an input of `shape`, via `jax.eval_shape(model.init, ...)`: nothing is computed or
  allocated, so full-size models are counted in milliseconds.
- `inference_flops(model, shape)`: XLA's FLOP count of one jitted forward pass (`train=False`),
  `jax.jit(...).lower(...).compile().cost_analysis()['flops']`, divided by the batch size. XLA
  counts a multiply-add as 2 FLOPs (so GMACs = GFLOPs / 2, the unit many papers quote), and counts
  what the compiled program does on this backend — e.g. the zeros inserted by a textbook transposed
  convolution are counted if that form is chosen.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def count_params(tree) -> int:
  """Total number of scalars in the arrays (or ShapeDtypeStructs) of `tree`."""
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def abstract_variables(model, shape, dtype=jnp.float32):
  """`model.init` traced on an input of `shape`, returning ShapeDtypeStructs only (no compute)."""
  x = jax.ShapeDtypeStruct(tuple(shape), dtype)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def param_counts(model, shape=(1, 224, 224, 3)) -> dict[str, int]:
  """`{'params': trainable scalars, 'state': other collections (BN statistics), 'total': both}`."""
  variables = abstract_variables(model, shape)
  params = count_params(variables.get("params", {}))
  state = count_params({k: v for k, v in variables.items() if k != "params"})
  return {"params": params, "state": state, "total": params + state}


def inference_flops(model, shape=(1, 512, 512, 3), variables=None) -> float:
  """FLOPs of one forward pass per image (XLA's cost analysis of the compiled inference program)."""
  if variables is None:
    variables = abstract_variables(model, shape)
  x = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
  fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
  analysis = fn.lower(variables, x).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX returned one dict per device program.
    analysis = analysis[0]
  return float(analysis["flops"]) / shape[0]
