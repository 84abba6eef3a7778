"""The depth/normals, colorization and multi-task experiment files: configs in both modes build their
tasks and models, the study's sweep, Δ_MTL, tiny runs through the trainer that log each task's metrics,
and a task the dataset has no labels for."""

import json
import pathlib

import numpy as np
import pytest

from dense_jax import tasks as tasks_lib
from dense_jax.models import build as build_lib
from dense_jax.tasks import colorization as colorization_task
from dense_jax.train import config as config_lib
from experiments import sweep as sweep_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = {"depth_normals": "experiments/depth_normals_dense_shapes.py",
         "colorization": "experiments/colorization_dense_shapes.py",
         "multitask": "experiments/multitask_dense_shapes.py"}
CASES = [("depth_normals", "quick"), ("depth_normals", None), ("depth_normals", "quick,tasks=depth+semantic"),
         ("depth_normals", "quick,model=multitask"), ("colorization", "quick"), ("colorization", None),
         ("colorization", "quick,rebalance=false"), ("multitask", "quick"), ("multitask", None),
         ("multitask", "quick,partial,tasks=depth+normals"), ("multitask", "quick,tasks=semantic+boundaries")]


def _module(key):
  return sweep_lib.load_module(str(REPO_ROOT / FILES[key]))


@pytest.fixture
def uniform_prior(monkeypatch):
  """The colorization prior without reading the training split (the cache path is tested elsewhere)."""
  monkeypatch.setattr(colorization_task, "training_prior",
                      lambda dataset, bins, **kw: np.full(bins.num_bins, 1.0 / bins.num_bins))


@pytest.mark.parametrize("key,arg", CASES)
def test_configs_build_their_tasks_and_models(key, arg, uniform_prior):
  config = config_lib.resolve(_module(key).get_config(arg))
  quick = bool(arg) and "quick" in arg
  assert config.total_steps <= 1000 if quick else config.total_steps >= 10_000
  assert config.model.name.endswith("_narrow") == quick
  if arg and "partial" in arg:
    assert config.dataset.name == "dense_shapes/small_64+one_label"
  model, info, size = build_lib.build_model(config)
  tasks = tasks_lib.build_tasks(config.tasks, info)
  tasks_lib.check_outputs(tasks, build_lib.output_shapes(model, size), config.model.name)
  if arg and "partial" in arg:
    assert all(any(k.startswith("has_") for k in t.batch_keys) for t in tasks.values())


def test_bad_arguments():
  with pytest.raises(ValueError, match="'tasks': expected a '\\+'-separated subset"):
    _module("depth_normals").get_config("quick,tasks=depth+colour")
  with pytest.raises(ValueError, match="'tasks'"):
    _module("multitask").get_config("quick,tasks=depth+depth")
  with pytest.raises(ValueError, match="'model'"):
    _module("depth_normals").get_config("quick,model=unet")


def test_the_multitask_study_and_delta_mtl():
  runs = sweep_lib.collect_runs(str(REPO_ROOT / FILES["multitask"]))
  assert {r.name: r.arg for r in runs} == {
      "single_semantic": "quick,tasks=semantic", "single_depth": "quick,tasks=depth",
      "single_normals": "quick,tasks=normals", "single_colorization": "quick,tasks=colorization",
      "all": "quick", "all_partial": "quick,partial"}
  seed1 = sweep_lib.collect_runs(str(REPO_ROOT / FILES["multitask"]) + ":seed=1")
  assert [r.arg for r in seed1] == [r.arg + ",seed=1" for r in runs]   # a second seed of the whole study
  experiment = _module("multitask")
  assert experiment.get_config("quick,seed=1").seed == 1 and experiment.get_config("quick").seed == 0
  single = {"semantic": {"val/miou": 0.5}, "depth": {"val/depth/abs_rel": 0.2},
            "normals": {"val/normals/mean": 20.0}, "colorization": {"val/colorization/auc": 0.8}}
  multi = {"val/miou": 0.55, "val/depth/abs_rel": 0.25, "val/normals/mean": 18.0, "val/colorization/auc": 0.8}
  # semantic +10%, depth -25% (lower is better), normals +10%, colorization 0 -> mean -1.25%
  assert experiment.delta_mtl(multi, single) == pytest.approx((0.1 - 0.25 + 0.1 + 0.0) / 4)


def _tiny(config):
  with config.unlocked():
    config.total_steps, config.batch_size, config.eval_batch_size = 2, 4, 4
    config.log_every, config.eval_every, config.checkpoint_every = 1, 2, 2
    config.eval_max_batches, config.num_figures, config.tensorboard = 1, 1, False
    config.cpu_devices, config.num_devices, config.mesh_shape = None, 1, (1, 1)
    config.dataset.num_threads = 1
  return config


def _rows(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_depth_normals_run_logs_both_tasks_and_evaluate_reports_them(tmp_path, capsys):
  from dense_jax import evaluate as evaluate_lib
  from dense_jax.train import train_and_evaluate
  config = _tiny(_module("depth_normals").get_config("quick"))
  final = train_and_evaluate(config, tmp_path / "run")
  evals = [r for r in _rows(tmp_path / "run") if "val/depth/abs_rel" in r]
  assert [r["step"] for r in evals] == [2]
  for key in ("val/depth/rmse", "val/depth/delta1", "val/normals/mean", "val/normals/within_30"):
    assert np.isfinite(evals[0][key]) and key in final
  assert 0 <= evals[0]["val/normals/mean"] <= 180 and 0 <= evals[0]["val/depth/delta1"] <= 1
  assert any("loss/depth" in r and "loss/normals" in r for r in _rows(tmp_path / "run"))
  # `python -m dense_jax.evaluate` on the same checkpoint and examples: the same numbers, each printed.
  capsys.readouterr()
  result = evaluate_lib.evaluate(workdir=tmp_path / "run", max_batches=1, write=False)
  printed = capsys.readouterr().out
  for key in ("depth/abs_rel", "depth/silog", "normals/mean", "normals/within_11_25"):
    assert result["metrics"][key] == pytest.approx(evals[0][f"val/{key}"], rel=1e-5), key
    assert key in printed


@pytest.mark.slow
def test_tiny_multitask_run_with_partial_labels_logs_every_task(tmp_path, uniform_prior):
  from dense_jax.train import train_and_evaluate
  config = _tiny(_module("multitask").get_config("quick,partial"))
  train_and_evaluate(config, tmp_path / "run")
  rows = _rows(tmp_path / "run")
  final = [r for r in rows if "val/miou" in r][-1]
  for key in ("val/depth/abs_rel", "val/normals/median", "val/colorization/auc",
              "val/colorization/auc_rebalanced", "val/pixel_accuracy"):
    assert np.isfinite(final[key]), key
  train = [r for r in rows if "loss/colorization" in r]
  assert train and all(np.isfinite(r["loss"]) for r in train)


def test_a_task_the_dataset_has_no_labels_for_is_refused_before_compiling(tmp_path):
  from dense_jax.train import train_and_evaluate
  from dense_jax.train.loop import ConfigError
  config = _tiny(_module("depth_normals").get_config("quick"))
  with config.unlocked():
    config.dataset.name, config.dataset.image_size = "voc2012", 64
  with pytest.raises(ConfigError, match=r"config.tasks.depth: the task needs the batch keys \['depth'\].*'voc2012'"):
    train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run" / "metrics.jsonl").exists()
