"""The ablation experiment files: configs in both modes, the runs their sweeps declare, describe()."""

import pathlib

import jax
import ml_collections
import pytest

from dense_jax.ops import receptive_field
from dense_jax.tools import restore
from dense_jax.train import config as config_lib
from experiments import ablation_common, sweep as sweep_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = {
    "dilation": "experiments/dilation_vs_downsampling.py",
    "rf": "experiments/receptive_field.py",
    "upsampling": "experiments/upsampling.py",
}


def _module(key):
  return sweep_lib.load_module(str(REPO_ROOT / FILES[key]))


def _with(config, overrides: dict) -> ml_collections.ConfigDict:
  """`config` with dotted overrides applied the way `--config.KEY=VALUE` applies them."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    assert leaf in node, f"override {key} names no existing key"
    node[leaf] = value
  return config


@pytest.mark.parametrize("key", sorted(FILES))
@pytest.mark.parametrize("arg", ["quick", None])
def test_get_config_is_valid_for_the_trainer(key, arg):
  config = config_lib.resolve(_module(key).get_config(arg))
  quick = arg == "quick"
  assert config.total_steps <= 1000 if quick else config.total_steps >= 10_000
  assert config.dataset.name.endswith("_64") if quick else True
  assert {"band_radius", "small_area", "erf_batch"} <= set(config.experiment)
  model, info, size = restore.build_model(config)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0]["semantic"],
                       jax.ShapeDtypeStruct((1, *size, 3), jax.numpy.float32))
  assert out.shape == (1, *size, info.num_classes)


EXPECTED_RUNS = {
    "dilation": {"os32": {"model.output_stride": 32}, "os16": {"model.output_stride": 16},
                 "os8": {"model.output_stride": 8}},
    "rf": {"exponential": {"model.dilations": (1, 1, 2, 4, 8, 16, 1)},
           "constant": {"model.dilations": (1,) * 7},
           "gridding_2": {"model.dilations": (2, 2, 2)},
           "gridding_4": {"model.dilations": (4, 4, 4)},
           "hybrid": {"model.dilations": (1, 2, 5, 1, 2, 5)}},
    "upsampling": {up: {"model.up": up} for up in
                   ("nearest", "bed_of_nails", "max_unpool", "transposed", "bilinear")},
}


@pytest.mark.parametrize("key", sorted(FILES))
def test_sweep_declares_the_runs_and_their_overrides(key):
  runs = sweep_lib.collect_runs(str(REPO_ROOT / FILES[key]) + ":quick")
  assert {r.name: r.overrides for r in runs} == EXPECTED_RUNS[key]
  assert all(r.arg == "quick" for r in runs)
  base = _module(key).get_config("quick")
  for run in runs:
    config = config_lib.resolve(_with(base, run.overrides))   # every override names a real key
    model, _, size = restore.build_model(config)
    jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x, train=False),
                   jax.ShapeDtypeStruct((1, *size, 3), jax.numpy.float32))
    # The flag form the launcher passes parses back to the same value.
    for flag in run.train_args("W")[4:]:
      name, _, text = flag.removeprefix("--config.").partition("=")
      assert str(run.overrides[name]) == text or repr(tuple(run.overrides[name])) == text


def _context_rf(dilations):
  """Independently: each 3×3 conv with dilation d adds 2·d; a 1-pixel start."""
  return 1 + sum(2 * d for d in dilations)


@pytest.mark.parametrize("schedule", ["exponential", "gridding_2", "hybrid"])
def test_receptive_field_describe_gives_the_theoretical_rf(schedule):
  module = _module("rf")
  dilations = module.SCHEDULES[schedule]
  config = module.get_config(f"quick,schedule={schedule}")
  with config.unlocked():
    config.model.width = 4            # the receptive field does not depend on the width
  columns = module.describe(config)
  assert columns["context_rf"] == _context_rf(dilations)
  # Front-end: two 3×3 convs at stride 1 (5 px); each context pixel is one input pixel.
  assert columns["rf"] == 4 + _context_rf(dilations)
  if schedule == "exponential":
    assert (columns["context_rf"], columns["rf"]) == (67, 71)
  assert columns["params"] > 0 and columns["gflops"] > 0 and columns["train_mb"] > 0


def test_dilation_keeps_the_receptive_field_and_costs_more():
  module = _module("dilation")
  columns = {}
  for os_ in (32, 8):
    # The fixed bilinear head isolates the backbone's cost; describe() = these columns + train_mb
    # (the compiled train step, which the receptive-field test above covers).
    config = module.get_config(f"quick,output_stride={os_},width=0.25,upsample=bilinear")
    columns[os_] = ablation_common.model_columns(config, rf_upto="classifier", memory=False)
  # The strided small backbone: stem 3/2, then per stage a 3×3/2 and a 3×3 conv.
  layers = [(3, 2, 1)] + [(3, 2, 1), (3, 1, 1)] * 4
  expected = receptive_field(layers)[-1].size
  assert columns[32]["rf"] == columns[8]["rf"] == expected == 183
  assert columns[8]["gflops"] > 1.5 * columns[32]["gflops"]   # the last stages run at 16x the pixels


def test_dilation_depth_normals_config_builds_its_tasks_and_heads():
  """`tasks=depth+normals`: the depth and normals tasks (weights 1) on the same backbone at every output
  stride of the sweep; the sweep passes the argument to every run."""
  from dense_jax import tasks as tasks_lib
  from dense_jax.models import build as build_lib
  module = _module("dilation")
  runs = sweep_lib.collect_runs(str(REPO_ROOT / FILES["dilation"]) + ":quick,tasks=depth+normals")
  assert {r.name: r.overrides for r in runs} == EXPECTED_RUNS["dilation"]
  assert all(r.arg == "quick,tasks=depth+normals" for r in runs)
  base = module.get_config("quick,tasks=depth+normals")
  assert tuple(base.model.tasks) == ("depth", "normals")
  assert base.tasks.to_dict() == {"depth": {"weight": 1.0}, "normals": {"weight": 1.0}}
  for run in runs:
    config = config_lib.resolve(_with(base, run.overrides))
    model, info, size = build_lib.build_model(config)
    tasks = tasks_lib.build_tasks(config.tasks, info)
    outputs = build_lib.output_shapes(model, size, batch_size=2)
    tasks_lib.check_outputs(tasks, outputs, config.model.name)
    assert {k: v.shape for k, v in outputs.items()} == {"depth": (2, *size), "normals": (2, *size, 3)}
  # The semantic default is the config it was before `tasks` existed (no model.tasks, no tasks block).
  semantic = module.get_config("quick")
  assert "tasks" not in semantic.model and "tasks" not in semantic
  assert module.get_config("quick,tasks=semantic").to_dict() == semantic.to_dict()
  assert semantic.seed == 0 and module.get_config("quick,seed=1").seed == 1


def test_dilation_depth_normals_describe():
  """describe() for the depth + normals variant: the same receptive field (183 px, before the
  up-sampler) and a train step compiled with the depth and normals tasks' batch."""
  module = _module("dilation")
  config = module.get_config("quick,tasks=depth+normals,output_stride=16,width=0.25")
  columns = module.describe(config)
  assert columns["rf"] == 183
  assert columns["params"] > 0 and columns["gflops"] > 0 and columns["train_mb"] > 0


def test_abstract_batch_follows_the_data_contract():
  batch = ablation_common.abstract_batch(("image", "depth", "normals", "has_depth", "semantic"), 4, (8, 6))
  assert {k: (v.shape, str(v.dtype)) for k, v in batch.items()} == {
      "image": ((4, 8, 6, 3), "float32"), "depth": ((4, 8, 6), "float32"), "normals": ((4, 8, 6, 3), "float32"),
      "has_depth": ((4,), "bool"), "semantic": ((4, 8, 6), "int32")}
  with pytest.raises(ValueError, match="keys: expected batch keys among .* got 'boxes'"):
    ablation_common.abstract_batch(("image", "boxes"), 4, (8, 6))


def test_unknown_arguments_are_errors():
  with pytest.raises(ValueError, match="schedule"):
    _module("rf").get_config("quick,schedule=fibonacci")
  with pytest.raises(ValueError, match="'up'"):
    _module("upsampling").get_config("quick,up=pixelshuffle")
  with pytest.raises(ValueError, match="unknown option"):
    _module("dilation").get_config("quick,stride=8")
  with pytest.raises(ValueError,
                     match="'tasks': expected a '\\+'-separated subset of \\['semantic', 'depth', 'normals'\\]"):
    _module("dilation").get_config("quick,tasks=depth+colorization")


def test_evaluate_breakdown_refuses_a_run_without_semantic_labels():
  from experiments import evaluate_breakdown
  config = _module("dilation").get_config("quick,tasks=depth+normals")
  with pytest.raises(ValueError, match=r"config.tasks: expected a semantic task .* got \['depth', 'normals'\]"):
    evaluate_breakdown.breakdown_metrics_for_run(config, None, None, {"band_radius": 2, "small_area": 100})
