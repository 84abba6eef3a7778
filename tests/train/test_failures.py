"""A diverging run stops naming the step and keeps its last good checkpoint; bad input fails with a
clear message before anything is compiled."""

import contextlib
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dense_jax.train import NonFiniteLossError, train_and_evaluate
from dense_jax.train.loop import ConfigError
from tests.train.conftest import REPO_ROOT, tiny_config


@contextlib.contextmanager
def count_compilations():
  """Counts XLA compilations (and persistent-cache loads) while the block runs."""
  events = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event.startswith(("/jax/core/compile/", "/jax/compilation_cache/")):
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  # Plain SGD with an absurd learning rate: the weights explode after the first update.
  config = tiny_config(num_devices=1, mesh_shape=(1, 1), checkpoint_every=1, eval_every=100,
                       optimizer=dict(name="sgd", learning_rate=1e30, momentum=0.0))
  with pytest.raises(NonFiniteLossError, match=r"at step (\d+): stopped without saving") as info:
    train_and_evaluate(config, tmp_path)
  bad_step = int(info.value.args[0].split("at step ")[1].split(":")[0])
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert saved and max(saved) == bad_step - 1, (saved, bad_step)
  assert f"last good checkpoint is step {bad_step - 1}" in str(info.value)
  assert "a rerun resumes from that checkpoint" in str(info.value)
  state = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / str(max(saved)) / "state")
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))


@pytest.mark.slow
def test_non_finite_loss_before_any_checkpoint_promises_no_resume(tmp_path):
  config = tiny_config(num_devices=1, mesh_shape=(1, 1), checkpoint_every=100, eval_every=100,
                       optimizer=dict(name="sgd", learning_rate=1e30, momentum=0.0))
  with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet") as info:
    train_and_evaluate(config, tmp_path)
  assert "resumes" not in str(info.value)


@pytest.mark.parametrize("overrides,match", [
    (dict(learning_rate_typo=1.0), r"config: unknown keys \['learning_rate_typo'\]"),
    ({"optimizer.lr": 0.1}, r"config.optimizer: unknown keys \['lr'\]"),
    ({"dataset.shuffle": True}, r"config.dataset: unknown keys \['shuffle'\]"),
    (dict(mesh_shape=(3, -1)), r"config.mesh_shape: \(3, -1\) needs the device count \(8\)"),
    (dict(mesh_shape=(4, 4)), r"config.mesh_shape: expected data × model = the number of devices \(8\)"),
    (dict(batch_size=6, mesh_shape=(4, 2)), r"config.batch_size: expected a multiple of the 'data' mesh axis size 4"),
    (dict(eval_batch_size=4, mesh_shape=(8, 1)), r"config.eval_batch_size: expected a multiple of the 'data'"),
    ({"dataset.name": "no_such_dataset"}, r"dataset: expected one of \[.*\], got 'no_such_dataset'"),
    ({"model.name": "no_such_model"}, r"model: expected one of \[.*'unet'.*\], got 'no_such_model'"),
    ({"model.widht": 8}, r"model 'unet': bad arguments"),
    ({"optimizer.name": "adam"}, r"config.optimizer.name: expected 'sgd' or 'adamw'"),
])
def test_bad_input_fails_before_compiling(overrides, match, tmp_path):
  config = tiny_config(**overrides)
  with count_compilations() as compiled:
    with pytest.raises(ConfigError, match=match):
      train_and_evaluate(config, tmp_path)
  assert not compiled
  assert not (tmp_path / "checkpoints").exists()


def test_missing_dataset_files_fail_before_compiling(tmp_path):
  config = tiny_config(**{"dataset.name": "voc2012", "dataset.data_dir": str(tmp_path / "nowhere"),
                          "dataset.image_size": 32, "dataset.eval_split": "validation"})
  with count_compilations() as compiled:
    with pytest.raises(ConfigError, match="nowhere"):
      train_and_evaluate(config, tmp_path)
  assert not compiled


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [
    ("--config.mesh_shape=(3,-1)", "ERROR: config.mesh_shape: (3, -1) needs the device count"),
    ("--config.optimizer.lr=0.1", "ERROR: --config.optimizer.lr: config.optimizer has no key 'lr' (it has ["),
])
def test_cli_reports_bad_override_without_traceback(override, message, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "dense_jax.train", "--config", "experiments/unet_dense_shapes.py:quick",
       "--workdir", str(tmp_path), override],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert proc.returncode == 2, proc.stderr
  assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
