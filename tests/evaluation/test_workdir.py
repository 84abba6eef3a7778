"""`dense_jax.evaluation.workdir.evaluate` on the tiny U-Net of conftest.py (and a fixed-size model).

Checks: the JSON and the PNG are written; the mIoU equals the trainer's own `val/miou` at that step and
an independent NumPy computation (per-class boolean masks, no confusion matrix) on predictions made
directly with `model.apply`; padding to the model's multiple is found; sliding/multi-scale modes run and
reduce to 'whole' where they must; options given as `EvalSettings` or as keywords are the same; an
untrained workdir, bad arguments and a damaged checkpoint give clear errors.
"""

import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dense_jax.evaluation.settings import EvalSettings
from dense_jax.evaluation.workdir import evaluate, result_paths
from tests.evaluation.conftest import DATASET, tiny_config, write_config_file

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _direct_metrics(workdir):
  """mIoU and pixel accuracy computed without dense_jax.metrics: model.apply on the whole split, then
  per-class intersections and unions of boolean masks."""
  from dense_jax import data as data_lib
  from dense_jax.tools import restore
  config = tiny_config()
  model, info, size = restore.build_model(config)
  _, variables = restore.restore_variables(config, workdir)
  it = data_lib.create_iterator(DATASET, "validation", global_batch_size=12, seed=0, train=False,
                                keys=("image", "semantic"), process_index=0, process_count=1)
  batch = next(iter(it))
  it.close()
  pred = np.asarray(jnp.argmax(model.apply(variables, jnp.asarray(batch["image"]), train=False)["semantic"], -1))
  label = batch["semantic"]
  valid = label != info.ignore_label
  ious = []
  for c in range(info.num_classes):
    union = np.sum(((pred == c) | (label == c)) & valid)
    if union:
      ious.append(np.sum((pred == c) & (label == c) & valid) / union)
  return float(np.mean(ious)), float(np.sum((pred == label) & valid) / np.sum(valid))


def test_whole_writes_files_and_matches_trainer_and_direct(trained):
  workdir, final = trained
  result = evaluate(tiny_config(), workdir, mode="whole", verbose=False)
  json_path, png_path = result_paths(workdir, "validation", "whole")
  assert result["files"] == {"json": str(json_path), "png": str(png_path)}
  assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads(json_path.read_text())
  assert saved["miou"] == pytest.approx(result["miou"]) and saved["step"] == 4 == final["step"]
  assert result["examples"] == 12 and result["image_size"] == [32, 32]
  assert np.sum(saved["confusion_matrix"]) == result["pixels"] > 0
  assert set(saved["per_class_iou"]) == set(saved["class_names"])
  assert result["miou"] == pytest.approx(final["val/miou"], abs=1e-12)
  assert result["pixel_accuracy"] == pytest.approx(final["val/pixel_accuracy"], abs=1e-12)
  miou, accuracy = _direct_metrics(workdir)
  assert result["miou"] == pytest.approx(miou, abs=1e-12)
  assert result["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_settings_object_and_keywords_are_the_same(trained):
  workdir, _ = trained
  by_keywords = evaluate(tiny_config(), workdir, mode="multiscale", scales=(1.0,), flip=False, write=False,
                         verbose=False)
  settings = EvalSettings(mode="multiscale", scales=(1.0,), flip=False, write=False, verbose=False)
  by_settings = evaluate(tiny_config(), workdir, settings)
  assert by_settings["confusion_matrix"] == by_keywords["confusion_matrix"]
  assert by_settings["settings"] == by_keywords["settings"]
  # keywords replace fields of the settings given
  assert evaluate(tiny_config(), workdir, settings, mode="whole")["mode"] == "whole"
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['modes'\]"):
    evaluate(tiny_config(), workdir, modes="whole")


def test_figures_drawn_by_the_tasks(trained):
  from PIL import Image
  workdir, _ = trained
  result = evaluate(tiny_config(), workdir, mode="whole", split="validation", verbose=False, num_figures=2)
  grid = np.asarray(Image.open(result["files"]["examples"]))
  assert grid.shape == (2 * 32, 3 * 32, 3)   # rows: image | semantic truth | semantic prediction


def test_config_from_the_workdir_and_padding_found(trained):
  workdir, _ = trained
  # config.json of the run; 33×33 images: the depth-1 U-Net needs even sizes, so they are padded to 34
  result = evaluate(None, workdir, mode="whole", image_size=33, write=False, verbose=False)
  assert result["settings"]["pad_to_multiple"] == 2 and result["image_size"] == [33, 33]
  assert result["files"] == {} and 0 <= result["miou"] <= 1


def test_sliding_and_multiscale(trained, capsys):
  workdir, _ = trained
  whole = evaluate(tiny_config(), workdir, mode="whole", write=False, verbose=False)
  sliding = evaluate(tiny_config(), workdir, mode="sliding", image_size=48, margin=2)
  assert sliding["settings"]["tile"] == [32, 32] and sliding["image_size"] == [48, 48]
  assert result_paths(workdir, "validation", "sliding")[0].exists()
  assert 0 <= sliding["miou"] <= 1 and "mIoU" in capsys.readouterr().out
  # one scale, no flip, the whole image: the same predictions as mode 'whole'
  same = evaluate(tiny_config(), workdir, mode="multiscale", scales=(1.0,), flip=False, write=False,
                  verbose=False)
  assert same["confusion_matrix"] == whole["confusion_matrix"]
  tta = evaluate(tiny_config(), workdir, mode="multiscale", scales=(0.75, 1.0), flip=True, verbose=False)
  assert tta["settings"]["scales"] == [0.75, 1.0] and sum(map(sum, tta["confusion_matrix"])) == whole["pixels"]


def test_untrained_workdir_and_bad_arguments(tmp_path, trained):
  with pytest.raises(ValueError, match="train first"):
    evaluate(tiny_config(), tmp_path)
  workdir, _ = trained
  with pytest.raises(ValueError, match="mode"):
    evaluate(tiny_config(), workdir, mode="tiled")
  with pytest.raises(ValueError, match="step"):
    evaluate(tiny_config(), workdir, step=3)
  with pytest.raises(ValueError, match="split"):
    evaluate(tiny_config(), workdir, split="test")


# orbax's abandoned read coroutines of the failed restore are reported when collected: not an error here
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_config_that_does_not_match_the_checkpoint(trained):
  workdir, _ = trained
  wider = tiny_config()
  wider.model.width = 8
  with pytest.raises(ValueError, match="does not restore"):
    evaluate(wider, workdir, write=False)
  gc.collect()


def _damage_state(step_dir: pathlib.Path) -> None:
  for p in (step_dir / "state").rglob("*"):
    if p.is_file() and "/d/" in str(p):
      p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path, capsys):
  source, _ = trained
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  # An older step holding the same state (a copy), then the newest one damaged, as a crash could leave it.
  shutil.copytree(workdir / "checkpoints" / "4", workdir / "checkpoints" / "2")
  reference = evaluate(tiny_config(), workdir, write=False, verbose=False)
  _damage_state(workdir / "checkpoints" / "4")
  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  capsys.readouterr()
  result = evaluate(None, workdir, write=False, verbose=False)
  out = capsys.readouterr().out
  warnings = [line for line in out.splitlines() if "damaged" in line]
  assert len(warnings) == 1 and "checkpoints/4 is damaged" in warnings[0] and "using step 2" in warnings[0], out
  assert result["step"] == 2 and result["miou"] == reference["miou"]
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before   # read-only
  # Asked for explicitly, or with nothing left to fall back to: a clear error, exit status 2.
  with pytest.raises(ValueError, match=r"no checkpoint under .* can be read \(step 4: "):
    evaluate(None, workdir, step=4, write=False, verbose=False)
  _damage_state(workdir / "checkpoints" / "2")
  config_file = write_config_file(tmp_path / "eval_test_config.py")   # registers the dataset there too
  proc = subprocess.run([sys.executable, "-m", "dense_jax.evaluate", f"--config={config_file}",
                         f"--workdir={workdir}"], cwd=REPO_ROOT,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT)),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1 and errors[0].startswith("ERROR: workdir: no checkpoint under"), proc.stderr
  assert "step 2:" in errors[0]


@pytest.fixture(scope="module")
def trained_fixed_size(tmp_path_factory):
  """Eigen–Fergus (fully connected layers on its scale-1 map) trained 2 steps at 32×32."""
  from dense_jax.train import train_and_evaluate
  workdir = tmp_path_factory.mktemp("eigen_fergus")
  config = tiny_config()
  config.total_steps = config.eval_every = config.checkpoint_every = config.log_every = 2
  config.model = ml_collections.ConfigDict(dict(name="eigen_fergus_narrow", tasks=("depth",)))
  config.tasks = ml_collections.ConfigDict(dict(depth=dict()))
  train_and_evaluate(config, workdir)
  return workdir, config


@pytest.mark.parametrize("kwargs, fed", [
    (dict(image_size=48), "48×48"),                     # whole at another size
    (dict(mode="multiscale"), "40×40"),                 # scales 0.75, 1, 1.25 of 32: 24 pads to 32, 40 does not
])
def test_fixed_input_size_model_says_which_modes_work(trained_fixed_size, kwargs, fed):
  workdir, config = trained_fixed_size
  with pytest.raises(ValueError, match=rf"'eigen_fergus_narrow' takes only 32×32 images.*would feed it {fed}"
                                       r".*mode 'sliding' with the default tile \(32, 32\)"):
    evaluate(config, workdir, write=False, **kwargs)


def test_fixed_input_size_model_evaluates_whole_sliding_and_multiscale_on_tiles(trained_fixed_size):
  workdir, config = trained_fixed_size
  whole = evaluate(config, workdir, write=False)
  assert whole["image_size"] == [32, 32] and np.isfinite(whole["metrics"]["depth/abs_rel"])
  sliding = evaluate(config, workdir, mode="sliding", image_size=48, write=False)
  assert sliding["image_size"] == [48, 48] and np.isfinite(sliding["metrics"]["depth/abs_rel"])
  multiscale = evaluate(config, workdir, mode="multiscale", multiscale_base="sliding", write=False)
  assert np.isfinite(multiscale["metrics"]["depth/abs_rel"])
