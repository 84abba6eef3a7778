"""The train state: every array a step reads and writes, as one pytree (jit-, shard- and save-able).

    TrainState(step: int32 [], params, batch_stats, opt_state, rng: uint32 [2])

`params` and `batch_stats` are the model's `params` and `batch_stats` collections (an empty dict for a
model without batch norm); `opt_state` is optax's; `rng` is a raw `jax.random.PRNGKey` (uint32 pair,
so checkpoints need no typed-key support); a step draws its randomness as `fold_in(rng, step)`, which
makes the stream independent of where a run was stopped and resumed. Nothing static (the model, the
optimizer) lives in the state: those are rebuilt from the config.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array

  def variables(self) -> dict:
    """The model's variables for `model.apply` (no `batch_stats` collection when there is none)."""
    out = {"params": self.params}
    if self.batch_stats:
      out["batch_stats"] = self.batch_stats
    return out


def init_train_state(model, tx: optax.GradientTransformation, rng: jax.Array, sample_images) -> TrainState:
  """Initialises parameters with `rng` (split: one key for the weights, one kept for the steps).

  `sample_images`: an array (or ShapeDtypeStruct) of the training image shape, used only for shapes.
  Pure, so it can be `jax.jit`-ed with `out_shardings` to create the state directly sharded.
  """
  init_rng, step_rng = jax.random.split(rng)
  images = jnp.zeros(sample_images.shape, sample_images.dtype)
  variables = model.init({"params": init_rng, "dropout": init_rng}, images, train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), rng=step_rng)
