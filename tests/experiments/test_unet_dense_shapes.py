"""The U-Net experiment file: its configs pass the trainer's validation and build the model."""

import pytest

from dense_jax.models import build as build_lib
from dense_jax.tasks import build as task_build
from dense_jax.train import config as config_lib
from experiments import sweep as sweep_lib, unet_dense_shapes


@pytest.mark.parametrize("arg", [None, "quick", "quick,width=8,up=bilinear", "quick,padding=valid,depth=2"])
def test_configs_resolve(arg):
  """The resolved config builds its model on the config's own dataset and image size (traced, not run), and
  the model's semantic output has the dataset's classes and a centre crop of the input's size (the U-Net
  of valid padding shrinks it)."""
  config = config_lib.resolve(unet_dense_shapes.get_config(arg))
  model, info, size = build_lib.build_model(config)
  tasks = task_build.build_tasks(config.tasks, info)
  outputs = build_lib.output_shapes(model, size, config.batch_size)
  task_build.check_outputs(tasks, outputs, config.model.name)
  assert set(tasks) == {"semantic"} and tasks["semantic"].num_classes == info.num_classes
  batch, height, width, classes = outputs["semantic"].shape
  assert (batch, classes) == (config.batch_size, info.num_classes)
  if config.model.padding == "same":
    assert (height, width) == size
  else:
    assert 0 < height == width < size[0] == size[1]


def test_quick_mode_is_small():
  config = unet_dense_shapes.get_config("quick")
  assert config.dataset.name == "dense_shapes/small_64" and config.model.width <= 16
  assert config.total_steps <= 1000


def test_sweep_declares_runs():
  runs = sweep_lib.collect_runs("experiments/unet_dense_shapes.py:quick")
  assert len(runs) == 4 and all("model.up" in r.overrides for r in runs)
