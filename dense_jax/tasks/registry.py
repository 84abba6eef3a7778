"""Task registry: configs name a task by string, the engine builds it with `get_task`.

    @register_task("semantic")
    class SemanticTask(Task): ...

    task = get_task("semantic", info=dataset_info, weight=1.0)   # -> a dense_jax.tasks.Task

A registered entry is a `Task` subclass (or a factory returning a Task); `get_task(name, **kwargs)`
calls it with the keyword arguments (the engine passes `info=<the dataset's DatasetInfo>` plus the
config's task block, e.g. `config.tasks.semantic`). Every module in `dense_jax.tasks` is imported on
the first lookup, so a task registers itself by living in this package; a task defined elsewhere (an
experiment file, a test) registers itself when its module is imported.
"""

from __future__ import annotations

from dense_jax._registry import NamedRegistry

_TASKS = NamedRegistry("task", "dense_jax.tasks", skip=(__name__, "dense_jax.tasks.base"))


def register_task(name: str):
  """Decorator registering a Task class or factory under `name` (re-registering an object of the same
  qualified name is allowed, so reloading a module is harmless; another object under a taken name is an
  error). A class without its own `default_name` gets `name`."""
  register = _TASKS.decorator(name)

  def decorator(cls_or_factory):
    register(cls_or_factory)
    if isinstance(cls_or_factory, type) and "default_name" not in vars(cls_or_factory):
      cls_or_factory.default_name = name
    return cls_or_factory

  return decorator


def available_tasks() -> list[str]:
  """Sorted names of every registered task."""
  return _TASKS.available()


def get_task(name: str, /, **kwargs):
  """Builds the task registered as `name` with `kwargs`; an unknown name lists the known ones."""
  return _TASKS.build(name, **kwargs)
