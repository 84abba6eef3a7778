"""`dense_jax._registry.NamedRegistry` on a throw-away package: entries found by importing the package,
a taken name refused for another entry and allowed for the same one, the fallback, the errors."""

import functools
import sys
import textwrap

import pytest

from dense_jax._registry import NamedRegistry, callable_key


@pytest.fixture
def package(tmp_path, monkeypatch):
  """A package `regtest_pkg` whose module `a` registers 'alpha' into `regtest_pkg.REGISTRY`; `_private`
  and `broken` (which fails to import) are not registered."""
  root = tmp_path / "regtest_pkg"
  root.mkdir()
  (root / "__init__.py").write_text(textwrap.dedent("""
      from dense_jax._registry import NamedRegistry
      REGISTRY = NamedRegistry("thing", "regtest_pkg")
      """))
  (root / "a.py").write_text(textwrap.dedent("""
      from regtest_pkg import REGISTRY

      @REGISTRY.decorator("alpha")
      def make_alpha(size=1):
        return ("alpha", size)
      """))
  (root / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
  (root / "broken.py").write_text("raise ImportError('no such dependency')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  yield __import__("regtest_pkg")
  for name in [m for m in sys.modules if m == "regtest_pkg" or m.startswith("regtest_pkg.")]:
    del sys.modules[name]


def test_entries_register_themselves_in_the_package(package):
  registry = package.REGISTRY
  assert registry.available() == ["alpha"]
  assert registry.build("alpha", size=3) == ("alpha", 3)
  assert list(registry.import_errors) == ["regtest_pkg.broken"]
  with pytest.raises(ValueError, match=r"(?s)thing: expected one of \['alpha'\], got 'beta'.*regtest_pkg.broken "
                                       r"failed to import: ImportError: no such dependency"):
    registry.get("beta")
  with pytest.raises(ValueError, match=r"thing 'alpha': bad arguments \['colour'\]"):
    registry.build("alpha", colour="red")


def test_a_taken_name_is_refused_for_another_entry():
  registry = NamedRegistry("thing", "dense_jax.nn")

  def make():
    return 1

  assert registry.register("one", make) is make
  registry.register("one", make)   # the same entry again (a re-run registration): harmless
  with pytest.raises(ValueError, match="thing name 'one' is already registered to .*under another name"):
    registry.register("one", lambda: 2)
  with pytest.raises(ValueError, match="thing name 'one' is already registered"):
    registry.decorator("one")(int)
  with pytest.raises(ValueError, match="name: expected a non-empty string"):
    registry.register("", make)
  assert registry.entries == {"one": make}


def test_same_rule_partials_fallback_and_hint():
  first = functools.partial(dict, a=1)
  assert callable_key(first) == callable_key(functools.partial(dict, a=1))
  assert callable_key(first) != callable_key(functools.partial(dict, a=2))
  registry = NamedRegistry("thing", "dense_jax.nn", same=lambda old, new: old == new,
                           fallback=lambda name: name.upper() if name.startswith("x:") else None,
                           hint=" (or 'x:<name>')")
  registry.register("p", first)
  with pytest.raises(ValueError, match="already registered"):
    registry.register("p", functools.partial(dict, a=2))
  assert registry.get("x:abc") == "X:ABC" and "x:abc" not in registry.available()
  with pytest.raises(ValueError, match=r"got 'abc' \(or 'x:<name>'\)"):
    registry.get("abc")
