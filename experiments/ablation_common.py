"""Columns the ablation experiments add to their sweep reports (`describe(config) -> dict`).

    from experiments.ablation_common import model_columns
    def describe(config):
      return model_columns(config, rf_upto="classifier")

`model_columns(config)` builds the config's model as the trainer does (`dense_jax.tools.restore`) and
returns, without training anything:
  rf            theoretical receptive field of the model's output, input pixels
                (`dense_jax.tools.receptive_field.layer_table`; with `rf_upto`, after the last layer
                whose name contains it, e.g. 'classifier' = before the final up-sampling)
  params        trainable parameters
  gflops        XLA's FLOPs of one inference forward pass per image (`dense_jax.models.flops`;
                a multiply-add = 2 FLOPs), at the config's image size
  train_mb      memory of one compiled train step at the config's batch size (XLA's memory analysis:
                arguments + outputs + temporaries - aliased), MiB — what the step needs on the device
Step time is not here: the trainer logs `steps_per_sec` into metrics.jsonl, which the report shows.
Columns are cached per (model config, dataset, batch) in-process: the report calls describe per run.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections


def _key(config) -> str:
  tasks = config.get("tasks")
  return json.dumps({"model": config.model.to_dict(), "dataset": config.dataset.to_dict(),
                     "batch": config.batch_size, "steps": config.total_steps,
                     "dtype": config.get("compute_dtype", "float32"), "optimizer": config.optimizer.to_dict(),
                     "tasks": tasks.to_dict() if hasattr(tasks, "to_dict") else tasks},
                    sort_keys=True, default=str)


# The abstract training batch of the dense per-pixel tasks (the data contract, dense_jax.data.sources):
# key -> (trailing shape after (B, H, W), dtype); `has_<label>` presence flags are (B,) booleans.
_PIXEL_KEYS = {"image": ((3,), jnp.float32), "semantic": ((), jnp.int32), "depth": ((), jnp.float32),
               "normals": ((3,), jnp.float32)}


def abstract_batch(keys, batch_size: int, image_size) -> dict:
  """`{key: ShapeDtypeStruct}` of a training batch with `keys` (image, semantic, depth, normals, has_*)."""
  batch = {}
  for key in keys:
    if key.startswith("has_"):
      batch[key] = jax.ShapeDtypeStruct((batch_size,), jnp.bool_)
    elif key in _PIXEL_KEYS:
      trailing, dtype = _PIXEL_KEYS[key]
      batch[key] = jax.ShapeDtypeStruct((batch_size, *image_size, *trailing), dtype)
    else:
      raise ValueError(f"keys: expected batch keys among {sorted(_PIXEL_KEYS)} or has_*, got {key!r}")
  return batch


def train_step_memory_mb(config, model, image_size) -> float:
  """MiB of the compiled train step (E's `make_train_step`, with the config's tasks) for the config's
  global batch on one device."""
  # pylint: disable=g-import-not-at-top
  from dense_jax import data as data_lib
  from dense_jax.tasks import build as tasks_lib
  from dense_jax.tools import restore
  from dense_jax.train import config as config_lib, loop, optimizers
  config = config_lib.resolve(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.total_steps)
  state = restore.abstract_train_state(config, model, image_size)
  tasks = tasks_lib.build_tasks(config.tasks, data_lib.dataset_info(config.dataset.name))
  batch = abstract_batch(tasks_lib.batch_keys(tasks), config.batch_size, image_size)
  step = jax.jit(loop.make_train_step(model, tx, schedule, False, tasks), donate_argnums=(0,))
  m = step.lower(state, batch).compile().memory_analysis()
  if m is None:
    return float("nan")
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return total / 2 ** 20


@functools.lru_cache(maxsize=64)
def _columns(key: str, rf_upto: str | None, memory: bool, rf: bool = True) -> tuple:
  # pylint: disable=g-import-not-at-top
  import ml_collections

  from dense_jax.models import flops
  from dense_jax.tools import receptive_field as rf_lib, restore
  spec = json.loads(key)
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=spec["steps"], batch_size=spec["batch"], mesh_shape=(1, 1), log_every=1,
      eval_every=1, checkpoint_every=1, model=spec["model"], dataset=spec["dataset"], optimizer=spec["optimizer"],
      compute_dtype=spec["dtype"], **({"tasks": spec["tasks"]} if spec.get("tasks") else {})))
  model, _, image_size = restore.build_model(config)
  shape = (1, *image_size, 3)
  out = {}
  if rf:
    out["rf"], _ = rf_lib.final_receptive_field(rf_lib.layer_table(model, shape), rf_upto)
  out.update(params=flops.param_counts(model, shape)["params"], gflops=flops.inference_flops(model, shape) / 1e9)
  if memory:
    out["train_mb"] = train_step_memory_mb(config, model, image_size)
  return tuple(out.items())


def model_columns(config, rf_upto: str | None = None, memory: bool = True, rf: bool = True) -> dict:
  """The columns described in the module docstring for `config`'s model (without `rf` / `train_mb`
  when `rf` / `memory` is False: the layer table only sees flax modules, not a model's own `lax` calls)."""
  return dict(_columns(_key(config), rf_upto, memory, rf))


def set_training(config, *, quick: bool, steps: int, quick_steps: int, quick_checkpoint_every: int,
                 quick_batch: int = 16, full_batch: int = 32) -> None:
  """The training block the three ablations share: AdamW + cosine, one evaluation at the end in quick
  mode, and the accelerator schedule (20k steps) otherwise."""
  config.total_steps = steps or (quick_steps if quick else 20_000)
  config.batch_size = quick_batch if quick else full_batch
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=40 if quick else 500,
      weight_decay=1e-4, grad_clip_norm=1.0))
  config.log_every = 50 if quick else 100
  config.eval_every = config.total_steps if quick else 2000
  config.checkpoint_every = quick_checkpoint_every if quick else 2000
  config.keep_checkpoints = 1 if quick else 2
  config.num_figures = 4
  config.tensorboard = not quick
