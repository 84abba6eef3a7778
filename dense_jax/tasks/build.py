"""A config's `tasks` block -> Task objects, with every check that can run before compiling.

    config.tasks = {"semantic": {"weight": 1.0}}                       # the default
    config.tasks = {"semantic": {"weight": 1.0}, "depth": {"weight": 0.1, "max_depth": 10.0}}

Each key names a task and is the key of the model output it reads; the block's `weight` (default 1.0,
finite, >= 0) weights its loss in the train loss (the weighted sum), the optional `task` names the
registered task type when it differs from the key, and the block's other keys go to the task's
constructor (with `info=<the dataset's DatasetInfo>`).
"""

from __future__ import annotations

from typing import Any

from dense_jax.tasks.registry import available_tasks, get_task

DEFAULT_TASKS = {"semantic": {"weight": 1.0}}


def _as_dict(block) -> dict:
  if block is None:
    return {}
  if hasattr(block, "to_dict"):
    return block.to_dict()
  if not isinstance(block, dict):
    raise ValueError(f"expected a dict of task settings, got {type(block).__name__} {block!r}")
  return dict(block)


def build_tasks(tasks_config, info) -> dict[str, Any]:
  """`{name: Task}` for `tasks_config` (`config.tasks`, None = `DEFAULT_TASKS`) on the dataset `info`.

  ValueError, naming the task, for: an unknown task (listing the registered ones), a negative or
  non-finite weight, weight 0 for every task (a loss of 0 trains nothing; one task of several may have
  weight 0, e.g. to evaluate it only), a task whose batch keys the dataset lacks (listing what it
  offers), bad arguments.
  """
  blocks = _as_dict(tasks_config) if tasks_config is not None else DEFAULT_TASKS
  if not blocks:
    raise ValueError(f"config.tasks: expected at least one task (e.g. {DEFAULT_TASKS}), got none")
  tasks = {}
  for name, block in blocks.items():
    try:
      kwargs = _as_dict(block)
    except ValueError as e:
      raise ValueError(f"config.tasks.{name}: {e}") from None
    kind = kwargs.pop("task", name)
    if kind not in available_tasks():
      raise ValueError(f"config.tasks.{name}: unknown task {kind!r}; registered tasks: {available_tasks()}")
    kwargs.setdefault("weight", 1.0)
    task = get_task(kind, info=info, name=name, **kwargs)
    task.check_dataset(info)
    tasks[name] = task
  if all(task.weight == 0 for task in tasks.values()):   # the train loss would be 0: nothing learns
    if len(tasks) == 1:
      name = next(iter(tasks))
      raise ValueError(f"config.tasks.{name}.weight: expected a weight > 0 for the only task (the train loss "
                       f"is weight * loss, so nothing would learn), got 0")
    raise ValueError(f"config.tasks: expected at least one task with weight > 0 (the train loss is the "
                     f"weighted sum, so nothing would learn), got weight 0 for every task {sorted(tasks)}")
  return tasks


def check_outputs(tasks: dict, outputs, model_name: str) -> None:
  """ValueError unless the model's outputs (e.g. from `jax.eval_shape`) have an entry for every task."""
  for task in tasks.values():
    task.check_outputs(outputs, model_name)


def batch_keys(tasks: dict) -> tuple[str, ...]:
  """`('image', <every task's batch keys in order, without repeats>)`."""
  keys = ["image"]
  for task in tasks.values():
    keys += [k for k in task.batch_keys if k not in keys]
  return tuple(keys)


def pixel_keys(tasks: dict) -> tuple[str, ...]:
  """`('image', <every task's per-pixel keys>)`: the batch entries whose second axis is the height."""
  keys = ["image"]
  for task in tasks.values():
    keys += [k for k in task.pixel_keys if k not in keys]
  return tuple(keys)


def total_loss(tasks: dict, outputs: dict, batch: dict):
  """`(sum_t weight_t * loss_t, {'loss/<task>': loss_t, <each task's aux metrics>})` (jit-able).
  ValueError (at trace time) if two tasks report the same metric key."""
  total = 0.0
  metrics = {}
  for name, task in tasks.items():
    loss, aux = task.loss(outputs, batch)
    total = total + task.weight * loss
    for key, value in {f"loss/{name}": loss, **aux}.items():
      if key in metrics:
        raise ValueError(f"config.tasks.{name}: reports the train metric {key!r}, which another task "
                         f"already reports")
      metrics[key] = value
  return total, metrics
