"""The TPU and SLURM launch scripts, run: `bash launch_tpu.sh` and `sbatch launch_slurm.sbatch` against fake
`gcloud`, `sbatch`, `scontrol`, `srun` and `python` put first on PATH.

Each fake records its argv (one JSON list per call, in `<log>/<tool>.jsonl`) and does what the real one
would do for the script: `gcloud ... ssh --command=C` runs C with bash in a home holding the repository
(`dense_jax/`); `sbatch` runs the script once per array index with SLURM's variables; `scontrol show
hostnames` prints the nodes; `srun` runs its command once per task with SLURM_PROCID set; `python`
only records (with its working directory and SLURM_PROCID). So the trainer command lines recorded are
exactly those the cluster would run.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from experiments import sweep as sweep_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# A config the trainer's schema accepts (the launcher resolves every run's config before writing).
EXPERIMENT = textwrap.dedent("""
    import ml_collections
    from dense_jax.train import config as config_lib

    def get_config(arg=None):
      config = config_lib.default_config()
      config.update(dict(seed=0, total_steps=4, batch_size=8, mesh_shape=(-1, 1), log_every=1, eval_every=4,
                         checkpoint_every=4, optimizer=dict(name="adamw", learning_rate=1e-3)))
      config.model = ml_collections.ConfigDict(dict(name="unet", width=4, depth=1))
      config.dataset.name = "dense_shapes/small_64"
      return config

    def sweep(add, arg=None):
      add(name="a", **{"model.width": 8})
      add(name="b", **{"dataset.data_dir": "/data/it's a \\"dir\\"", "model.depth": 2})
""")

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, re, subprocess, sys
    tool = os.path.basename(sys.argv[0])
    with open(os.path.join(os.environ["FAKE_LOG"], tool + ".jsonl"), "a") as f:
      f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                          "procid": os.environ.get("SLURM_PROCID")}}) + "\\n")
    if tool == "gcloud":
      command = next(a for a in sys.argv if a.startswith("--command="))[len("--command="):]
      sys.exit(subprocess.run(["bash", "-c", command], cwd=os.environ["FAKE_REMOTE_HOME"]).returncode)
    if tool == "sbatch":
      script = sys.argv[-1]
      options = dict(re.findall(r"^#SBATCH --([a-z-]+)=(.*)$", open(script).read(), re.M))
      first, last = map(int, options["array"].split("-"))
      tasks = int(options["nodes"]) * int(options["ntasks-per-node"])
      for index in range(first, last + 1):
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(index), SLURM_JOB_NODELIST="node[1-2]",
                   SLURM_NTASKS=str(tasks))
        if subprocess.run(["bash", script], env=env).returncode:
          sys.exit(1)
    if tool == "scontrol":
      assert sys.argv[1:] == ["show", "hostnames", "node[1-2]"], sys.argv
      print("node1\\nnode2")
    if tool == "srun":
      for procid in range(int(os.environ["SLURM_NTASKS"])):
        if subprocess.run(sys.argv[1:], env=dict(os.environ, SLURM_PROCID=str(procid))).returncode:
          sys.exit(1)
""")


@pytest.fixture
def cluster(tmp_path):
  """(env for running a script against the fakes, function reading a fake's recorded calls)."""
  bin_dir, log, home = tmp_path / "fake_bin", tmp_path / "fake_log", tmp_path / "remote_home"
  for directory in (bin_dir, log, home / "dense_jax"):
    directory.mkdir(parents=True)
  for tool in ("gcloud", "sbatch", "scontrol", "srun", "python"):
    (bin_dir / tool).write_text(FAKE.format(python=sys.executable))
    (bin_dir / tool).chmod(0o755)
  env = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE") and not k.startswith("SLURM_")}
  env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=str(log), FAKE_REMOTE_HOME=str(home))

  def calls(tool):
    path = log / f"{tool}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
  return env, calls


def _write_script(tmp_path, capsys, *flags):
  experiment = tmp_path / "exp.py"
  experiment.write_text(EXPERIMENT)
  assert sweep_lib.main([str(experiment), *flags, "--script_dir", str(tmp_path / "scripts")]) == 0, \
      capsys.readouterr().err
  return sweep_lib.collect_runs(str(experiment))


def test_tpu_script_substitutes_the_exported_name_and_zone(tmp_path, capsys, cluster):
  env, calls = cluster
  root = "gs://bucket/my sweep"
  runs = _write_script(tmp_path, capsys, "--root", root, "--target", "tpu")
  script = tmp_path / "scripts" / "launch_tpu.sh"
  proc = subprocess.run(["bash", str(script)], env=dict(env, TPU_NAME="my tpu 'v4'", ZONE="us-central2-b"),
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  gcloud = calls("gcloud")
  assert len(gcloud) == len(runs)
  for call in gcloud:
    assert call["argv"][:7] == ["compute", "tpus", "tpu-vm", "ssh", "my tpu 'v4'", "--zone=us-central2-b",
                                "--worker=all"]
  trained = calls("python")
  assert [c["argv"] for c in trained] == [["-m", "dense_jax.train", *run.train_args(f"{root}/{run.name}")]
                                          for run in runs]
  assert all(pathlib.Path(c["cwd"]).name == "dense_jax" for c in trained)   # `cd dense_jax` on the worker
  assert "--config.dataset.data_dir=/data/it's a \"dir\"" in trained[1]["argv"]


@pytest.mark.parametrize("missing, flag", [("TPU_NAME", "--tpu_name"), ("ZONE", "--zone")])
def test_tpu_script_without_its_variable_stops_before_any_command(tmp_path, capsys, cluster, missing, flag):
  env, calls = cluster
  _write_script(tmp_path, capsys, "--root", "gs://bucket/sweep", "--target", "tpu")
  env = dict(env, TPU_NAME="my-tpu", ZONE="us-central2-b")
  env[missing] = ""
  proc = subprocess.run(["bash", str(tmp_path / "scripts" / "launch_tpu.sh")], env=env, capture_output=True,
                        text=True)
  assert proc.returncode != 0
  assert f"set {missing}" in proc.stderr and f"or pass {flag}" in proc.stderr, proc.stderr
  assert calls("gcloud") == []


def test_tpu_script_with_name_and_zone_given_needs_no_variables(tmp_path, capsys, cluster):
  env, calls = cluster
  runs = _write_script(tmp_path, capsys, "--root", "gs://b/s", "--target", "tpu", "--tpu_name", "pod $x",
                       "--zone", "europe-west4-a")
  proc = subprocess.run(["bash", str(tmp_path / "scripts" / "launch_tpu.sh")], env=env, capture_output=True,
                        text=True)
  assert proc.returncode == 0, proc.stderr
  assert [c["argv"][4:6] for c in calls("gcloud")] == [["pod $x", "--zone=europe-west4-a"]] * len(runs)


def test_slurm_script_runs_every_run_once_per_gpu(tmp_path, capsys, cluster):
  env, calls = cluster
  root = tmp_path / "scratch" / "sweep"
  runs = _write_script(tmp_path, capsys, "--root", str(root), "--target", "slurm", "--nodes", "1",
                       "--gpus_per_node", "2", "--partition", "gpu")
  script = tmp_path / "scripts" / "launch_slurm.sbatch"
  assert root.is_dir()   # sbatch does not create the directory of its --output files
  assert "#SBATCH --partition=gpu" in script.read_text()
  proc = subprocess.run(["sbatch", str(script)], env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert [c["argv"] for c in calls("sbatch")] == [[str(script)]]
  assert len(calls("srun")) == len(runs) and len(calls("scontrol")) == len(runs)
  expected = [["-m", "dense_jax.train", *run.train_args(f"{root}/{run.name}"), "--coordinator_address=node1:12345",
               "--num_processes=2", f"--process_id={procid}"] for run in runs for procid in (0, 1)]
  assert [c["argv"] for c in calls("python")] == expected
  assert [c["procid"] for c in calls("python")] == ["0", "1"] * len(runs)


def test_slurm_script_outside_sbatch_or_past_the_last_run_stops(tmp_path, capsys, cluster):
  env, calls = cluster
  runs = _write_script(tmp_path, capsys, "--root", str(tmp_path / "sweep"), "--target", "slurm")
  script = str(tmp_path / "scripts" / "launch_slurm.sbatch")
  proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
  assert proc.returncode != 0 and "submit this script with sbatch" in proc.stderr, proc.stderr
  proc = subprocess.run(["bash", script], env=dict(env, SLURM_ARRAY_TASK_ID=str(len(runs))), capture_output=True,
                        text=True)
  assert proc.returncode == 2 and f"no run for array task {len(runs)}" in proc.stderr, proc.stderr
  assert calls("srun") == [] and calls("python") == []
