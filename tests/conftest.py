"""Test set-up: CPU only, 8 fake CPU devices so sharding tests see a real mesh.

The flags must be set before jax is imported anywhere, which is why they live here.
"""

import inspect
import os
import pathlib
import re

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()


# The registry's torch is a CUDA build whose torchvision ops import triton; triton segfaults the process
# when TensorFlow is already loaded (`import tensorflow; import torchvision.ops` dies, the other order
# works). A test worker runs many files, some of which load TensorFlow (the data pipeline), so the
# parity references are imported first, where installed. Nothing in the package itself imports torch.
try:
  import torchvision.ops  # noqa: F401  pylint: disable=unused-import
except ImportError:
  pass


# ---- The `torch` marker means what it says: `-m "not torch"` runs no test that needs torch.
# A test needs torch when its module imports torch (or torchvision, torchmetrics) at import time, or its
# function or one of the repository's fixtures it requests imports it or calls importorskip on it; such
# a test without the marker fails (at run time, so the message names it). Helpers outside the test
# function are covered at run time: importorskip of a torch package from an unmarked test fails too.
_TORCH_USE = re.compile(r"""^\s*(?:import|from)\s+torch\w*\b|importorskip\(\s*["']torch""", re.M)
_MODULE_TORCH = re.compile(r"^(?:import|from)\s+torch\w*\b", re.M)
_TESTS_DIR = pathlib.Path(__file__).resolve().parent
_UNMARKED = pytest.StashKey[str]()
_running: list = [None]


def _source(obj) -> str:
  try:
    return inspect.getsource(obj)
  except (OSError, TypeError):
    return ""


def _torch_use(item) -> str | None:
  """Where `item` uses torch (None if nowhere the static check sees)."""
  if _MODULE_TORCH.search(_source(item.module)):
    return f"module {item.module.__name__} imports torch"
  if _TORCH_USE.search(_source(item.function)):
    return f"{item.function.__name__} imports torch"
  fixtureinfo = getattr(item, "_fixtureinfo", None)
  for name, defs in (fixtureinfo.name2fixturedefs if fixtureinfo is not None else {}).items():
    for fixturedef in defs:
      path = pathlib.Path(inspect.getsourcefile(fixturedef.func) or "/").resolve()
      if _TESTS_DIR in path.parents and _TORCH_USE.search(_source(fixturedef.func)):
        return f"its fixture {name} imports torch"
  return None


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if isinstance(item, pytest.Function) and item.get_closest_marker("torch") is None:
      where = _torch_use(item)
      if where is not None:
        item.stash[_UNMARKED] = where


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  _running[0] = item
  if _UNMARKED in item.stash:
    pytest.fail(f"{item.nodeid}: {item.stash[_UNMARKED]} but has no @pytest.mark.torch", pytrace=False)


def pytest_runtest_teardown(item):
  del item
  _running[0] = None


_importorskip = pytest.importorskip


def _checked_importorskip(modname, *args, **kwargs):
  item = _running[0]
  if modname.split(".")[0].startswith("torch") and item is not None and item.get_closest_marker("torch") is None:
    pytest.fail(f"{item.nodeid}: importorskip({modname!r}) but the test has no @pytest.mark.torch", pytrace=False)
  return _importorskip(modname, *args, **kwargs)


pytest.importorskip = _checked_importorskip
