"""A tiny U-Net trained for a few steps by the engine, shared by the evaluation tests (once per session).

`_REGISTER` registers the test dataset; experiment files written for subprocesses start with it too.
"""

import textwrap

import ml_collections
import pytest

_REGISTER = """
import dataclasses
from dense_jax.data import dense_shapes
from dense_jax.data.dense_shapes import config as _shapes_config
dense_shapes.register_config(dataclasses.replace(
    _shapes_config.CONFIGS["small_64"], name="eval_test_32", image_size=32,
    splits=(("train", 32), ("validation", 12))), live=True)
"""
exec(_REGISTER)  # pylint: disable=exec-used
DATASET = "dense_shapes/eval_test_32"


def tiny_config() -> ml_collections.ConfigDict:
  """4 steps of a width-4, depth-1 U-Net at 32×32, on one device; 12 validation examples = 1.5 batches."""
  return ml_collections.ConfigDict(dict(
      seed=0, total_steps=4, batch_size=8, eval_batch_size=8, mesh_shape=(-1, 1), num_devices=1,
      log_every=4, eval_every=4, checkpoint_every=4, num_figures=0, tensorboard=False,
      model=dict(name="unet", width=4, depth=1, padding="same", norm="batch"),
      dataset=dict(name=DATASET, num_threads=1),
      optimizer=dict(name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=1,
                     weight_decay=1e-4, grad_clip_norm=1.0)))


def write_config_file(path):
  """An experiment file at `path` that registers the test dataset and returns `tiny_config()`."""
  path.write_text(_REGISTER + textwrap.dedent(f"""
      import json
      import ml_collections

      def get_config(arg=None):
        return ml_collections.ConfigDict(json.loads({tiny_config().to_json()!r}))
      """))
  return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """`(workdir, final metrics)` of `tiny_config()` trained to step 4."""
  from dense_jax.train import train_and_evaluate
  workdir = tmp_path_factory.mktemp("run")
  final = train_and_evaluate(tiny_config(), workdir)
  return workdir, final
