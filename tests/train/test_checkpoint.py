"""Checkpoints: a damaged newest checkpoint is set aside and the previous one used; a half-written one
(orbax's temporary directory) is ignored; the last good checkpoint is never overwritten."""

import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.train import checkpoint as checkpoint_lib, train_and_evaluate
from tests.train.conftest import read_metrics, tiny_config

TIMING = ("steps_per_sec", "images_per_sec")


def one_device(**overrides):
  return tiny_config(num_devices=1, mesh_shape=(1, 1), **overrides)


def _records(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(workdir)]


def _damage(step_dir: pathlib.Path) -> None:
  """Truncates every array data file of the step's state to half its size."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
  assert files
  for p in files:
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])


@pytest.mark.slow
def test_corrupt_latest_falls_back_to_previous(tmp_path, capsys):
  reference = tmp_path / "reference"
  train_and_evaluate(one_device(), reference)
  # A run stopped after step 8's checkpoint was damaged (e.g. disk trouble): steps 4 and 8 exist.
  workdir = tmp_path / "run"
  train_and_evaluate(one_device(), workdir)
  _damage(workdir / "checkpoints" / "8")
  final = train_and_evaluate(one_device(), workdir)
  out = capsys.readouterr().out
  assert "checkpoint" in out and "damaged" in out and "trying the previous one" in out
  assert "Resuming from step 4" in out
  # The bad step was moved aside, not deleted, and the run redid steps 5..8 exactly.
  assert os.listdir(workdir / "checkpoints_corrupt")[0].startswith("8_")
  assert final["step"] == 8 and final["train_step_compilations"] == 1
  assert _records(workdir) == _records(reference)


def test_half_written_checkpoint_is_ignored(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", save_every=1, async_save=False)
  state = {"w": jnp.arange(4.0)}
  abstract = {"w": jnp.zeros(4)}
  ckpt.save(1, state, {"0": {"position": 1}})
  ckpt.wait()
  # A save killed mid-way leaves only orbax's temporary directory.
  (tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-123").mkdir()
  ckpt.close()
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", save_every=1, async_save=False)
  step, restored, data, unlogged = ckpt.restore_latest(abstract)
  assert step == 1 and data == {"0": {"position": 1}} and unlogged == []
  np.testing.assert_array_equal(restored["w"], np.arange(4.0))
  # An existing step is never overwritten.
  assert not ckpt.save(1, {"w": jnp.zeros(4)}, {"0": {}}, force=True)
  ckpt.close()


def test_no_checkpoint_restores_none(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "c", save_every=1)
  assert ckpt.restore_latest({"w": jnp.zeros(2)}) is None
  ckpt.close()


def test_all_damaged_means_fresh_start(tmp_path, capsys):
  ckpt = checkpoint_lib.Checkpointer(tmp_path / "c", save_every=1, async_save=False)
  ckpt.save(1, {"w": jnp.arange(1000.0)}, {"0": {}})
  ckpt.wait()
  _damage(tmp_path / "c" / "1")
  assert ckpt.restore_latest({"w": jnp.zeros(1000)}) is None
  assert "damaged" in capsys.readouterr().out
  ckpt.close()
