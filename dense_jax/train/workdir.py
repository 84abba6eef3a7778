"""Whose workdir is this? A rerun resumes its own run and never overwrites another one.

A run writes its resolved config into `<workdir>/config.json` before anything else. When the trainer
starts in a workdir that already holds a run, `check_workdir` compares that saved config with the new
one, before anything in the workdir is written, moved or deleted:

- same config, or differences only in `FREE_KEYS` (how long, how often, how much is evaluated, on
  which devices: keys that change neither the saved state's structure nor the examples and updates
  that produced it) -> the run resumes from its newest checkpoint;
- any other difference (the model or any of its arguments, the optimizer, the tasks, the dataset, the
  seed, the batch size, the precision, ...) -> `WorkdirError` listing every differing key with its saved
  and new value, and the two ways on: a new `--workdir`, or `--restart`
  (`train_and_evaluate(..., restart=True)`), which moves the previous run's files into
  `<workdir>/previous_runs/<UTC time>/` (nothing is deleted) and starts over.

`--restart` only ever sets aside a run whose config differs: a workdir whose run has the same config
resumes as always, so rerunning the same command line after a preemption continues the run instead of
starting it over again. (To start the same config from scratch, use a new workdir.)

Also refused here, with one line each: a workdir path that is a file (or lies under one), and a
workdir that cannot be created or written.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from dense_jax import paths

# The workdir layout: the resolved config, the checkpoint steps (`<workdir>/checkpoints/<step>`), and where
# `--restart` sets a previous run aside.
CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
PREVIOUS_RUNS = "previous_runs"

# Keys (dotted; a key also covers everything under it) that may differ between the runs of one
# workdir. total_steps is here because extending a finished run is the point of resuming; note that
# the learning-rate schedule spans total_steps, so the updates after the resumed step follow the new
# schedule.
FREE_KEYS = (
    "total_steps", "stop_at_step", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
    "async_checkpoints", "eval_batch_size", "eval_max_batches", "num_figures", "tensorboard",
    "num_devices", "cpu_devices", "mesh_shape", "sharding", "experiment",
    "dataset.data_dir", "dataset.eval_split", "dataset.num_threads",
)

# What a run (the trainer, `python -m dense_jax.evaluate`) writes into its workdir: what `--restart`
# sets aside. Other files (a sweep launcher's record and log) stay where they are.
RUN_FILES = (CONFIG_FILE, "metrics.jsonl", CHECKPOINTS, CHECKPOINTS + "_corrupt", "figures", "tensorboard",
             "init_report.json")
RUN_FILE_PATTERNS = ("eval_*.json", "eval_*.png")


class WorkdirError(ValueError):
  """The workdir cannot be used for this config; nothing in it was changed."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """`{'a.b': leaf}` of a nested dict (an empty dict is a leaf, so that adding one is a difference)."""
  if isinstance(tree, dict) and tree:
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def _is_free(key: str) -> bool:
  return any(key == free or key.startswith(free + ".") for free in FREE_KEYS)


def _as_plain(config) -> dict:
  """A config (ConfigDict or dict) as the JSON the trainer saves (tuples become lists)."""
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, default=str))


def _resolved(plain: dict) -> dict:
  """`plain` with the trainer's defaults filled in, so that a key a config leaves at its default
  compares equal to the same key written out; `plain` itself if it does not resolve."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from dense_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    return _as_plain(config_lib.resolve(ml_collections.ConfigDict(plain)))
  except Exception:  # pylint: disable=broad-except  # an older or hand-edited config.json: compare as saved
    return plain


_ABSENT = "<absent>"


def config_differences(saved, new) -> dict[str, tuple[Any, Any]]:
  """`{dotted key: (saved value, new value)}` for every key outside FREE_KEYS that differs (a key
  present in only one of them has the value '<absent>' in the other)."""
  old, now = _flatten(_resolved(_as_plain(saved))), _flatten(_resolved(_as_plain(new)))
  return {k: (old.get(k, _ABSENT), now.get(k, _ABSENT)) for k in sorted(set(old) | set(now))
          if not _is_free(k) and old.get(k, _ABSENT) != now.get(k, _ABSENT)}


def _check_writable(workdir: paths.Path) -> None:
  """The workdir is (or can be created as) a writable directory."""
  if paths.is_remote(workdir):
    paths.check_writable(workdir, "workdir")
    from dense_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
    checkpoint.check_directory(workdir / CHECKPOINTS, "workdir")
    return
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"workdir: expected a directory, got {workdir}, which is a file; pass a directory path "
                       f"(it is created if missing)")
  ancestor = workdir
  while not ancestor.exists():
    ancestor = ancestor.parent
  if not ancestor.is_dir():
    raise WorkdirError(f"workdir: {workdir} cannot be created: {ancestor} is a file, not a directory")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise WorkdirError(f"workdir: {workdir} cannot be {'written' if ancestor == workdir else 'created'}: no "
                       f"write permission on {ancestor}")


def check_workdir(workdir: str | os.PathLike, config, *, restart: bool = False) -> bool:
  """Decides, reading only, whether a run of `config` may write into `workdir` (see the module doc).

  Args:
    workdir: the run's directory (may not exist yet).
    config: the new run's config (resolved or not).
    restart: set aside a previous run whose config differs, instead of refusing.

  Returns:
    True when the previous run must be set aside first (`set_aside_previous_run`): `restart` and a
    previous run with a different config. False: a new workdir, or the same run (resume).

  Raises:
    WorkdirError: the workdir is a file or not writable; or it holds a run with a different config
      (without `restart`), or checkpoints without a config.json; nothing was changed.
  """
  workdir = paths.absolute(workdir)
  _check_writable(workdir)
  saved_path = workdir / CONFIG_FILE
  ways_on = (f"To keep that run, pass a new --workdir; to start over in this one, rerun with --restart "
             f"(train_and_evaluate(..., restart=True)): the previous run's files are moved to "
             f"{workdir / PREVIOUS_RUNS}/<time>/, nothing is deleted.")
  if not saved_path.exists():
    checkpoints = workdir / CHECKPOINTS
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()) and not restart:
      raise WorkdirError(f"workdir: {workdir} holds checkpoints but no {CONFIG_FILE}, so they cannot be "
                         f"checked against this config; nothing was changed. {ways_on}")
    return restart and checkpoints.is_dir()
  try:
    saved = json.loads(saved_path.read_text())
    if not isinstance(saved, dict):
      raise ValueError(f"expected a JSON object, got {type(saved).__name__}")
  except (ValueError, OSError) as e:
    if restart:
      return True
    raise WorkdirError(f"workdir: {saved_path} cannot be read ({type(e).__name__}: {e}), so the run in "
                       f"{workdir} cannot be checked against this config; nothing was changed. "
                       f"{ways_on}") from None
  differences = config_differences(saved, config)
  if not differences:
    return False
  if restart:
    return True
  shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in differences.items())
  raise WorkdirError(
      f"workdir: {workdir} holds a run with a different config (saved in {saved_path}); nothing was "
      f"changed. Differing keys (saved -> now): {shown}. {ways_on} Keys that may differ when "
      f"resuming: {', '.join(FREE_KEYS)}.")


def _short(value: Any, limit: int = 80) -> str:
  text = json.dumps(value) if value != _ABSENT else value
  return text if len(text) <= limit else text[:limit - 3] + "..."


def set_aside_previous_run(workdir: str | os.PathLike) -> paths.Path:
  """Moves the previous run's files (RUN_FILES, RUN_FILE_PATTERNS) into
  `<workdir>/previous_runs/<UTC time>/` and returns that folder. Process 0 moves; every process of a
  multi-process run waits for it (call it on all of them)."""
  import jax  # pylint: disable=g-import-not-at-top
  workdir = paths.absolute(workdir)
  stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
  target = workdir / PREVIOUS_RUNS / stamp
  if jax.process_index() == 0:
    suffix = 0
    while target.exists():   # two restarts within one second
      suffix += 1
      target = workdir / PREVIOUS_RUNS / f"{stamp}_{suffix}"
    target.mkdir(parents=True)
    names = [workdir / n for n in RUN_FILES] + [p for pattern in RUN_FILE_PATTERNS
                                                for p in sorted(workdir.glob(pattern))]
    for path in names:
      if path.exists():
        path.rename(target / path.name)
    print(f"note: --restart: the previous run in {workdir} was moved to {target}", flush=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("dense_jax_set_aside_previous_run")
  return target
