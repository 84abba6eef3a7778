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

import importlib
import pkgutil
from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., Any]] = {}
_MODULES_IMPORTED = False
_IMPORT_ERRORS: dict[str, str] = {}


def register_task(name: str):
  """Decorator registering a Task class or factory under `name` (re-registering an object of the same
  qualified name is allowed, so reloading a module is harmless; another object under a taken name is an
  error)."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"name: expected a non-empty string, got {name!r}")

  def decorator(cls_or_factory):
    previous = _REGISTRY.get(name)
    if previous is not None and getattr(previous, "__qualname__", None) != getattr(
        cls_or_factory, "__qualname__", object()):
      raise ValueError(f"task name {name!r} is already registered to {previous!r}")
    _REGISTRY[name] = cls_or_factory
    if isinstance(cls_or_factory, type) and "default_name" not in vars(cls_or_factory):
      cls_or_factory.default_name = name
    return cls_or_factory

  return decorator


def _import_modules() -> None:
  global _MODULES_IMPORTED
  if _MODULES_IMPORTED:
    return
  _MODULES_IMPORTED = True
  package = importlib.import_module("dense_jax.tasks")
  for info in pkgutil.walk_packages(package.__path__, prefix="dense_jax.tasks."):
    if info.name.rsplit(".", 1)[-1].startswith("_") or info.name in (__name__, "dense_jax.tasks.base"):
      continue
    try:
      importlib.import_module(info.name)
    except Exception as e:  # pylint: disable=broad-except  # one broken task must not hide the others
      _IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e}"


def available_tasks() -> list[str]:
  """Sorted names of every registered task."""
  _import_modules()
  return sorted(_REGISTRY)


def get_task(name: str, /, **kwargs):
  """Builds the task registered as `name` with `kwargs`; an unknown name lists the known ones."""
  _import_modules()
  if name not in _REGISTRY:
    broken = "".join(f"\n  {m} failed to import: {err}" for m, err in _IMPORT_ERRORS.items())
    raise ValueError(f"task: expected one of {sorted(_REGISTRY)}, got {name!r}"
                     + (f"; modules that could not be imported (their tasks are missing):{broken}" if broken else ""))
  try:
    return _REGISTRY[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"task {name!r}: bad arguments {sorted(kwargs)}: {e}") from e
