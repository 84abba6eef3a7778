"""`python -m dense_jax.evaluate`, the command line: a run of the tiny U-Net of tests/evaluation/conftest.py
evaluated in a subprocess; an untrained workdir exits 2; the module re-exports the library call."""

import json
import os
import pathlib
import subprocess
import sys

from tests.evaluation import conftest as evaluation_run
from tests.evaluation.conftest import write_config_file

trained = evaluation_run.trained   # the fixture: the tiny U-Net's run

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_library_call_is_reexported():
  from dense_jax import evaluate as cli
  from dense_jax.evaluation import workdir
  assert cli.evaluate is workdir.evaluate and cli.result_paths is workdir.result_paths


def test_command_line(trained, tmp_path):
  workdir, _ = trained
  config_file = write_config_file(tmp_path / "eval_test_config.py")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  run = lambda *args: subprocess.run([sys.executable, "-m", "dense_jax.evaluate", f"--config={config_file}",
                                      *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                     timeout=300)
  done = run(f"--workdir={workdir}", "--split=train", "--max_batches=1")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "mIoU" in done.stdout and (workdir / "eval_train_whole.json").exists()
  assert json.loads((workdir / "eval_train_whole.json").read_text())["examples"] == 8
  empty = run(f"--workdir={tmp_path / 'nothing'}")
  assert empty.returncode == 2 and "train first" in empty.stderr
