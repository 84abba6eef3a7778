"""experiments/maskrcnn_dense_shapes.py and keypointrcnn_dense_shapes.py: their configs resolve, build their
model and tasks for the dataset, and the model's outputs are what the tasks read (traced, not run)."""

import pytest

from dense_jax import tasks as tasks_lib
from dense_jax.models.build import build_model, output_shapes
from dense_jax.train import config as config_lib
from experiments import keypointrcnn_dense_shapes, maskrcnn_dense_shapes


@pytest.mark.parametrize("experiment,arg,task", [
    (maskrcnn_dense_shapes, "quick", "instances"),
    (maskrcnn_dense_shapes, "", "instances"),
    (maskrcnn_dense_shapes, "quick,steps=50,depth=101,lr=0.003", "instances"),
    (keypointrcnn_dense_shapes, "quick", "keypoints"),
    (keypointrcnn_dense_shapes, "", "keypoints"),
    (keypointrcnn_dense_shapes, "quick,norm=gn", "keypoints"),
    (keypointrcnn_dense_shapes, "slots=16", "keypoints"),
])
def test_configs_build_model_and_tasks(experiment, arg, task):
  config = config_lib.resolve(experiment.get_config(arg))
  model, info, size = build_model(config)
  tasks = tasks_lib.build_tasks(config.tasks, info)
  assert list(tasks) == [task] and config.model.name.endswith("_narrow")
  assert size == ((64, 64) if "quick" in arg else (128, 128))
  outputs = output_shapes(model, size)
  tasks_lib.check_outputs(tasks, outputs, config.model.name)
  if task == "keypoints":
    assert outputs[task]["keypoints"].shape[2] == info.num_keypoints == len(tasks[task].oks_sigmas)
    assert model.num_classes == 2 and tuple(model.object_classes) == info.keypoint_classes == (5, 6)
    assert model.keypoint_head_norm == ("gn" if "norm=gn" in arg else "")
    # keypoint-head slots per image: quick 8, full every positive (0) unless slots= sets them
    assert model.num_sampled_masks == (8 if "quick" in arg else 16 if "slots=16" in arg else 0)
  if "steps=50" in arg:
    assert config.total_steps == 50 and config.optimizer.learning_rate == 0.003 and "101" in config.model.name


def test_keypoint_head_units_at_init():
  """experiments/keypoint_head_units.py on a freshly initialised head: every conv's channels fire (none is dead
  before training), one fraction per layer; the RoIs are the ground truth's squares and triangles."""
  import jax
  import jax.numpy as jnp

  from experiments import keypoint_head_units, maskrcnn_overfit
  config = config_lib.resolve(keypointrcnn_dense_shapes.get_config("quick"))
  model, _, _ = build_model(config)
  batch = maskrcnn_overfit.fixed_batch(4, 0, "validation", maskrcnn_overfit.KEYPOINT_KEYS)
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), batch["image"])
  units = keypoint_head_units.head_units(model, variables, batch)
  expected = int(jnp.sum(jnp.isin(batch["classes"], jnp.asarray((5, 6)))
                         & (jnp.arange(batch["classes"].shape[1]) < batch["num_instances"][:, None])))
  assert units["num_rois"] == expected > 0
  assert len(units["alive"]) == 8 and min(units["alive"]) > 0.9 and units["roi_std"] > 0
