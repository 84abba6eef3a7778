"""Bad task configs fail before anything is compiled, naming the task and what the dataset or model
offers: an unknown task, a task whose keys the dataset lacks, a model without the task's output, a
negative loss weight. The registry behaves like the model registry."""

import pytest

from dense_jax import data, tasks as tasks_lib
from dense_jax.tasks import Task, register_task
from dense_jax.train.loop import ConfigError


@register_task("keypoints_probe")
class _KeypointsProbe(Task):
  """A task reading keypoints (no loss: only its checks are exercised)."""
  batch_keys = ("keypoints", "num_instances")


@register_task("depth_probe")
class _DepthProbe(Task):
  batch_keys = ("depth",)


def test_registry_lists_and_builds_tasks():
  assert {"semantic", "keypoints_probe"} <= set(tasks_lib.available_tasks())
  task = tasks_lib.get_task("semantic", num_classes=3)
  assert task.name == "semantic" and task.weight == 1.0 and task.batch_keys == ("semantic",)
  with pytest.raises(ValueError, match=r"task: expected one of \[.*'semantic'.*\], got 'nope'"):
    tasks_lib.get_task("nope")
  with pytest.raises(ValueError, match="already registered"):
    register_task("semantic")(_DepthProbe)


def test_default_config_is_one_semantic_task():
  info = data.dataset_info("dense_shapes/small_64")
  built = tasks_lib.build_tasks(None, info)
  assert list(built) == ["semantic"] and built["semantic"].num_classes == info.num_classes


@pytest.mark.parametrize("tasks, match", [
    ({"semantics": {}}, r"config.tasks.semantics: unknown task 'semantics'; registered tasks: \[.*'semantic'"),
    ({"keypoints_probe": {}}, r"config.tasks.keypoints_probe: the task needs the batch keys \['keypoints', "
                              r"'num_instances'\], which dataset 'voc2012' does not have; "
                              r"it offers \['image', 'semantic'\]"),
    ({"semantic": {"weight": -0.5}}, r"config.tasks.semantic.weight: expected a finite number >= 0, got -0.5"),
    ({"semantic": {"weight": float("nan")}}, r"config.tasks.semantic.weight: expected a finite number >= 0"),
    ({"semantic": {"colour": 1}}, r"task 'semantic': bad arguments"),
    ({}, r"config.tasks: expected at least one task"),
])
def test_bad_task_configs_name_the_task(tasks, match):
  with pytest.raises(ValueError, match=match):
    tasks_lib.build_tasks(tasks, data.dataset_info("voc2012"))


@pytest.mark.parametrize("overrides, match", [
    ({"tasks": {"semantic": {}, "depth_probe": {}}},
     r"config.tasks.depth_probe: model 'unet' does not output 'depth_probe'; it outputs \['semantic'\]"),
    ({"tasks": {"semantic": {"weight": -1.0}}}, r"config.tasks.semantic.weight: expected a finite number >= 0"),
    ({"tasks": {"keypoint": {}}}, r"config.tasks.keypoint: unknown task 'keypoint'"),
])
def test_trainer_refuses_bad_tasks_before_training(overrides, match, tmp_path):
  from dense_jax.train import train_and_evaluate
  from tests.train.conftest import tiny_config
  config = tiny_config(num_devices=1, mesh_shape=(1, 1))
  with config.unlocked():
    config.tasks = overrides["tasks"]
  with pytest.raises(ConfigError, match=match):
    train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists()
