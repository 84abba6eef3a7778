"""`config.init` in the trainer: a run starts from another run (workdir or step directory), applies
`init` once (a resumed run continues from its own checkpoint), the workdir guard compares `init`, and
bad input is one ERROR line with exit 2 before anything is written."""

import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from dense_jax import data
from dense_jax.convert import init_from
from dense_jax.models import build
from dense_jax.tools import restore
from dense_jax.train import train_and_evaluate
from tests.train.conftest import tiny_config, write_config_file
from tests.train.test_cli import run_cli


def one_device(**overrides):
  return tiny_config(**{"num_devices": 1, "mesh_shape": (1, 1), "total_steps": 4, "eval_every": 4, **overrides})


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("source")
  train_and_evaluate(one_device(), workdir)
  return workdir


def _same(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["workdir", "step"])
def test_starts_from_another_run(source_run, tmp_path, where):
  path = source_run if where == "workdir" else source_run / "checkpoints" / "4"
  config = one_device(seed=5, **{"init.path": str(path)})
  _, trained = restore.restore_variables(restore.load_run_config(source_run), source_run)
  variables, report = build.initial_variables(config, jax.random.PRNGKey(1))
  _same(variables, trained)
  assert report["left_at_init_count"] == 0 and report["unused_count"] == 0
  assert "step 4" in report["source"]

  # One step at a learning rate of 1e-9: the trainer's saved params are the source's (to float32 noise).
  workdir = tmp_path / "finetune"
  train_and_evaluate(one_device(seed=5, total_steps=1, **{"init.path": str(path), "optimizer.learning_rate": 1e-9,
                                                         "optimizer.warmup_steps": 0}), workdir)
  saved = json.loads((workdir / init_from.REPORT_FILE).read_text())
  assert saved["loaded"] == len(jax.tree.leaves(trained))
  _, after = restore.restore_variables(restore.load_run_config(workdir), workdir)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6),
               after["params"], trained["params"])


@pytest.mark.slow
def test_init_applies_once_and_is_compared_by_the_workdir_guard(source_run, tmp_path):
  copy = tmp_path / "copy_of_source"
  shutil.copytree(source_run, copy)
  workdir = tmp_path / "run"
  config = one_device(seed=5, **{"init.path": str(copy)})
  train_and_evaluate(one_device(seed=5, stop_at_step=2, **{"init.path": str(copy)}), workdir)
  shutil.rmtree(copy)            # a resumed run never reads init.path again
  final = train_and_evaluate(config, workdir)
  assert final["step"] == 4
  other = one_device(seed=5, **{"init.path": str(source_run)})
  with pytest.raises(ValueError, match=r"Differing keys .*init.path"):   # the guard's WorkdirError
    train_and_evaluate(other, workdir)


@pytest.mark.slow
def test_exclude_leaves_the_head_at_init(source_run):
  config = one_device(**{"init.path": str(source_run), "init.exclude": "^head/"})
  _, report = build.initial_variables(config, jax.random.PRNGKey(0))
  left = report["left_at_init"]
  assert left and all(p.startswith("head/") and r == "excluded by init.exclude" for p, r in left.items())


def test_panoptic_fpn_from_mask_rcnn_variables():
  """A Mask R-CNN run's arrays (here its initial variables) fill Panoptic FPN's detector; only the
  semantic branch stays at init."""
  common = dict(seed=0, total_steps=1, batch_size=1, mesh_shape=(1, 1), log_every=1, eval_every=1,
                checkpoint_every=1, optimizer=dict(name="sgd", learning_rate=0.01),
                dataset=dict(name="dense_shapes/small_64"))
  mask_rcnn = ml_collections.ConfigDict(dict(common, model=dict(name="maskrcnn_resnet50_fpn_narrow")))
  things = tuple(data.dataset_info("dense_shapes/small_64").thing_classes)
  panoptic = ml_collections.ConfigDict(dict(common, model=dict(name="panoptic_fpn_resnet50_narrow",
                                                               thing_classes=things)))
  source_vars, _ = build.initial_variables(mask_rcnn, jax.random.PRNGKey(0))
  model, _, size = build.build_model(panoptic)
  abstract = jax.eval_shape(lambda: build.init_variables(model, jax.random.PRNGKey(0), size))
  source = init_from.Source("mask r-cnn run", [init_from.torchvision_files.flatten_collections(source_vars)], [])
  plan = init_from.place(abstract, source, {"path": "x"})
  assert len(plan.loaded) == len(jax.tree.leaves(source_vars)) and not plan.unused
  assert plan.left_at_init and all(r == "absent from file" for r in plan.left_at_init.values())
  assert not any(p.startswith(("backbone/body/", "rpn/", "box_", "mask_")) for p in plan.left_at_init)


@pytest.mark.slow
@pytest.mark.parametrize("init,message", [
    ({"init.path": "/nonexistent/r50.pth"}, "ERROR: config.init.path: expected an existing torchvision file"),
    ({"init.path": "{source}", "init.include": "^decoder/"}, "ERROR: config.init.include: expected a regular"),
    ({"init.path": "{source}", "init.exclude": "^head/", "init.strict": True},
     "ERROR: config.init.strict: expected every model array loaded"),
    ({"init.path": "{source}", "init.source": "torch"}, "ERROR: config.init.source: expected one of"),
])
def test_bad_init_is_one_line_and_exit_2(source_run, tmp_path, init, message):
  init = {k: v.format(source=source_run) if isinstance(v, str) else v for k, v in init.items()}
  config_file = write_config_file(tmp_path, one_device(**init))
  proc = run_cli("dense_jax.train", f"--config={config_file}", f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-3000:]
  assert not (tmp_path / "run").exists()
