"""Command line: `python -m dense_jax.train --config experiments/<name>.py[:args] --workdir DIR`.

    python -m dense_jax.train --config experiments/unet_dense_shapes.py:quick --workdir /tmp/dense_jax_unet
    python -m dense_jax.train --config experiments/unet_dense_shapes.py:quick --workdir /tmp/u \\
        --config.total_steps=100 --config.optimizer.learning_rate=0.001
    # several processes (one per host / GPU); on TPU pods and SLURM the flags can be left out:
    python -m dense_jax.train ... --coordinator_address=host0:12345 --num_processes=2 --process_id=0

Re-running the same command resumes from the newest checkpoint in `--workdir/checkpoints`. A workdir
holding a run of another config (another model, width, optimizer, dataset, ...) is refused before
anything in it is touched; `--restart` moves that run's files to `<workdir>/previous_runs/<time>/` and
starts over (see dense_jax.train.workdir). Every key of the config can be overridden, also those whose
default is None: `--config.dataset.image_size=64`, `--config.stop_at_step=500` (dense_jax.train.cli).

Exit status: 0 done or stopped by SIGTERM/SIGINT after saving; 1 non-finite loss; 2 bad configuration
or input (the command line, the config, the workdir, a checkpoint of another structure, a damaged
dataset file); 3 an output could not be written (a full disk: the checkpoints before it stay);
each reported in one `ERROR:` line.
"""

from __future__ import annotations

import errno
import logging as std_logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (TensorBoard writer) start-up chatter
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF only writes event files here; silences its oneDNN note

from absl import app, flags, logging

from dense_jax.train import cli

_CONFIG = cli.define_config_flag("Experiment file, `path.py[:arg]`.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
_RESTART = flags.DEFINE_bool(
    "restart", False, "If --workdir holds a run of another config, move its files to "
    "<workdir>/previous_runs/<time>/ and start over (a run of the same config resumes as always).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Persistent XLA compilation cache, so a rerun or a resumed run skips compiling; default "
    "$JAX_COMPILATION_CACHE_DIR or ~/.cache/dense_jax/xla; '' disables it.")
flags.mark_flags_as_required(["config", "workdir"])


def _without_tracebacks(record: std_logging.LogRecord) -> bool:
  """Log records with a traceback as one line, and asyncio's "exception was never retrieved" not at
  all: a failed save (a full disk) logs the same TensorStore error from each of orbax's threads, which
  the trainer then reports once as an `ERROR:` line."""
  if record.name == "asyncio" and "exception was never retrieved" in str(record.msg):
    return False   # the same error again, from orbax's abandoned write tasks at exit
  if record.exc_info:
    message = (record.getMessage().strip().splitlines() or [""])[0]
    record.msg, record.args, record.exc_info, record.exc_text = message[:300], None, None, None
  return True


def main(argv):
  if len(argv) > 1:
    print(f"ERROR: unexpected arguments {argv[1:]} (flags are --name=value; python -m dense_jax.train "
          f"--helpshort lists them)", file=sys.stderr, flush=True)
    return cli.EXIT_BAD_CONFIG
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    std_logging.getLogger().addFilter(_without_tracebacks)
    for handler in std_logging.getLogger().handlers:
      handler.addFilter(_without_tracebacks)
  # pylint: disable=g-import-not-at-top
  import jax
  cache = _CACHE.value
  if cache is None:
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.expanduser("~/.cache/dense_jax/xla")
  if cache:
    jax.config.update("jax_compilation_cache_dir", cache)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  from dense_jax.train import config as config_lib, distributed
  config_lib.apply_cpu_devices(_CONFIG.value)   # before anything starts JAX's backend
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from dense_jax.data import DataFileError
  from dense_jax.train import checkpoint, loop
  try:
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except loop.NonFiniteLossError as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_NON_FINITE_LOSS
  except (loop.ConfigError, checkpoint.CheckpointMismatchError, DataFileError) as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_BAD_CONFIG
  except checkpoint.CheckpointWriteError as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_CANNOT_WRITE
  except OSError as e:
    if e.errno != errno.ENOSPC:
      raise
    # metrics.jsonl, a figure or TensorBoard events; the checkpoints say where to resume from.
    print(f"ERROR: the disk is full: could not write {e.filename or 'a file'} under {_WORKDIR.value} "
          f"({e.strerror}). Free space there, then rerun the same command to resume from the newest "
          f"checkpoint in {_WORKDIR.value}/checkpoints.", file=sys.stderr, flush=True)
    return cli.EXIT_CANNOT_WRITE
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, "dense_jax.train"))
