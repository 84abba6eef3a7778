"""A workdir belongs to one run: a rerun with a config that differs in anything but the free keys is
refused before anything in the workdir is touched; `restart` sets the old run aside (nothing deleted);
a checkpoint of another structure is refused, not called damaged; a damaged one costs one warning line."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from dense_jax.train import (
  checkpoint as checkpoint_lib,
  config as config_lib,
  train_and_evaluate,
  workdir as workdir_lib,
)
from dense_jax.train.loop import ConfigError
from tests.train.conftest import REPO_ROOT, tiny_config, write_config_file
from tests.train.test_failures import count_compilations


def one_device(**overrides):
  return tiny_config(**{"num_devices": 1, "mesh_shape": (1, 1), "total_steps": 4, **overrides})


def snapshot(directory: pathlib.Path) -> dict[str, str]:
  """`{relative path: 'sha1 of the content@mtime'}` of every file under `directory`."""
  return {str(p.relative_to(directory)): hashlib.sha1(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}"
          for p in sorted(directory.rglob("*")) if p.is_file()}


def write_saved_config(workdir: pathlib.Path, config) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config_lib.resolve(config).to_json_best_effort(indent=2, sort_keys=True))


# ---- The comparison (no training).
@pytest.mark.parametrize("overrides,keys", [
    ({"model.width": 8}, ["model.width"]),
    ({"model.name": "segnet_narrow", "model.width": None}, ["model.name", "model.width"]),
    ({"optimizer.name": "sgd"}, ["optimizer.name"]),
    ({"tasks": {"semantic": {"weight": 2.0}}}, ["tasks.semantic.weight"]),
    ({"seed": 1, "batch_size": 16}, ["batch_size", "seed"]),
    ({"dataset.image_size": 16}, ["dataset.image_size"]),
])
def test_structural_differences_are_listed(overrides, keys):
  differences = workdir_lib.config_differences(one_device(), one_device(**overrides))
  assert sorted(differences) == keys, differences
  assert differences[keys[0]][0] != differences[keys[0]][1]


def test_free_keys_and_defaults_are_not_differences():
  free = {"total_steps": 100, "eval_every": 3, "log_every": 7, "stop_at_step": 2, "eval_max_batches": 1,
          "num_figures": 0, "checkpoint_every": 2, "keep_checkpoints": 5, "mesh_shape": (4, 2),
          "num_devices": 8, "dataset.num_threads": 3, "dataset.data_dir": "/elsewhere", "tensorboard": True}
  assert workdir_lib.config_differences(one_device(), one_device(**free)) == {}
  # A default written out equals the default left out (both sides are resolved).
  assert workdir_lib.config_differences(one_device(), one_device(compute_dtype="float32")) == {}
  assert workdir_lib.config_differences(one_device(), one_device(compute_dtype="bfloat16")) == {
      "compute_dtype": ("float32", "bfloat16")}


def test_check_is_read_only_and_says_how_to_proceed(tmp_path):
  workdir = tmp_path / "run"
  assert workdir_lib.check_workdir(workdir, one_device()) is False       # a new workdir
  assert not workdir.exists()
  write_saved_config(workdir, one_device())
  assert workdir_lib.check_workdir(workdir, one_device(total_steps=9)) is False   # resume
  before = snapshot(workdir)
  with pytest.raises(workdir_lib.WorkdirError) as info:
    workdir_lib.check_workdir(workdir, one_device(**{"model.width": 32}))
  message = str(info.value)
  assert "model.width: 4 -> 32" in message and "nothing was changed" in message
  assert "--workdir" in message and "--restart" in message and "previous_runs" in message
  assert "\n" not in message
  assert snapshot(workdir) == before
  assert workdir_lib.check_workdir(workdir, one_device(**{"model.width": 32}), restart=True) is True
  # --restart never sets aside a run of the same config: a rerun after a preemption resumes.
  assert workdir_lib.check_workdir(workdir, one_device(), restart=True) is False


def test_bad_workdir_paths(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"workdir: expected a directory, got .*a_file, which is a file"):
    workdir_lib.check_workdir(a_file, one_device())
  with pytest.raises(workdir_lib.WorkdirError, match=r"a_file is a file, not a directory"):
    workdir_lib.check_workdir(a_file / "run", one_device())
  (tmp_path / "orphan" / "checkpoints" / "4").mkdir(parents=True)
  with pytest.raises(workdir_lib.WorkdirError, match="holds checkpoints but no config.json"):
    workdir_lib.check_workdir(tmp_path / "orphan", one_device())
  (tmp_path / "garbled").mkdir()
  (tmp_path / "garbled" / "config.json").write_text("{not json")
  with pytest.raises(workdir_lib.WorkdirError, match="cannot be read"):
    workdir_lib.check_workdir(tmp_path / "garbled", one_device())


def test_set_aside_moves_the_runs_files_and_keeps_the_rest(tmp_path):
  workdir = tmp_path / "run"
  write_saved_config(workdir, one_device())
  for name in ("metrics.jsonl", "sweep_run.json", "eval_validation_whole.json"):
    (workdir / name).write_text(name)
  (workdir / "checkpoints" / "4").mkdir(parents=True)
  (workdir / "figures").mkdir()
  target = workdir_lib.set_aside_previous_run(workdir)
  assert target.parent == workdir / "previous_runs"
  assert sorted(p.name for p in target.iterdir()) == [
      "checkpoints", "config.json", "eval_validation_whole.json", "figures", "metrics.jsonl"]
  assert sorted(p.name for p in workdir.iterdir()) == ["previous_runs", "sweep_run.json"]


# ---- Checkpoints: another structure is not damage.
def test_checkpoint_of_another_structure_is_refused_not_quarantined(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "c", save_every=1, async_save=False)
  ckpt.save(1, {"w": jnp.arange(4.0), "b": jnp.zeros(2)}, {"0": {}})
  ckpt.wait()
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"c \(1,\) is not saved; w: saved \(4,\) float32, this run \(5,\) float32"):
    ckpt.restore_latest({"w": jnp.zeros(5), "b": jnp.zeros(2), "c": jnp.zeros(1)})
  ckpt.close()
  assert ckpt.steps() == [1] and not (tmp_path / "c_corrupt").exists()


def test_damaged_checkpoint_costs_one_warning_line(tmp_path, capfd):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "c", save_every=1, async_save=False)
  for step in (1, 2):
    ckpt.save(step, {"w": jnp.arange(1000.0) * step}, {"0": {"position": step}})
    ckpt.wait()
  for p in (tmp_path / "c" / "2" / "state").rglob("*"):
    if p.is_file() and "/d/" in str(p):
      p.write_bytes(p.read_bytes()[:10])
  capfd.readouterr()
  restored = ckpt.restore_latest({"w": jnp.zeros(1000)})
  ckpt.close()
  out, err = capfd.readouterr()
  lines = [line for line in (out + err).splitlines() if line.strip()]
  assert restored.step == 1 and restored.iterators == {"0": {"position": 1}}
  assert float(restored.state["w"][1]) == 1.0
  assert len(lines) == 1 and "damaged" in lines[0] and "trying the previous one" in lines[0], lines


# ---- The trainer.
@pytest.mark.slow
def test_rerun_with_another_model_is_refused_before_anything_is_touched(tmp_path):
  workdir = tmp_path / "run"
  train_and_evaluate(one_device(), workdir)
  before = snapshot(workdir)
  with count_compilations() as compiled:
    with pytest.raises(ConfigError, match=r"different config.*model\.width: 4 -> 8"):
      train_and_evaluate(one_device(**{"model.width": 8}), workdir)
  assert not compiled
  assert snapshot(workdir) == before
  assert not (workdir / "checkpoints_corrupt").exists()
  # --restart: the old run is set aside whole, the new one starts from step 0.
  final = train_and_evaluate(one_device(**{"model.width": 8}), workdir, restart=True)
  assert final["step"] == 4
  (previous,) = (workdir / "previous_runs").iterdir()
  assert snapshot(previous) == before
  assert json.loads((workdir / "config.json").read_text())["model"]["width"] == 8
  assert [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()][0] == 1


@pytest.mark.slow
def test_command_line_refusal_is_one_line_and_exit_2(tmp_path):
  workdir = tmp_path / "run"
  write_saved_config(workdir, one_device())
  config_file = write_config_file(tmp_path, one_device(**{"model.width": 8}))
  proc = subprocess.run([sys.executable, "-m", "dense_jax.train", "--config", str(config_file), "--workdir",
                         str(workdir)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1 and "model.width: 4 -> 8" in errors[0] and "Traceback" not in proc.stderr
  assert sorted(p.name for p in workdir.iterdir()) == ["config.json"]
