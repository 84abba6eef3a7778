"""experiments/panoptic_fpn_dense_shapes.py: its configs build, and a tiny Panoptic FPN trains through the
ordinary trainer, writing val/pq & co. to metrics.jsonl, with one trace of the train loss and of the PQ
accumulator for the whole run (no recompilation)."""

import json

import pytest

from dense_jax import data, tasks as tasks_lib
from experiments import panoptic_fpn_dense_shapes as experiment

PQ_KEYS = ("val/pq", "val/pq_things", "val/pq_stuff", "val/sq", "val/rq", "val/semantic_miou")


@pytest.mark.parametrize("arg", ["quick", "", "quick,semantic_weight=0.5,score=0.4,depth=101"])
def test_configs_build_their_tasks(arg):
  config = experiment.get_config(arg)
  info = data.dataset_info(config.dataset.name)
  tasks = tasks_lib.build_tasks(config.tasks, info)
  assert tasks["panoptic"].thing_classes == tuple(config.model.thing_classes) == info.thing_classes
  assert config.model.name.startswith("panoptic_fpn_resnet") and config.model.name.endswith("_narrow")
  if "score=0.4" in arg:
    assert config.model.score_threshold == 0.4 and tasks["panoptic"].weight == 0.5


def test_branch_sweep_trains_each_branch_alone_and_both():
  runs = []
  experiment.sweep(lambda name, arg: runs.append((name, arg)), "quick")
  assert [name for name, _ in runs] == ["panoptic_fpn", "semantic_only", "instance_only"]
  weights = {}
  for name, arg in runs:
    config = experiment.get_config(arg)
    assert config.dataset.name == "dense_shapes/small_64"
    weights[name] = (config.tasks.panoptic.weight, config.tasks.instances.weight)
  assert weights == {"panoptic_fpn": (1.0, 1.0), "semantic_only": (1.0, 0.0), "instance_only": (0.0, 1.0)}
  with pytest.raises(ValueError, match="branches: expected one of"):
    experiment.get_config("quick,branches=stuff")


@pytest.mark.slow
def test_tiny_panoptic_fpn_trains_and_logs_pq(tmp_path, monkeypatch):
  from dense_jax.tasks.panoptic import PanopticTask
  from dense_jax.train import train_and_evaluate
  from tests.train.conftest import tiny_config

  traces = {"loss": 0, "update": 0}
  for name in traces:
    original = getattr(PanopticTask, name)

    def counted(self, *args, _original=original, _name=name):
      traces[_name] += 1
      return _original(self, *args)
    monkeypatch.setattr(PanopticTask, name, counted)

  tasks = {"instances": {"weight": 1.0}, "panoptic": {"weight": 1.0}}
  config = tiny_config(num_devices=1, mesh_shape=(1, 1), total_steps=4, eval_every=2, checkpoint_every=4,
                       batch_size=4, eval_batch_size=8, num_figures=1)
  with config.unlocked():
    config.tasks = tasks
    config.model = dict(
        name="panoptic_fpn_resnet50_narrow", width=0.125, thing_classes=(4, 5, 6, 7, 8), score_threshold=0.05,
        anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20,
        rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, rpn_batch_size_per_image=32,
        box_batch_size_per_image=16, box_detections_per_img=4, box_candidates_per_img=20)
  train_and_evaluate(config, tmp_path / "run")
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if "val/pq" in r]
  assert [r["step"] for r in evals] == [2, 4]
  for row in evals:
    for key in PQ_KEYS:
      assert 0.0 <= row[key] <= 1.0, (key, row[key])
  assert any("loss/panoptic" in r for r in rows)
  # One trace of the train loss and one of the accumulator over 4 steps and 2 evaluations.
  assert traces == {"loss": 1, "update": 1}, traces
