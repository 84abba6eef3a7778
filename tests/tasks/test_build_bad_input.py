"""Bad task configs that would train silently wrong: weight 0 for the only task (or for every task) is a
ValueError at build time naming `config.tasks.<name>.weight`; Keypoint R-CNN outputs with another keypoint
count than the dataset's fail `check_outputs` (before compiling) naming `config.model.num_keypoints`."""

import jax
import jax.numpy as jnp
import pytest

from dense_jax import data, tasks as tasks_lib

INFO = data.dataset_info("dense_shapes/small_64")


@pytest.mark.parametrize("weight", [0, 0.0])
def test_only_task_with_weight_0(weight):
  with pytest.raises(ValueError, match=r"config.tasks.semantic.weight: expected a weight > 0 for the only task "
                                       r"\(the train loss is weight \* loss, so nothing would learn\), got 0"):
    tasks_lib.build_tasks({"semantic": {"weight": weight}}, INFO)


def test_every_task_with_weight_0():
  with pytest.raises(ValueError, match=r"config.tasks: expected at least one task with weight > 0 .*got weight 0 "
                                       r"for every task \['depth', 'semantic'\]"):
    tasks_lib.build_tasks({"semantic": {"weight": 0.0}, "depth": {"weight": 0.0}}, INFO)


def test_one_of_several_tasks_may_have_weight_0():
  built = tasks_lib.build_tasks({"semantic": {"weight": 1.0}, "depth": {"weight": 0.0}}, INFO)
  assert built["depth"].weight == 0.0


def _keypoint_outputs(k):
  s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  return {"keypoints": {"boxes": s(1, 50, 4), "scores": s(1, 50), "labels": s(1, 50), "valid": s(1, 50),
                        "keypoints": s(1, 50, k, 3), "keypoint_scores": s(1, 50, k)}}


def test_keypoint_count_against_the_dataset():
  task = tasks_lib.build_tasks({"keypoints": {}}, INFO)
  task["keypoints"].check_outputs(_keypoint_outputs(INFO.num_keypoints), "keypointrcnn_resnet50_fpn_narrow")
  with pytest.raises(ValueError, match=r"config.model.num_keypoints: expected the 4 keypoints of dataset "
                                       r"'dense_shapes/small_64' \(config.tasks.keypoints\), got a model "
                                       r"'keypointrcnn_resnet50_fpn' with 17"):
    tasks_lib.check_outputs(task, _keypoint_outputs(17), "keypointrcnn_resnet50_fpn")
