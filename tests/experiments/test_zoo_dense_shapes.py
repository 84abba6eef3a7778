"""The model-zoo experiment file: one valid config per architecture in both modes, the sweep's runs,
the report's columns. (Whether each model learns: tests/models/test_zoo_learns.py; the trainer end to
end: tests/train and tests/experiments/test_sweep_local.py.)"""

import pathlib

import jax
import jax.numpy as jnp
import pytest

from dense_jax.models import available_models
from dense_jax.tools import restore
from dense_jax.train import config as config_lib
from experiments import sweep as sweep_lib, zoo_dense_shapes as zoo

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FILE = str(REPO_ROOT / "experiments/zoo_dense_shapes.py")


# The zoo is the semantic-segmentation zoo; these families serve other tasks and have their own
# experiment files under experiments/ (maskrcnn_, keypointrcnn_, panoptic_fpn_, depth_normals_, colorization_,
# multitask_).
OTHER_TASK_FAMILIES = ("maskrcnn_", "keypointrcnn_", "panoptic_fpn_", "eigen_fergus", "colorization", "multitask")


def test_every_narrow_variant_is_in_the_zoo_and_learns_test():
  narrow = {name for name in available_models()
            if name.endswith("_narrow") and not name.startswith(OTHER_TASK_FAMILIES)}
  assert narrow | {"unet"} == set(zoo.ZOO)
  learns = sweep_lib.load_module(str(REPO_ROOT / "tests/models/test_zoo_learns.py"))
  assert set(learns.CASES) == set(zoo.ZOO)
  assert all(entry["full"] in available_models() for entry in zoo.ZOO.values())


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_config_resolves_and_builds_the_model(name, quick):
  config = config_lib.resolve(zoo.get_config(f"quick,model={name}" if quick else f"model={name}"))
  assert config.model.name == (name if quick else zoo.ZOO[name]["full"])
  if quick:
    assert (config.dataset.name, config.batch_size, config.cpu_devices) == ("dense_shapes/small_64", 16, 2)
  model, info, size = restore.build_model(config)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0]["semantic"],
                       jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))
  assert out.shape == (1, *size, info.num_classes)


def test_quick_recipe_is_shared_and_steps_can_be_set():
  configs = [zoo.get_config(f"quick,model={name}") for name in zoo.ZOO]
  assert {c.total_steps for c in configs} == {zoo.QUICK_STEPS}
  assert zoo.get_config("quick,model=segnet_narrow,steps=7").total_steps == 7
  for config in configs:
    assert config.optimizer.name == "adamw" and config.optimizer.schedule == "cosine"
    assert config.optimizer.warmup_steps > 0


def test_unknown_model_is_an_error():
  with pytest.raises(ValueError, match="'model': expected one of"):
    zoo.get_config("quick,model=fcn4s")


def test_sweep_has_one_run_per_architecture_with_its_own_arg():
  runs = sweep_lib.collect_runs(FILE + ":quick")
  assert [r.name for r in runs] == list(zoo.ZOO)
  for run in runs:
    assert run.arg == f"quick,model={run.name}" and not run.overrides
    assert run.train_args("W")[:2] == ["--config", f"{FILE}:quick,model={run.name}"]
  assert [r.arg for r in sweep_lib.collect_runs(FILE)] == [f"model={name}" for name in zoo.ZOO]


def test_describe_gives_params_and_gflops():
  columns = zoo.describe(zoo.get_config("quick,model=sliding_window_narrow"))
  assert set(columns) == {"params", "gflops"}
  assert columns["params"] > 0 and 0 < columns["gflops"] < 10
