"""Shared set-up of the engine tests: a tiny live `dense_shapes` dataset and a tiny U-Net config.

The dataset (32×32, 48 train / 16 validation examples) is generated on access, so no TFDS files are
prepared; the subprocess tests load the same registration from the config file `write_config_file`
writes (an experiment file may run code at import, like any config file). With ENGINE_TEST_SLOW=s in
the environment every example takes s seconds more to load (the same examples), so that a signal
can be sent to a subprocess in the middle of its run.

Compilation dominates these runs (the tiny U-Net's step computes in milliseconds, XLA:CPU compiles it
in seconds), so the tests share a persistent compilation cache, also across the subprocesses (via
JAX_COMPILATION_CACHE_DIR): the many runs of the same program compile once.
"""

import json
import os
import pathlib
import tempfile
import textwrap

import jax
import ml_collections
import pytest

DATASET = "dense_shapes/engine_test_32"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE_DIR = os.path.join(tempfile.gettempdir(), "dense_jax_test_xla_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

_REGISTER = """
import dataclasses, os, time
from dense_jax.data import dense_shapes
from dense_jax.data.dense_shapes import config as _shapes_config
from dense_jax.data.dense_shapes import source as _shapes_source

class _SlowSource(_shapes_source.GeneratedSource):
  def __getitem__(self, index):
    time.sleep(float(os.environ.get("ENGINE_TEST_SLOW", "0")))
    return super().__getitem__(index)

_cfg = dataclasses.replace(_shapes_config.CONFIGS["small_64"], name="engine_test_32", image_size=32,
                           splits=(("train", 48), ("validation", 16)))
if float(os.environ.get("ENGINE_TEST_SLOW", "0")):   # a name is registered once: the slow source instead
  from dense_jax.data import sources as _sources
  _sources.register_source(_shapes_source.dataset_info(_cfg), lambda split, data_dir=None: _SlowSource(_cfg, split))
else:
  dense_shapes.register_config(_cfg, live=True)
"""
exec(_REGISTER)  # pylint: disable=exec-used


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """8 steps of a width-4, depth-1 U-Net at 32×32, batch 8; dotted keys in `overrides`."""
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=8, batch_size=8, mesh_shape=(-1, 1), log_every=1, eval_every=4,
      checkpoint_every=4, keep_checkpoints=3, num_figures=2, tensorboard=False, eval_batch_size=8,
      model=dict(name="unet", width=4, depth=1, padding="same", norm="batch"),
      dataset=dict(name=DATASET, num_threads=1),
      optimizer=dict(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=2,
                     weight_decay=1e-4, grad_clip_norm=1.0)))
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    node[leaf] = value
  return config


def write_config_file(directory: pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path:
  """A config file for `python -m dense_jax.train --config <file>` that registers the test dataset."""
  path = directory / "engine_test_config.py"
  path.write_text(_REGISTER + textwrap.dedent(f"""
      import json
      import ml_collections

      def get_config(arg=None):
        return ml_collections.ConfigDict(json.loads({config.to_json()!r}))
      """))
  return path


def read_metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses_by_step(workdir) -> dict[int, float]:
  return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


@pytest.fixture
def config_factory():
  return tiny_config
