"""The sweep launcher's run collection and its TPU / SLURM launch scripts (no training here)."""

import shlex
import subprocess
import textwrap

import pytest

from experiments import sweep as sweep_lib

EXPERIMENT = textwrap.dedent("""
    def get_config(arg=None):
      raise AssertionError("collecting the runs and writing their commands builds no config")

    def sweep(add, arg=None):
      for rate in (1, 2, 4):
        add(**{"model.dilation": rate})
      add(name="no context", **{"model.context": False, "model.rates": (1, 2)})
""")


@pytest.fixture
def experiment(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text(EXPERIMENT)
  return str(path)


def test_collects_named_runs_with_overrides(experiment):
  runs = sweep_lib.collect_runs(experiment + ":quick")
  assert [r.name for r in runs] == ["model.dilation=1", "model.dilation=2", "model.dilation=4", "no_context"]
  assert runs[1].train_args("W") == ["--config", experiment + ":quick", "--workdir", "W", "--config.model.dilation=2"]
  assert "--config.model.rates=(1, 2)" in runs[3].train_args("W")


def test_tpu_commands_one_per_run_on_every_worker(experiment):
  runs = sweep_lib.collect_runs(experiment)
  commands = sweep_lib.tpu_commands(runs, "gs://bucket/sweep", "my-tpu", "us-central2-b")
  assert len(commands) == len(runs)
  for run, command in zip(runs, commands):
    words = shlex.split(command)
    assert words[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert "--worker=all" in words
    remote = shlex.split(words[-1].removeprefix("--command="))
    assert remote[remote.index("--workdir") + 1] == f"gs://bucket/sweep/{run.name}"
    assert all(arg in remote for arg in run.train_args(f"gs://bucket/sweep/{run.name}"))


def test_slurm_script_selects_each_runs_config_by_array_index(experiment, tmp_path):
  runs = sweep_lib.collect_runs(experiment + ":quick")
  script = sweep_lib.slurm_script(runs, "/scratch/sw", nodes=2, gpus_per_node=4)
  assert f"#SBATCH --array=0-{len(runs) - 1}" in script
  assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=4" in script
  assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid bash
  # Run the script's case statement for every array index: ARGS is a bash array of the trainer's arguments.
  case = script[script.index("case "):script.index("esac") + 4]
  for index, run in enumerate(runs):
    shell = f"SLURM_ARRAY_TASK_ID={index}\n{case}\nprintf '%s\\0' \"${{ARGS[@]}}\""
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == run.train_args(f"/scratch/sw/{run.name}")


def test_bad_experiment_files(tmp_path):
  with pytest.raises(sweep_lib.SweepError, match="experiment"):
    sweep_lib.collect_runs(str(tmp_path / "missing.py"))
  no_sweep = tmp_path / "nosweep.py"
  no_sweep.write_text("def get_config(arg=None):\n  return None\n")
  with pytest.raises(ValueError, match="sweep"):
    sweep_lib.collect_runs(str(no_sweep))
  twice = tmp_path / "twice.py"
  twice.write_text("def sweep(add, arg=None):\n  add(name='a')\n  add(name='a')\n")
  with pytest.raises(ValueError, match="unique"):
    sweep_lib.collect_runs(str(twice))


def test_a_run_can_name_its_own_arg(tmp_path):
  path = tmp_path / "per_run.py"
  path.write_text("def sweep(add, arg=None):\n"
                  "  add(name='a', arg=f'{arg},model=a')\n"
                  "  add(name='b', **{'model.x': 1})\n")
  runs = sweep_lib.collect_runs(f"{path}:quick")
  assert [(r.name, r.arg) for r in runs] == [("a", "quick,model=a"), ("b", "quick")]
  assert runs[0].train_args("W") == ["--config", f"{path}:quick,model=a", "--workdir", "W"]
