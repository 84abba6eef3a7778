"""Determinism and resumption: same config twice → identical metrics; stopping at step k (by running
fewer steps, and by SIGTERM to a subprocess) and rerunning → the uninterrupted run's metrics and state."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dense_jax.train import train_and_evaluate
from tests.train.conftest import read_metrics, tiny_config, write_config_file

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMING = ("steps_per_sec", "images_per_sec")


def one_device(**overrides):
  return tiny_config(num_devices=1, mesh_shape=(1, 1), **overrides)


def records(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(workdir)]


def final_state(workdir, step=8):
  return ocp.StandardCheckpointer().restore(pathlib.Path(workdir) / "checkpoints" / str(step) / "state")


def assert_same_state(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  final = train_and_evaluate(one_device(), workdir)
  return workdir, final


def test_same_config_twice_gives_identical_metrics(reference, tmp_path):
  ref_dir, ref_final = reference
  final = train_and_evaluate(one_device(), tmp_path)
  assert records(tmp_path) == records(ref_dir)
  assert {k: v for k, v in final.items() if k not in TIMING + ("wall_time_s",)} == {
      k: v for k, v in ref_final.items() if k not in TIMING + ("wall_time_s",)}


def test_fewer_steps_then_resume_equals_uninterrupted(reference, tmp_path):
  ref_dir, ref_final = reference
  stopped = train_and_evaluate(one_device(stop_at_step=3), tmp_path)
  assert stopped["step"] == 3 and sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  final = train_and_evaluate(one_device(), tmp_path)
  assert final["step"] == 8 and final["train_step_compilations"] == 1
  assert records(tmp_path) == records(ref_dir)
  assert final["val/miou"] == ref_final["val/miou"]
  assert_same_state(final_state(tmp_path), final_state(ref_dir))


def test_sigterm_saves_and_rerun_resumes(reference, tmp_path):
  ref_dir, _ = reference
  config = one_device()
  config_file = write_config_file(tmp_path, config)
  workdir = tmp_path / "run"
  env = dict(os.environ, ENGINE_TEST_SLOW="0.05")   # ~0.4 s per step, so the signal lands mid-run
  proc = subprocess.Popen([sys.executable, "-m", "dense_jax.train", "--config", str(config_file),
                           "--workdir", str(workdir)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      if (workdir / "metrics.jsonl").exists() and any(r["step"] >= 2 for r in read_metrics(workdir)):
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, out
  assert "Stopped by SIGTERM" in out, out
  saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
  assert saved and 2 <= max(saved) < 8
  final = train_and_evaluate(config, workdir)
  assert final["step"] == 8
  assert records(workdir) == records(ref_dir)
  assert_same_state(final_state(workdir), final_state(ref_dir))


def test_rerunning_a_finished_run_only_evaluates(reference, tmp_path):
  ref_dir, ref_final = reference
  workdir = tmp_path / "copy"
  shutil.copytree(ref_dir, workdir)
  before = (workdir / "metrics.jsonl").read_text()
  final = train_and_evaluate(one_device(), workdir)
  assert final["step"] == 8 and final["val/miou"] == ref_final["val/miou"]
  assert (workdir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("resume_from", [5, 4])
def test_rows_after_resume_average_the_same_steps(tmp_path, resume_from):
  """log_every=3: the row of step 6 averages steps 4–6 whether or not the run stopped at step 5 (and
  resumed from the checkpoint of step 5, or of step 4 as after a kill between the two saves)."""
  config = dict(log_every=3, checkpoint_every=4)
  reference = train_and_evaluate(one_device(**config), tmp_path / "reference")
  workdir = tmp_path / "resumed"
  train_and_evaluate(one_device(stop_at_step=5, **config), workdir)
  assert [r["step"] for r in read_metrics(workdir)] == [3, 4]   # the train row of 3, the eval row of 4
  if resume_from == 4:
    shutil.rmtree(workdir / "checkpoints" / "5")
  final = train_and_evaluate(one_device(**config), workdir)
  assert records(workdir) == records(tmp_path / "reference")
  assert final["loss"] == reference["loss"]
