"""`NamedRegistry`: the one mechanism behind the model, task and dataset registries (`register_model`/
`get_model`, `register_task`/`get_task`, `data.sources.register_source`/`get_source`).

Entries (classes, factories, or any object) are registered by name, with `register(name, entry)` or the
`decorator(name)`. A name is taken once: registering the same entry again is allowed (reloading a module,
re-running a registration), another entry under a taken name is a ValueError. What counts as the same
entry is the registry's `same` rule (default: the same qualified name, so a reloaded class is the same).

Every module below `package` (except private `_*` modules and those in `skip`) is imported on the first
lookup, so an entry registers itself simply by living in that package; a module that fails to import is
remembered and named in the error for an unknown name, instead of hiding the other entries. A `fallback`
resolves names that are not registered (the dataset registry's `tfds:<name>`), or returns None.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


def callable_key(obj) -> tuple:
  """What identifies a class or factory across a module reload: its qualified name; for a
  `functools.partial`, its function's key with the bound arguments."""
  if isinstance(obj, functools.partial):
    return ("partial", callable_key(obj.func), obj.args, tuple(sorted(obj.keywords.items())))
  qualname = getattr(obj, "__qualname__", None)
  return ("object", id(obj)) if qualname is None else ("qualname", qualname)


def same_callable(previous, new) -> bool:
  """The default `same` rule: `previous` and `new` have the same `callable_key`."""
  return callable_key(previous) == callable_key(new)


class NamedRegistry:
  """Entries of one `kind` ('model', 'task', 'dataset') found in the package `package`.

  same: `(registered entry, new entry) -> bool`, whether re-registering a taken name is harmless.
  fallback: `name -> entry or None`, asked for names that are not registered.
  hint: appended to the unknown-name error (other names the lookup takes).
  """

  def __init__(self, kind: str, package: str, skip: tuple[str, ...] = (), *,
               same: Callable[[Any, Any], bool] = same_callable,
               fallback: Callable[[str], Any] | None = None, hint: str = ""):
    self.kind = kind
    self.package = package
    self.skip = skip
    self.same = same
    self.fallback = fallback
    self.hint = hint
    self.entries: dict[str, Any] = {}
    self.import_errors: dict[str, str] = {}   # module -> error, for modules that failed to import
    self._imported = False

  def register(self, name: str, entry):
    """Registers `entry` under `name` and returns it; ValueError for another entry under a taken name."""
    if not isinstance(name, str) or not name:
      raise ValueError(f"name: expected a non-empty string, got {name!r}")
    previous = self.entries.get(name)
    if previous is not None and not self.same(previous, entry):
      raise ValueError(f"{self.kind} name {name!r} is already registered to {previous!r}; register "
                       f"{entry!r} under another name")
    self.entries[name] = entry
    return entry

  def decorator(self, name: str):
    """A decorator registering a class or factory under `name` (see `register`) and returning it."""
    if not isinstance(name, str) or not name:
      raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return lambda cls_or_factory: self.register(name, cls_or_factory)

  def _import_package(self) -> None:
    if self._imported:
      return
    self._imported = True
    package = importlib.import_module(self.package)
    for info in pkgutil.walk_packages(package.__path__, prefix=self.package + "."):
      if info.name.rsplit(".", 1)[-1].startswith("_") or info.name in self.skip:
        continue
      try:
        importlib.import_module(info.name)
      except Exception as e:  # pylint: disable=broad-except  # one broken module must not hide the others
        self.import_errors[info.name] = f"{type(e).__name__}: {e}"

  def available(self) -> list[str]:
    """Sorted names of every registered entry."""
    self._import_package()
    return sorted(self.entries)

  def get(self, name: str):
    """The entry registered as `name` (or the fallback's); an unknown name lists the known ones (and the
    modules that could not be imported)."""
    self._import_package()
    if name in self.entries:
      return self.entries[name]
    entry = None if self.fallback is None else self.fallback(name)
    if entry is not None:
      return entry
    broken = "".join(f"\n  {m} failed to import: {err}" for m, err in self.import_errors.items())
    raise ValueError(f"{self.kind}: expected one of {sorted(self.entries)}, got {name!r}{self.hint}"
                     + (f"; modules that could not be imported (their {self.kind}s are missing):{broken}"
                        if broken else ""))

  def build(self, name: str, /, **kwargs):
    """Calls the entry registered as `name` with `kwargs` (see `get`); bad arguments name the entry."""
    entry = self.get(name)
    try:
      return entry(**kwargs)
    except TypeError as e:
      raise ValueError(f"{self.kind} {name!r}: bad arguments {sorted(kwargs)}: {e}") from e
