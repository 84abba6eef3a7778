"""The trainer's train step, `make_train_step(model, tx, schedule, spatial, tasks)`, on its own.

Kept apart from `dense_jax.train.loop` so that the step imports only jax, optax, the model and task
code and the sharding helpers: benchmarks run the trainer's exact step on machines without the input
pipeline's and the checkpointer's packages (tensorflow, grain, ml_collections, orbax, pycocotools).
`dense_jax.train.loop` re-exports it.
"""

from __future__ import annotations

import jax
import optax

from dense_jax import tasks as tasks_lib
from dense_jax.models import build as build_lib
from dense_jax.tasks import build as task_build
from dense_jax.train import sharding as sharding_lib
from dense_jax.train.state import TrainState


def output_constraint(spatial: bool):
  """Pins every NHWC output to the batch layout when spatially partitioned (identity otherwise)."""
  return lambda x: sharding_lib.constrain_spatial(x, spatial and getattr(x, "ndim", 0) == 4)


def make_train_step(model, tx, schedule, spatial: bool, tasks: dict | None = None):
  """The pure train step `(state, batch) -> (state, metrics)` (not yet jitted): the tasks' weighted
  loss (`dense_jax.tasks.build.total_loss`; default one semantic task), its gradient, one optimizer
  update."""
  constrain = output_constraint(spatial)
  tasks = {"semantic": tasks_lib.get_task("semantic", name="semantic")} if tasks is None else tasks

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      outputs, new_vars = build_lib.apply_model(model, variables, batch["image"], train=True, batch=batch,
                                                mutable=["batch_stats"], rngs={"dropout": rng})
      outputs = {k: constrain(v) for k, v in outputs.items()}
      loss, task_metrics = task_build.total_loss(tasks, outputs, batch)
      return loss, (new_vars.get("batch_stats", state.batch_stats), task_metrics)

    (loss, (batch_stats, task_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step),
               **task_metrics}
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step
