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

The cluster targets write one script into `--script_dir` (default: the root if it is local, else the
current directory) and print it. `launch_tpu.sh` runs the runs one after another with `gcloud compute tpus
tpu-vm ssh --worker=all`; without `--tpu_name` / `--zone` it reads `$TPU_NAME` / `$ZONE` when it runs and
stops, naming the variable, if one is unset. `launch_slurm.sbatch` is an array job, one task per run
(`sbatch launch_slurm.sbatch`); `--root` must then be a local path of the cluster's shared filesystem.
Each run's trainer arguments reach the trainer as they are, values with spaces or quotes included.

Bad input is one `ERROR: ...` line on stderr and exit 2 (as in the trainer, `dense_jax.train.cli`), before
any run starts or any script is written: the command line (a flag of another target, `--parallel 0`, a
remote `--script_dir`), the experiment file (missing, no `sweep`, a run name twice), the root (a scheme
no filesystem serves, a bucket that cannot be written), and every run's config, resolved here as the
trainer would resolve it (an override naming a key the config lacks, a value of the wrong type or out of
range), named by the run.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (gs:// through tf.io.gfile) start-up chatter
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from dense_jax import paths  # pylint: disable=g-import-not-at-top

RUN_RECORD = "sweep_run.json"   # written by the launcher into each run's workdir
# The flags that only one kind of target uses: given with another target, they would be ignored.
TARGET_FLAGS = {"parallel": ("local",), "tpu_name": ("tpu",), "zone": ("tpu",), "nodes": ("slurm",),
                "gpus_per_node": ("slurm",), "partition": ("slurm",), "script_dir": ("tpu", "slurm")}
DEFAULTS = {"parallel": 1, "nodes": 1, "gpus_per_node": 8}


class SweepError(ValueError):
  """Bad input to the launcher or the report; their `main` prints it as one `ERROR:` line, exit 2."""


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  config_file: str
  arg: str | None
  overrides: dict

  def config_spec(self) -> str:
    return f"{self.config_file}:{self.arg}" if self.arg else self.config_file

  def override_args(self) -> list[str]:
    """`--config.KEY=VALUE` for each override."""
    return [f"--config.{key}={_flag_value(value)}" for key, value in self.overrides.items()]

  def train_args(self, workdir: str) -> list[str]:
    """The arguments of `python -m dense_jax.train` for this run."""
    return ["--config", self.config_spec(), "--workdir", workdir, *self.override_args()]


def _flag_value(value) -> str:
  # ml_collections parses override values with literal_eval, so tuples/lists keep their repr.
  return str(value) if not isinstance(value, (tuple, list)) else repr(tuple(value))


def _safe_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)


def one_line(error: BaseException) -> str:
  """`error` as one line, its type first (for `ERROR:` lines)."""
  text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_module(path: str, key: str = "experiment"):
  """Imports an experiment file by path (it need not be on sys.path); SweepError naming `key` if the
  file is missing or fails to import."""
  file = pathlib.Path(path)
  if not path or not file.is_file():
    raise SweepError(f"{key}: expected an existing experiment file, path.py[:arg], got {path!r}"
                     + (", which is a directory" if path and file.is_dir() else ", which does not exist"))
  spec = importlib.util.spec_from_file_location(f"_experiment_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # whatever the user's file raises
    raise SweepError(f"{key}: {path} fails to import ({one_line(e)}); fix the file, or check that it "
                     f"runs with `python {path}`") from None
  return module


_VALUE_TYPES = (bool, int, float, str, type(None))


def _check_value(value) -> bool:
  if isinstance(value, (tuple, list)):
    return all(_check_value(v) for v in value)
  return isinstance(value, _VALUE_TYPES)


def collect_runs(spec: str) -> list[Run]:
  """The runs declared by `sweep(add, arg)` in the experiment file `spec` ('file.py[:arg]'); SweepError
  for a file without `sweep`, no runs, a run name twice or one that is no directory name, an override
  value that cannot be written as a flag."""
  config_file, _, file_arg = spec.partition(":")
  file_arg = file_arg or None
  module = load_module(config_file)
  if not callable(getattr(module, "sweep", None)):
    raise SweepError(f"experiment: {config_file} defines no sweep(add, arg=None) function; add one that "
                     f"calls add(**overrides) once per run (see experiments/sweep.py)")
  runs: list[Run] = []

  def add(name: str | None = None, *, arg: str | None = None, **overrides):
    if name is not None and not isinstance(name, str):
      raise SweepError(f"sweep: add(name=...) expects a string, got {name!r} in {config_file}")
    if arg is not None and not isinstance(arg, str):
      raise SweepError(f"sweep: add(arg=...) expects a string, got {arg!r} in {config_file}")
    for key, value in overrides.items():
      if not _check_value(value):
        raise SweepError(f"sweep: override {key}={value!r} in {config_file}: expected a bool, int, float, str, "
                         f"None or a tuple of them (a value the command line can carry), got {type(value).__name__}")
    if name is None:
      name = ",".join(f"{k}={_flag_value(v)}" for k, v in overrides.items()) or "default"
    name = _safe_name(name)
    if name in ("", ".", ".."):
      raise SweepError(f"sweep: a run name must name a directory under the root, got {name!r} in {config_file}")
    if any(run.name == name for run in runs):
      raise SweepError(f"sweep: run names must be unique, got {name!r} twice in {config_file}")
    runs.append(Run(name, config_file, file_arg if arg is None else arg, dict(overrides)))

  try:
    module.sweep(add, file_arg)
  except SweepError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # whatever the user's sweep raises
    raise SweepError(f"experiment: sweep(add, {file_arg!r}) of {config_file} raised {one_line(e)}") from None
  if not runs:
    raise SweepError(f"sweep: {config_file} added no runs (with arg {file_arg!r}); sweep(add, arg) must call "
                     f"add(...) at least once")
  return runs


def check_configs(runs: list[Run]) -> None:
  """Builds and resolves every run's config in-process as `python -m dense_jax.train` would (its
  `--config` flag, the overrides, `dense_jax.train.config.resolve`), so that a bad override stops the
  sweep before any run starts; SweepError naming the first bad run and its key."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  from dense_jax.train import (
    cli,  # pylint: disable=g-import-not-at-top
    config as config_lib,  # pylint: disable=g-import-not-at-top
  )
  for run in runs:
    argv = ["dense_jax.train", "--config", run.config_spec(), *run.override_args()]
    flag_values = flags.FlagValues()
    holder = cli.define_config_flag("Experiment file.", flag_values, sys_argv=argv)
    try:
      flag_values(argv)
      config_lib.resolve(holder.value)
      continue
    except Exception as e:  # pylint: disable=broad-except  # the trainer's parser and schema errors
      message = cli.bad_flags_message(argv, "dense_jax.train", e) or f"ERROR: {one_line(e)}"
    message = message.removeprefix("ERROR: ").replace(" (python -m dense_jax.train --helpshort lists the flags)", "")
    raise SweepError(f"run {run.name!r}: {message}; no run was started")


def check_root(root: str, key: str = "--root", *, create: bool) -> paths.Path:
  """`root` as a path: a scheme no filesystem serves, an existing file, or a directory that cannot be
  written (`create`) or read is a SweepError / RemotePathError naming `key`."""
  if not root.strip():
    raise SweepError(f"{key}: expected a directory (local or gs://), got an empty string")
  path = paths.as_path(root, key)
  if paths.is_remote(root):
    if create:
      paths.check_writable(root, key)
    else:
      paths.check_readable(root, key)
    return path
  if path.exists() and not path.is_dir():
    raise SweepError(f"{key}: expected a directory, got {root}, which is a file")
  if create:
    try:
      path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise SweepError(f"{key}: expected a directory that can be created, got {root} ({one_line(e)})") from None
    if not os.access(path, os.W_OK | os.X_OK):
      raise SweepError(f"{key}: expected a writable directory, got {root}, which this user cannot write")
  return path


# ---------------------------------------------------------------------------------------------
# Local execution.
# ---------------------------------------------------------------------------------------------

def run_status(workdir: paths.Path) -> str:
  """'new' (no workdir), 'done' / 'failed' / 'running' (its record says), else 'unfinished' — also for a
  record cut short or damaged, so that the run is trained again (resuming from its checkpoints)."""
  record = workdir / RUN_RECORD
  if not record.exists():
    return "new" if not workdir.exists() else "unfinished"
  try:
    status = json.loads(record.read_text()).get("status", "unfinished")
  except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
    return "unfinished"
  return status if isinstance(status, str) else "unfinished"


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
  if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
    raise SweepError(f"--parallel: expected an int >= 1 (local runs at a time), got {parallel!r}")
  for run in runs:
    if (root / run.name).exists() and not (root / run.name).is_dir():
      raise SweepError(f"--root: run {run.name!r} trains in {root / run.name}, which is a file; move it away")
  root.mkdir(parents=True, exist_ok=True)
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    statuses = dict(zip((r.name for r in runs), pool.map(lambda r: run_locally(r, root, **kwargs), runs)))
  return statuses


# ---------------------------------------------------------------------------------------------
# Launch scripts for clusters: the same runs, the same configs.
# ---------------------------------------------------------------------------------------------

# Shell words for values left to the environment of whoever runs the script; the script's first lines
# stop it with this message when the variable is unset or empty.
_TPU_VARIABLES = {"tpu_name": ("TPU_NAME", "the name of the TPU VM"), "zone": ("ZONE", "its zone")}


def _root_text(root: str) -> str:
  return root.rstrip("/") or "/"


def tpu_commands(runs: list[Run], root: str, tpu_name: str | None, zone: str | None,
                 repo_dir: str = "dense_jax") -> list[str]:
  """One `gcloud ... ssh --worker=all` per run: every worker of the slice runs the same command, and
  `jax.distributed.initialize()` auto-detects the pod topology (no process flags needed on TPU).
  `tpu_name` / `zone` None: the command reads `$TPU_NAME` / `$ZONE` when it runs (see `tpu_script`)."""
  name_word = shlex.quote(tpu_name) if tpu_name is not None else '"$TPU_NAME"'
  zone_word = shlex.quote(f"--zone={zone}") if zone is not None else '"--zone=$ZONE"'
  root = _root_text(root)
  commands = []
  for run in runs:
    train = shlex.join(["python", "-m", "dense_jax.train", *run.train_args(f"{root}/{run.name}")])
    remote = f"cd {shlex.quote(repo_dir)} && {train}"
    commands.append(" ".join(["gcloud compute tpus tpu-vm ssh", name_word, zone_word, "--worker=all",
                              shlex.quote(f"--command={remote}")]))
  return commands


def tpu_script(runs: list[Run], root: str, tpu_name: str | None = None, zone: str | None = None) -> str:
  """A bash script running `tpu_commands` one after another (the first failure stops it); a TPU name or
  zone not given here is read from `$TPU_NAME` / `$ZONE`, and the script stops before the first command,
  naming the variable, when it is unset."""
  checks = [f': "${{{variable}:?set {variable} ({what}) or pass --{flag} to experiments.sweep}}"'
            for flag, (variable, what) in _TPU_VARIABLES.items() if {"tpu_name": tpu_name, "zone": zone}[flag] is None]
  return "\n".join(["#!/usr/bin/env bash",
                    f"# The {len(runs)} runs of a sweep, one after another on every worker of a TPU slice "
                    f"(written by experiments.sweep).",
                    "set -euo pipefail", *checks, *tpu_commands(runs, root, tpu_name, zone)]) + "\n"


def slurm_script(runs: list[Run], root: str, nodes: int, gpus_per_node: int, port: int = 12345,
                 time_limit: str = "24:00:00", partition: str | None = None) -> str:
  """An sbatch array script, one array task per run; each task runs one process per GPU with
  `jax.distributed` set up from SLURM's variables (coordinator = the first node of the task). Each
  run's trainer arguments are a bash array, so every value reaches the trainer as one argument."""
  for key, value in (("nodes", nodes), ("gpus_per_node", gpus_per_node)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise SweepError(f"--{key}: expected an int >= 1, got {value!r}")
  root = _root_text(root)
  cases = "\n".join(
      f"  {i}) ARGS=({' '.join(shlex.quote(a) for a in run.train_args(f'{root}/{run.name}'))}) ;;"
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
# The {len(runs)} runs of a sweep as one array job, one run per array task (written by experiments.sweep).
set -euo pipefail
: "${{SLURM_ARRAY_TASK_ID:?submit this script with sbatch: each of its array tasks is one run of the sweep}}"
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "ERROR: no run for array task $SLURM_ARRAY_TASK_ID: the sweep has runs 0-{len(runs) - 1}" >&2; exit 2 ;;
esac
HOSTS="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"
COORDINATOR="${{HOSTS%%$'\\n'*}}:{port}"
# One process per GPU; each reads its own slice of the data. SLURM_PROCID differs per process, so the
# shell that srun starts in each one expands it.
srun bash -c 'exec python -m dense_jax.train "$@" --process_id="$SLURM_PROCID"' dense_jax.train "${{ARGS[@]}}" \\
  --coordinator_address="$COORDINATOR" --num_processes="$SLURM_NTASKS"
"""


def _parser() -> argparse.ArgumentParser:
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  parser = cli.ArgumentParser(prog="experiments.sweep", description=__doc__.split("\n")[0])
  parser.add_argument("experiment", help="experiment file, optionally with ':arg'")
  parser.add_argument("--root", required=True, help="sweep root; each run writes into <root>/<run name>")
  parser.add_argument("--target", choices=("local", "tpu", "slurm"), default="local")
  parser.add_argument("--parallel", type=int, default=None, help="local runs at a time (default 1)")
  parser.add_argument("--list", action="store_true", help="only list the runs and their status")
  parser.add_argument("--tpu_name", default=None, help="TPU VM to run on (default: $TPU_NAME when the script runs)")
  parser.add_argument("--zone", default=None, help="its zone (default: $ZONE when the script runs)")
  parser.add_argument("--nodes", type=int, default=None, help="SLURM nodes per run (default 1)")
  parser.add_argument("--gpus_per_node", type=int, default=None, help="SLURM GPUs per node (default 8)")
  parser.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
  parser.add_argument("--script_dir", default=None,
                      help="local directory for the launch script (default: --root if it is local, else .)")
  return parser


def check_args(args: argparse.Namespace) -> None:
  """Flags of another target, and bad values, are SweepErrors; fills in the defaults."""
  for name, targets in TARGET_FLAGS.items():
    if getattr(args, name) is not None and args.target not in targets:
      raise SweepError(f"--{name}: applies to --target {' or '.join(targets)} only, got --target {args.target}; "
                       f"leave it out or pass --target {targets[0]}")
  for name, default in DEFAULTS.items():
    value = getattr(args, name)
    if value is None:
      setattr(args, name, default)
    elif value < 1:
      raise SweepError(f"--{name}: expected an int >= 1, got {value}")
  if not args.root.strip():
    raise SweepError("--root: expected a directory (local or gs://), got an empty string")
  for name in ("tpu_name", "zone", "partition", "script_dir"):
    value = getattr(args, name)
    if value is not None and not value.strip():
      raise SweepError(f"--{name}: expected a value, got an empty string; leave the flag out for its default")
  if args.partition is not None and re.search(r"\s", args.partition):
    raise SweepError(f"--partition: expected one SLURM partition name, got {args.partition!r}")
  if args.target == "slurm" and not args.list:
    if paths.is_remote(args.root) or re.search(r"\s", args.root):
      raise SweepError(f"--root: expected a directory of the cluster's shared filesystem without spaces for "
                       f"--target slurm (sbatch writes each task's output there, #SBATCH --output), got {args.root!r}")
  if args.script_dir is not None and (paths.is_remote(args.script_dir) or "://" in args.script_dir):
    raise SweepError(f"--script_dir: expected a local directory for the launch script, got {args.script_dir}")


def _main(argv: list[str] | None) -> int:
  args = _parser().parse_args(argv)
  check_args(args)
  runs = collect_runs(args.experiment)
  if args.list:
    root = check_root(args.root, create=False)
    for run in runs:
      print(f"{run_status(root / run.name):>10}  {run.name}")
    return 0
  check_configs(runs)
  if args.target == "local":
    root = check_root(args.root, create=True)
    statuses = run_all_locally(runs, root, parallel=args.parallel)
    failed = [name for name, status in statuses.items() if status == "failed"]
    print(f"[sweep] {len(runs)} runs: {len(runs) - len(failed)} finished, {len(failed)} failed"
          + (f": {failed}. Re-run the same command to resume them." if failed else ""))
    return 1 if failed else 0

  paths.as_path(args.root, "--root")   # a scheme no filesystem serves
  if args.target == "slurm":   # sbatch does not create the directory of #SBATCH --output
    check_root(args.root, create=True)
  script_dir = check_root(args.script_dir or (args.root if not paths.is_remote(args.root) else "."),
                          "--script_dir", create=True)
  if args.target == "tpu":
    text = tpu_script(runs, args.root, args.tpu_name, args.zone)
    path = script_dir / "launch_tpu.sh"
    how = f"bash {shlex.quote(str(path))}"
  else:
    text = slurm_script(runs, args.root, args.nodes, args.gpus_per_node, partition=args.partition)
    path = script_dir / "launch_slurm.sbatch"
    how = f"sbatch {shlex.quote(str(path))}"
  path.write_text(text)
  os.chmod(path, 0o755)
  print(text)
  print(f"[sweep] wrote {path}; launch with: {how}")
  return 0


def main(argv: list[str] | None = None) -> int:
  """The command line (module docstring); bad input is one `ERROR:` line on stderr and exit 2."""
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  try:
    return _main(argv)
  except (SweepError, paths.RemotePathError) as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_BAD_CONFIG


if __name__ == "__main__":
  sys.exit(main())
