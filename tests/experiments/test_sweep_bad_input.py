"""Bad input to the sweep launcher: one `ERROR:` line on stderr, exit 2, before any run starts or any script
is written — the command line, the experiment file, the root, and every run's config (resolved in-process
as the trainer would). Nothing is trained here: every case stops before the first run."""

import os
import textwrap

import pytest

from experiments import sweep as sweep_lib

CONFIG = textwrap.dedent("""
    import ml_collections
    from dense_jax.train import config as config_lib

    def get_config(arg=None):
      if arg not in (None, "quick"):
        raise ValueError(f"arg: expected 'quick', got {arg!r}")
      config = config_lib.default_config()
      config.update(dict(seed=0, total_steps=4, batch_size=8, mesh_shape=(-1, 1), log_every=1, eval_every=4,
                         checkpoint_every=4, optimizer=dict(name="adamw", learning_rate=1e-3)))
      config.model = ml_collections.ConfigDict(dict(name="unet", width=4, depth=1))
      config.dataset.name = "dense_shapes/small_64"
      return config
""")


def _experiment(tmp_path, sweep_body: str, name: str = "exp.py") -> str:
  path = tmp_path / name
  path.write_text(CONFIG + "\ndef sweep(add, arg=None):\n" + textwrap.indent(textwrap.dedent(sweep_body), "  "))
  return str(path)


@pytest.fixture
def good(tmp_path):
  return _experiment(tmp_path, """
      add(name="a", **{"model.width": 8})
      add(name="b", **{"model.depth": 2})
  """)


def _error(capsys, *argv) -> str:
  try:
    code = sweep_lib.main([str(a) for a in argv])
  except SystemExit as e:   # argparse's errors exit from parse_args
    code = e.code
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1 and lines[0].startswith("ERROR: "), (code, err)
  assert "Traceback" not in err
  return lines[0]


# --- the command line -------------------------------------------------------------------------

@pytest.mark.parametrize("flags, expected", [
    ([], "--root"),                                                  # required
    (["--root", ""], "--root: expected a directory"),
    (["--root", "R", "--parallel", "0"], "--parallel: expected an int >= 1, got 0"),
    (["--root", "R", "--parallel", "two"], "--parallel: invalid int value: 'two'"),
    (["--root", "R", "--target", "slurm", "--nodes", "0"], "--nodes: expected an int >= 1, got 0"),
    (["--root", "R", "--target", "slurm", "--gpus_per_node", "-1"], "--gpus_per_node: expected an int >= 1"),
    (["--root", "R", "--target", "gpu"], "--target: invalid choice: 'gpu'"),
    (["--root", "R", "--target", "tpu", "--parallel", "2"], "--parallel: applies to --target local only"),
    (["--root", "R", "--tpu_name", "my-tpu"], "--tpu_name: applies to --target tpu only, got --target local"),
    (["--root", "R", "--target", "tpu", "--nodes", "2"], "--nodes: applies to --target slurm only"),
    (["--root", "R", "--script_dir", "S"], "--script_dir: applies to --target tpu or slurm only"),
    (["--root", "R", "--target", "tpu", "--tpu_name", ""], "--tpu_name: expected a value, got an empty string"),
    (["--root", "R", "--target", "slurm", "--partition", "gpu long"], "--partition: expected one SLURM partition"),
    (["--root", "R", "--target", "tpu", "--script_dir", "gs://b/scripts"], "--script_dir: expected a local directory"),
    (["--root", "gs://b/sweep", "--target", "slurm"], "--root: expected a directory of the cluster's shared"),
    (["--root", "R/my sweep", "--target", "slurm"], "--root: expected a directory of the cluster's shared"),
    (["--root", "memory://sweep"], "--root: expected a local path or a gs://"),
    (["--root", "memory://sweep", "--target", "tpu"], "--root: expected a local path or a gs://"),
    (["--root", "R", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_command_line(tmp_path, capsys, monkeypatch, good, flags, expected):
  monkeypatch.chdir(tmp_path)
  before = sorted(os.listdir(tmp_path))
  assert expected in _error(capsys, good, *flags)
  assert sorted(os.listdir(tmp_path)) == before   # nothing written: no R/, no scripts, no 'gs:' or 'memory:'


# --- the experiment file -----------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    (None, "experiment: expected an existing experiment file"),
    ("dir", "which is a directory"),
    ("def get_config():\n  return None\n", "defines no sweep(add, arg=None) function"),
    ("def sweep(add, arg=None)\n  add()\n", "fails to import (SyntaxError"),
    ("import no_such_module_here\n", "fails to import (ModuleNotFoundError"),
    ("def sweep(add, arg=None):\n  add(**{'model.width': 8}, bogus=1, name='a', naem='b')\n"
     "  raise RuntimeError('boom')\n", "raised RuntimeError: boom"),
    ("def sweep(add, arg=None):\n  add('a', 'b')\n", "raised TypeError"),
    ("def sweep(add, arg=None):\n  pass\n", "added no runs"),
    ("def sweep(add, arg=None):\n  add(name='a')\n  add(name='a')\n", "run names must be unique, got 'a' twice"),
    ("def sweep(add, arg=None):\n  add(name='..')\n", "must name a directory under the root, got '..'"),
    ("def sweep(add, arg=None):\n  add(name=3)\n", "add(name=...) expects a string, got 3"),
    ("def sweep(add, arg=None):\n  add(**{'model.rates': {'a': 1}})\n", "override model.rates={'a': 1}"),
])
def test_bad_experiment_file(tmp_path, capsys, body, expected):
  path = tmp_path / "exp.py"
  if body == "dir":
    path.mkdir()
  elif body is not None:
    path.write_text(body)
  assert expected in _error(capsys, path, "--root", tmp_path / "sweep")
  assert not (tmp_path / "sweep").exists()


# --- every run's config, resolved before the first run starts ----------------------------------

@pytest.mark.parametrize("target", ["local", "tpu", "slurm"])
@pytest.mark.parametrize("run_b, expected", [
    ("add(name='b', **{'model.widht': 8})",
     "run 'b': --config.model.widht: config.model has no key 'widht' (it has ['depth', 'name', 'width'])"),
    ("add(name='b', **{'optimzer.learning_rate': 0.1})", "run 'b': --config.optimzer.learning_rate: config has no key"),
    ("add(name='b', total_steps='many')", "run 'b': flag --config.total_steps=many: invalid literal for int()"),
    ("add(name='b', total_steps=0)", "run 'b': config.total_steps: expected an int >= 1, got 0"),
    ("add(name='b', compute_dtype='float16')", "run 'b': config.compute_dtype: expected 'float32' or 'bfloat16'"),
    ("add(name='b', arg='slow')", "run 'b': ", ),   # get_config('slow') raises
])
def test_a_bad_run_stops_the_sweep_before_any_run(tmp_path, capsys, target, run_b, expected):
  experiment = _experiment(tmp_path, f"add(name='a', **{{'model.width': 8}})\n{run_b}\n")
  root = tmp_path / "sweep"
  message = _error(capsys, experiment, "--root", root, "--target", target)
  assert message.startswith(f"ERROR: {expected}") and message.endswith("no run was started"), message
  if "arg=" in run_b:
    assert "arg: expected 'quick', got 'slow'" in message
  assert not root.exists()   # run a was neither trained nor given a script


# --- the root ----------------------------------------------------------------------------------

def test_a_root_that_is_a_file(tmp_path, capsys, good):
  (tmp_path / "sweep").write_text("")
  assert "--root: expected a directory, got" in _error(capsys, good, "--root", tmp_path / "sweep")
  assert "which is a file" in _error(capsys, good, "--root", tmp_path / "sweep", "--list")


def test_a_run_directory_that_is_a_file(tmp_path, capsys, good):
  (tmp_path / "sweep").mkdir()
  (tmp_path / "sweep" / "b").write_text("")
  assert "--root: run 'b' trains in" in _error(capsys, good, "--root", tmp_path / "sweep")
  assert not (tmp_path / "sweep" / "a").exists()


@pytest.mark.parametrize("extra, expected", [([], "--root: expected a writable directory, got gs://"),
                                             (["--list"], "--root: expected a readable path, got gs://")])
def test_a_gs_root_without_credentials(tmp_path, capsys, monkeypatch, good, extra, expected):
  """No credentials and no network here: the first use of the bucket fails, named by the flag, and no
  local directory 'gs:' appears."""
  monkeypatch.chdir(tmp_path)
  assert _error(capsys, good, "--root", "gs://dense-jax-no-such-bucket/sweep", *extra).startswith(f"ERROR: {expected}")
  assert not [name for name in os.listdir(tmp_path) if name.startswith("gs")]


def test_a_tpu_script_for_a_gs_root_goes_to_the_current_directory(tmp_path, capsys, monkeypatch, good):
  monkeypatch.chdir(tmp_path)
  assert sweep_lib.main([good, "--root", "gs://bucket/sweep", "--target", "tpu"]) == 0
  assert "wrote launch_tpu.sh" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path)) == ["exp.py", "launch_tpu.sh"]   # no local 'gs:/bucket/sweep'


@pytest.mark.parametrize("record", ['{"status": "do', "[1, 2]", '{"status": 3}', "\xff"])
def test_a_damaged_run_record_lists_as_unfinished(tmp_path, capsys, good, record):
  (tmp_path / "sweep" / "a").mkdir(parents=True)
  (tmp_path / "sweep" / "a" / sweep_lib.RUN_RECORD).write_bytes(record.encode("latin-1"))
  assert sweep_lib.main([good, "--root", str(tmp_path / "sweep"), "--list"]) == 0
  out = capsys.readouterr().out
  assert "unfinished  a" in out and "new  b" in out


REMOTE_SWEEP = textwrap.dedent('''
    import json, os, sys
    os.environ["EPATH_USE_TF"] = "false"
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem
    fsspec.register_implementation("s3", MemoryFileSystem, clobber=True)
    from dense_jax import paths
    from experiments import sweep as sweep_lib

    experiment, fake_python = sys.argv[1:3]
    root = paths.as_path("s3://bucket/sweep")
    runs = sweep_lib.collect_runs(experiment)
    statuses = sweep_lib.run_all_locally(runs, root, python=fake_python)
    records = {run.name: json.loads((root / run.name / sweep_lib.RUN_RECORD).read_text())["status"] for run in runs}
    again = sweep_lib.run_all_locally(runs, root, python=fake_python)
    listed = sweep_lib.main([experiment, "--root", "s3://bucket/sweep", "--list"])
    print("RESULT " + json.dumps({"statuses": statuses, "records": records, "again": again, "listed": listed,
                                  "log": (root / "a" / "sweep_log.txt").read_text()}))
''')


def test_a_local_sweep_into_a_remote_root_writes_there_and_nothing_local(tmp_path, good):
  """`s3://` served by fsspec's in-memory filesystem (as tests/train/test_remote_workdir.py does), and a
  trainer that only prints its arguments: the records and logs go to the remote root, nothing to a local
  directory named 's3:'."""
  import subprocess
  import sys
  fake_python = tmp_path / "fake_python"
  fake_python.write_text("#!/bin/sh\necho \"trained: $*\"\n")
  fake_python.chmod(0o755)
  (tmp_path / "remote_sweep.py").write_text(REMOTE_SWEEP)
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run([sys.executable, str(tmp_path / "remote_sweep.py"), good, str(fake_python)], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=repo))
  results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  assert proc.returncode == 0 and results, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = __import__("json").loads(results[0][len("RESULT "):])
  assert out["statuses"] == out["records"] == {"a": "done", "b": "done"}
  assert out["again"] == {"a": "skipped", "b": "skipped"} and out["listed"] == 0
  assert "done  a" in proc.stdout and "trained: -m dense_jax.train" in out["log"]
  assert "--workdir s3://bucket/sweep/a" in out["log"]
  assert not [name for name in os.listdir(tmp_path) if name.startswith("s3")]
