"""Command line: `python -m dense_jax.train --config experiments/<name>.py[:args] --workdir DIR`.

    python -m dense_jax.train --config experiments/unet_dense_shapes.py:quick --workdir /tmp/dense_jax_unet
    python -m dense_jax.train --config experiments/unet_dense_shapes.py:quick --workdir /tmp/u \\
        --config.total_steps=100 --config.optimizer.learning_rate=0.001
    # several processes (one per host / GPU); on TPU pods and SLURM the flags can be left out:
    python -m dense_jax.train ... --coordinator_address=host0:12345 --num_processes=2 --process_id=0

Re-running the same command resumes from the newest checkpoint in `--workdir/checkpoints`.
Exit status: 0 done or stopped by SIGTERM/SIGINT after saving; 1 non-finite loss; 2 bad config.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (TensorBoard writer) start-up chatter
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF only writes event files here; silences its oneDNN note

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file, `path.py[:arg]`.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Persistent XLA compilation cache, so a rerun or a resumed run skips compiling; default "
    "$JAX_COMPILATION_CACHE_DIR or ~/.cache/dense_jax/xla; '' disables it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  # pylint: disable=g-import-not-at-top
  import jax
  cache = _CACHE.value
  if cache is None:
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.expanduser("~/.cache/dense_jax/xla")
  if cache:
    jax.config.update("jax_compilation_cache_dir", cache)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  from dense_jax.train import config as config_lib
  from dense_jax.train import distributed
  config_lib.apply_cpu_devices(_CONFIG.value)   # before anything starts JAX's backend
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from dense_jax.train import loop
  try:
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except loop.NonFiniteLossError as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return 1
  except loop.ConfigError as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


def _explain_bad_override(argv: list[str], error: Exception) -> str:
  """Names the `--config.a.b=v` override whose key the experiment's config lacks, with the keys it has."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
    spec = argv[argv.index("--config") + 1]
  try:
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
  except Exception:  # pylint: disable=broad-except  # fall back to the bare error
    return f"ERROR: a --config.* override names a key the config does not have: {error}"
  for a in argv:
    if not a.startswith("--config."):
      continue
    node, where = config, "config"
    for key in a[len("--config."):].split("=", 1)[0].split("."):
      if not hasattr(node, "keys") or key not in node:
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        return (f"ERROR: {a.split('=', 1)[0]}: {where} has no key {key!r} (it has {known}); only keys the "
                f"experiment file {path} defines can be overridden")
      node, where = node[key], f"{where}.{key}"
  return f"ERROR: a --config.* override names a key the config does not have: {error}"


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:   # raised by ml_collections for an unknown --config.* key
    print(_explain_bad_override(argv, e), file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
