"""Sweep launcher: every run of an experiment file, here or as launch scripts for a TPU slice or SLURM.

An experiment file declares its sweep next to `get_config(arg)`:

    def sweep(add, arg=None):
      for rate in (1, 2, 4):
        add(**{"model.dilation": rate})                # run named "model.dilation=2"
      add(name="no_context", **{"model.context": False})

Each `add` is one run: config overrides (dotted keys, passed as `--config.KEY=VALUE`) and an optional
name (default: the overrides, `key=value` joined by `,`). `arg` is the file's argument string
(`file.py:quick` -> arg "quick"), which the sweep also passes to every run — unless the run names its
own with `add(..., arg="quick,model=segnet")` (for settings `get_config` derives from an argument,
which an override of one key cannot change).

    python -m experiments.sweep experiments/receptive_field.py:quick --root runs/rf            # local
    python -m experiments.sweep experiments/receptive_field.py:quick --root runs/rf --parallel 2
    python -m experiments.sweep experiments/receptive_field.py --root gs://b/rf --target tpu \\
        --tpu_name my-v4-32 --zone us-central2-b                                              # prints + writes scripts
    python -m experiments.sweep experiments/receptive_field.py --root /scratch/rf --target slurm \\
        --nodes 2 --gpus_per_node 8

Locally each run trains in `<root>/<run name>` with `python -m dense_jax.train`; a run that finished
(its `sweep_run.json` says `done`) is skipped, and an unfinished one resumes from its last checkpoint,
because the trainer resumes a workdir it finds checkpoints in.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

from dense_jax import paths

RUN_RECORD = "sweep_run.json"   # written by the launcher into each run's workdir


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  config_file: str
  arg: str | None
  overrides: dict

  def config_spec(self) -> str:
    return f"{self.config_file}:{self.arg}" if self.arg else self.config_file

  def train_args(self, workdir: str) -> list[str]:
    """The arguments of `python -m dense_jax.train` for this run."""
    args = ["--config", self.config_spec(), "--workdir", workdir]
    args += [f"--config.{key}={_flag_value(value)}" for key, value in self.overrides.items()]
    return args


def _flag_value(value) -> str:
  # ml_collections parses override values with literal_eval, so tuples/lists keep their repr.
  return str(value) if not isinstance(value, (tuple, list)) else repr(tuple(value))


def _safe_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)


def load_module(path: str):
  """Imports an experiment file by path (it need not be on sys.path)."""
  file = pathlib.Path(path)
  if not file.is_file():
    raise ValueError(f"experiment: expected an existing .py file, got {path!r}")
  spec = importlib.util.spec_from_file_location(f"_experiment_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def collect_runs(spec: str) -> list[Run]:
  """The runs declared by `sweep(add, arg)` in the experiment file `spec` ('file.py[:arg]')."""
  config_file, _, file_arg = spec.partition(":")
  file_arg = file_arg or None
  module = load_module(config_file)
  if not hasattr(module, "sweep"):
    raise ValueError(f"experiment: {config_file} defines no sweep(add, arg=None) function")
  runs: list[Run] = []

  def add(name: str | None = None, *, arg: str | None = None, **overrides):
    if name is None:
      name = ",".join(f"{k}={_flag_value(v)}" for k, v in overrides.items()) or "default"
    name = _safe_name(name)
    if any(run.name == name for run in runs):
      raise ValueError(f"sweep: run names must be unique, got {name!r} twice in {config_file}")
    runs.append(Run(name, config_file, file_arg if arg is None else arg, dict(overrides)))

  module.sweep(add, file_arg)
  if not runs:
    raise ValueError(f"sweep: {config_file} added no runs")
  return runs


# ---------------------------------------------------------------------------------------------
# Local execution.
# ---------------------------------------------------------------------------------------------

def run_status(workdir: paths.Path) -> str:
  record = workdir / RUN_RECORD
  if not record.exists():
    return "new" if not workdir.exists() else "unfinished"
  try:
    return json.loads(record.read_text()).get("status", "unfinished")
  except json.JSONDecodeError:
    return "unfinished"


def _write_record(workdir: paths.Path, run: Run, status: str, **extra) -> None:
  record = {"status": status, "name": run.name, "config": run.config_spec(),
            "overrides": run.overrides, **extra}
  (workdir / RUN_RECORD).write_text(json.dumps(record, indent=1, default=str))


def run_locally(run: Run, root: paths.Path, python: str = sys.executable, quiet: bool = True) -> str:
  """Trains one run (resuming if its workdir has checkpoints); returns its final status."""
  workdir = root / run.name
  if run_status(workdir) == "done":
    print(f"[sweep] {run.name}: done, skipped")
    return "skipped"
  workdir.mkdir(parents=True, exist_ok=True)
  command = [python, "-m", "dense_jax.train", *run.train_args(str(workdir))]
  _write_record(workdir, run, "running", command=shlex.join(command))
  print(f"[sweep] {run.name}: {shlex.join(command)}", flush=True)
  start = time.time()
  if paths.is_remote(workdir):   # object stores have no append: the run's output goes up at its end
    result = subprocess.run(command, stdout=subprocess.PIPE if quiet else None,
                            stderr=subprocess.STDOUT if quiet else None)
    if quiet:
      (workdir / "sweep_log.txt").write_bytes(result.stdout)
  else:
    with (workdir / "sweep_log.txt").open("ab") as log:
      out = log if quiet else None
      result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT if quiet else None)
  status = "done" if result.returncode == 0 else "failed"
  _write_record(workdir, run, status, command=shlex.join(command), returncode=result.returncode,
                seconds=round(time.time() - start, 1))
  print(f"[sweep] {run.name}: {status} in {time.time() - start:.0f}s"
        + ("" if status == "done" else f" (see {workdir / 'sweep_log.txt'})"), flush=True)
  return status


def run_all_locally(runs: list[Run], root: paths.Path, parallel: int = 1, **kwargs) -> dict[str, str]:
  if parallel < 1:
    raise ValueError(f"parallel: expected >= 1, got {parallel}")
  root.mkdir(parents=True, exist_ok=True)
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    statuses = dict(zip((r.name for r in runs), pool.map(lambda r: run_locally(r, root, **kwargs), runs)))
  return statuses


# ---------------------------------------------------------------------------------------------
# Launch scripts for clusters: the same runs, the same configs.
# ---------------------------------------------------------------------------------------------

def tpu_commands(runs: list[Run], root: str, tpu_name: str, zone: str, repo_dir: str = "dense_jax") -> list[str]:
  """One `gcloud ... ssh --worker=all` per run: every worker of the slice runs the same command, and
  `jax.distributed.initialize()` auto-detects the pod topology (no process flags needed on TPU)."""
  commands = []
  for run in runs:
    train = shlex.join(["python", "-m", "dense_jax.train", *run.train_args(f"{root}/{run.name}")])
    remote = f"cd {repo_dir} && {train}"
    commands.append(shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu_name, f"--zone={zone}",
                                "--worker=all", f"--command={remote}"]))
  return commands


def slurm_script(runs: list[Run], root: str, nodes: int, gpus_per_node: int, port: int = 12345,
                 time_limit: str = "24:00:00", partition: str | None = None) -> str:
  """An sbatch array script, one array task per run; each task runs one process per GPU with
  `jax.distributed` set up from SLURM's variables (coordinator = the first node of the task)."""
  if nodes < 1 or gpus_per_node < 1:
    raise ValueError(f"nodes, gpus_per_node: expected >= 1, got {nodes}, {gpus_per_node}")
  cases = "\n".join(
      f"  {i}) ARGS={shlex.quote(shlex.join(run.train_args(f'{root}/{run.name}')))} ;;"
      for i, run in enumerate(runs))
  partition_line = f"#SBATCH --partition={partition}\n" if partition else ""
  return f"""#!/usr/bin/env bash
#SBATCH --job-name=dense_jax_sweep
#SBATCH --array=0-{len(runs) - 1}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={gpus_per_node}
#SBATCH --gpus-per-task=1
#SBATCH --time={time_limit}
{partition_line}#SBATCH --output={root}/slurm-%A_%a.out
set -euo pipefail
case "$SLURM_ARRAY_TASK_ID" in
{cases}
esac
COORDINATOR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):{port}"
# One process per GPU; each reads its own slice of the data.
srun bash -c "python -m dense_jax.train $ARGS \\
  --coordinator_address=$COORDINATOR --num_processes=$SLURM_NTASKS --process_id=\\$SLURM_PROCID"
"""


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("experiment", help="experiment file, optionally with ':arg'")
  parser.add_argument("--root", required=True, help="sweep root; each run writes into <root>/<run name>")
  parser.add_argument("--target", choices=("local", "tpu", "slurm"), default="local")
  parser.add_argument("--parallel", type=int, default=1, help="local runs at a time")
  parser.add_argument("--list", action="store_true", help="only list the runs and their status")
  parser.add_argument("--tpu_name", default="$TPU_NAME")
  parser.add_argument("--zone", default="$ZONE")
  parser.add_argument("--nodes", type=int, default=1)
  parser.add_argument("--gpus_per_node", type=int, default=8)
  parser.add_argument("--partition", default=None)
  parser.add_argument("--script_dir", default=None, help="where to write launch scripts (default: --root)")
  args = parser.parse_args(argv)

  runs = collect_runs(args.experiment)
  if args.list:
    for run in runs:
      print(f"{run_status(paths.as_path(args.root) / run.name):>10}  {run.name}")
    return 0
  if args.target == "local":
    statuses = run_all_locally(runs, paths.as_path(args.root), parallel=args.parallel)
    failed = [name for name, status in statuses.items() if status == "failed"]
    print(f"[sweep] {len(runs)} runs: {len(runs) - len(failed)} finished, {len(failed)} failed"
          + (f": {failed}. Re-run the same command to resume them." if failed else ""))
    return 1 if failed else 0

  script_dir = pathlib.Path(args.script_dir or args.root)
  if "://" in str(script_dir):
    raise ValueError(f"script_dir: expected a local directory for the launch scripts, got {script_dir}")
  script_dir.mkdir(parents=True, exist_ok=True)
  if args.target == "tpu":
    text = "#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(
        tpu_commands(runs, args.root, args.tpu_name, args.zone)) + "\n"
    path = script_dir / "launch_tpu.sh"
  else:
    text = slurm_script(runs, args.root, args.nodes, args.gpus_per_node, partition=args.partition)
    path = script_dir / "launch_slurm.sbatch"
  path.write_text(text)
  os.chmod(path, 0o755)
  print(text)
  print(f"[sweep] wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
