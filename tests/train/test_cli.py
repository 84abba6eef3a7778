"""The command line: every config key can be overridden (one case per kind of value, None-default keys
and keys the experiment file leaves out included), and every bad command line is one `ERROR:` line with
exit status 2 (1 is the non-finite-loss status)."""

import os
import subprocess
import sys

import pytest
from absl import flags

from dense_jax.train import cli
from tests.train.conftest import REPO_ROOT, tiny_config, write_config_file

QUICK = "experiments/unet_dense_shapes.py:quick"


def parse(monkeypatch, spec: str, *overrides: str):
  """The config `--config=spec overrides...` gives, parsed as the programs parse it."""
  argv = ["prog", f"--config={spec}", *overrides]
  monkeypatch.setattr(sys, "argv", argv)   # ml_collections finds the overrides in sys.argv
  monkeypatch.chdir(REPO_ROOT)
  flag_values = flags.FlagValues()
  holder = cli.define_config_flag("test", flag_values=flag_values)
  flag_values(argv)
  return holder.value


@pytest.mark.parametrize("override,key,expected", [
    ("--config.total_steps=123", "total_steps", 123),                                  # int
    ("--config.optimizer.learning_rate=0.01", "optimizer.learning_rate", 0.01),        # float
    ("--config.optimizer.name=sgd", "optimizer.name", "sgd"),                          # str
    ("--config.tensorboard=false", "tensorboard", False),                              # bool
    ("--config.dataset.augment=False", "dataset.augment", False),                      # bool
    ("--config.mesh_shape=(1, 2)", "mesh_shape", (1, 2)),                              # tuple
    ("--config.dataset.image_size=64", "dataset.image_size", 64),                      # None -> int
    ("--config.dataset.image_size=(64, 48)", "dataset.image_size", (64, 48)),          # None -> tuple
    ("--config.dataset.data_dir=/data/voc", "dataset.data_dir", "/data/voc"),          # None -> str
    ("--config.stop_at_step=500", "stop_at_step", 500),                                # None -> int
    ("--config.eval_max_batches=2", "eval_max_batches", 2),
    ("--config.dataset.input_shards=4", "dataset.input_shards", 4),
    ("--config.num_devices=1", "num_devices", 1),
])
def test_every_kind_of_key_can_be_overridden(monkeypatch, override, key, expected):
  config = parse(monkeypatch, QUICK, override)
  node = config
  for part in key.split("."):
    node = node[part]
  assert node == expected and type(node) is type(expected), (node, expected)


def test_keys_the_experiment_file_leaves_out_can_be_overridden(monkeypatch, tmp_path):
  # tiny_config sets no stop_at_step, image_size, compute_dtype, ...: the trainer's optional keys are added.
  spec = str(write_config_file(tmp_path, tiny_config()))
  config = parse(monkeypatch, spec, "--config.stop_at_step=3", "--config.dataset.image_size=16",
                 "--config.compute_dtype=bfloat16", "--config.sharding.spatial=true")
  assert (config.stop_at_step, config.dataset.image_size, config.compute_dtype) == (3, 16, "bfloat16")
  assert config.sharding.spatial is True and config.model.width == 4   # the file's own values are kept
  assert parse(monkeypatch, spec).stop_at_step is None


def test_a_typo_is_still_refused(monkeypatch):
  with pytest.raises((KeyError, AttributeError)):
    parse(monkeypatch, QUICK, "--config.stop_at_stpe=3")


def run_cli(module, *args, cwd=REPO_ROOT):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    ([], "ERROR: --workdir is required"),
    (["--workdir={tmp}/a_file"], "which is a file"),
    (["--workdir={tmp}/run", "--config.total_steps=ten"],
     "ERROR: flag --config.total_steps=ten: invalid literal"),
    (["--workdir={tmp}/run", "--worrkdir={tmp}"], "ERROR: Unknown command line flag 'worrkdir'"),
    (["--workdir={tmp}/run", "stray"], "ERROR: unexpected arguments ['stray']"),
    (["--workdir={tmp}/run", "--config.dataset.image_size=30"],   # depth-2 U-Net: needs a multiple of 4
     "ERROR: images: expected height and width divisible by 2^depth = 4"),
])
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, args, message):
  (tmp_path / "a_file").write_text("x")
  config_file = write_config_file(tmp_path, tiny_config(**{"model.depth": 2}))
  proc = run_cli("dense_jax.train", f"--config={config_file}", *[a.format(tmp=tmp_path) for a in args])
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("spec,message", [
    ("experiments/no_such_file.py", "no such experiment file 'experiments/no_such_file.py'"),
    (QUICK + "k", "unknown option 'quickk'"),
])
def test_bad_experiment_file_or_argument(tmp_path, spec, message):
  for module in ("dense_jax.train", "dense_jax.evaluate"):
    proc = run_cli(module, f"--config={spec}", f"--workdir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("ERROR") and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
