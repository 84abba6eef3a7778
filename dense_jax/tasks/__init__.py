"""Tasks: one object per label type (loss, evaluation accumulator, TTA merge, drawing), by name.

    from dense_jax import tasks
    task = tasks.get_task("semantic", info=dataset_info)
    loss, metrics = task.loss(model_outputs, batch)

`Task` (in `base`) is the interface; `register_task(name)` / `get_task(name, **kw)` /
`available_tasks()` the registry (every module of this package registers itself on first lookup);
`build_tasks(config, info)` turns a config's `tasks` block into tasks.
"""

from dense_jax.tasks.base import Task, centre_crop, example_mask, host_accumulator
from dense_jax.tasks.build import DEFAULT_TASKS, build_tasks, check_outputs
from dense_jax.tasks.registry import available_tasks, get_task, register_task
