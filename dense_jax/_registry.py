"""`NamedRegistry`: the one mechanism behind `register_model`/`get_model` and `register_task`/`get_task`.

Entries are classes or factories registered by name with a decorator; `build(name, **kwargs)` calls
the entry. Every module below `package` (except private `_*` modules and those in `skip`) is imported on
the first lookup, so an entry registers itself simply by living in that package; a module that fails to
import is remembered and named in the error for an unknown name, instead of hiding the other entries.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable


class NamedRegistry:
  """Entries of one `kind` ('model', 'task') found in the package `package`."""

  def __init__(self, kind: str, package: str, skip: tuple[str, ...] = ()):
    self.kind = kind
    self.package = package
    self.skip = skip
    self.entries: dict[str, Callable[..., Any]] = {}
    self.import_errors: dict[str, str] = {}   # module -> error, for modules that failed to import
    self._imported = False

  def decorator(self, name: str):
    """A decorator registering a class or factory under `name` and returning it unchanged.
    Re-registering an object of the same qualified name is allowed (reloading a module is harmless);
    another object under a taken name is an error."""
    if not isinstance(name, str) or not name:
      raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def register(cls_or_factory: Callable[..., Any]):
      previous = self.entries.get(name)
      if previous is not None and getattr(previous, "__qualname__", None) != getattr(
          cls_or_factory, "__qualname__", object()):
        raise ValueError(f"{self.kind} name {name!r} is already registered to {previous!r}")
      self.entries[name] = cls_or_factory
      return cls_or_factory

    return register

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

  def build(self, name: str, /, **kwargs):
    """Calls the entry registered as `name` with `kwargs`; an unknown name lists the known ones (and the
    modules that could not be imported), bad arguments name the entry."""
    self._import_package()
    if name not in self.entries:
      broken = "".join(f"\n  {m} failed to import: {err}" for m, err in self.import_errors.items())
      raise ValueError(f"{self.kind}: expected one of {sorted(self.entries)}, got {name!r}"
                       + (f"; modules that could not be imported (their {self.kind}s are missing):{broken}"
                          if broken else ""))
    try:
      return self.entries[name](**kwargs)
    except TypeError as e:
      raise ValueError(f"{self.kind} {name!r}: bad arguments {sorted(kwargs)}: {e}") from e
