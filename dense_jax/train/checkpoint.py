"""Checkpoints with orbax: the train state, the input iterators' positions, and nothing to lose.

Layout: `<workdir>/checkpoints/<step>/{state,data}` written by an `ocp.CheckpointManager`:
- `state`: the `TrainState` pytree (params, batch stats, optimizer state, step, RNG) — sharded arrays
  are written by every process in parallel and restored straight into the requested shardings;
- `data`: JSON, the position of every input iterator: each process passes a dict of its own iterators'
  states (keyed by input shard), the saved JSON is the union over processes, so a resumed run sees
  exactly the batches it would have seen — even with a different number of processes, as long as the
  input shards are the same. It also holds the per-step losses since the last `metrics.jsonl` row
  (`unlogged`), so the first row after a resume averages the same steps as an uninterrupted run's.

Saves are asynchronous (the step loop goes on while the arrays are written), every `save_every` steps
(plus forced saves at the end and on preemption), keeping the newest `keep`. Orbax writes a step into a
temporary directory and renames it when complete, so a crash mid-save never leaves a half-written step
under its final name. If the newest step still fails to read (truncated or damaged files), it is
moved aside to `<workdir>/checkpoints_corrupt/<step>_<time>` with one warning line and the step before
is tried; nothing is deleted, and because the bad step leaves the manager's directory, the run can save
that step number again.

A step that reads fine but holds a state of another structure (another model, width or optimizer: the
saved arrays' names, shapes or dtypes differ from the state this run builds) is not damaged: restoring
raises `CheckpointMismatchError` naming the first differences and moves nothing. (The trainer refuses a
workdir whose config.json differs before it gets here, see `dense_jax.train.workdir`; this catches the
rest, e.g. a code change that renamed a layer.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from dense_jax import paths


class Restored(NamedTuple):
  """A restored checkpoint: its step, the train state, every input shard's iterator state, and the
  per-step losses trained since the last logged row (empty for checkpoints saved without them)."""
  step: int
  state: Any
  iterators: dict[str, Any]
  unlogged: list[dict[str, float]]


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (a full disk, no permission, a lost bucket); the steps saved
  before it are intact, and the half-written step is removed when the run restarts."""


def _is_disk_full(error: BaseException) -> bool:
  """Whether `error` or an exception it was raised from is ENOSPC (Python's OSError, or TensorStore's
  RESOURCE_EXHAUSTED ValueError carrying os_error_code 28)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if "No space left on device" in str(error) or "os_error_code='28'" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class CheckpointMismatchError(ValueError):
  """A checkpoint that reads fine holds a state of another structure than the one asked for."""


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):   # DictKey, GetAttrKey, SequenceKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def state_structure(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """`{'params/conv0/kernel': (shape, dtype name), ...}` of a pytree of arrays, ShapeDtypeStructs or
  orbax array metadata; dataclass fields, dict keys and tuple positions are all path components, as
  orbax stores them."""
  return {"/".join(_key_name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def saved_state_structure(step_dir) -> dict[str, tuple[tuple[int, ...], str]]:
  """`state_structure` of the `state` item saved in `step_dir` (`<checkpoints>/<step>`), read from its
  metadata without loading arrays; raises whatever orbax raises for unreadable files. The handler is
  closed here: left open, its background event loop prints a traceback at interpreter exit."""
  handler = ocp.StandardCheckpointHandler()
  try:
    return state_structure(handler.metadata(paths.as_path(step_dir) / "state"))
  finally:
    handler.close()


def structure_differences(saved: dict, expected: dict, limit: int = 5) -> list[str]:
  """The first `limit` differences between two `state_structure`s, in words."""
  out = []
  for name in sorted(set(saved) | set(expected)):
    if name not in expected:
      out.append(f"{name} is saved but not in this run's state")
    elif name not in saved:
      out.append(f"{name} {expected[name][0]} is not saved")
    elif saved[name] != expected[name]:
      out.append(f"{name}: saved {saved[name][0]} {saved[name][1]}, this run {expected[name][0]} "
                 f"{expected[name][1]}")
  if len(out) > limit:
    out = out[:limit] + [f"... ({len(out) - limit} more)"]
  return out


def _allgather_json(obj) -> list:
  """`[obj_of_process_0, obj_of_process_1, …]` on every process (JSON-able objects)."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.array([data.size], np.int32))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  everything = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row[:int(n)]).decode()) for row, n in zip(everything, np.ravel(sizes))]


def check_directory(directory: str | os.PathLike, key: str = "workdir") -> None:
  """Whether orbax can keep checkpoints in `directory`, else `paths.RemotePathError` naming `key`.

  Local directories and `gs://` ones can: orbax (0.12.8) hands `gs://` to TensorStore's GCS driver and
  lists a bucket's steps through the google-cloud-storage client (`google.cloud.storage`, imported only
  then). It hands every other URL (`s3://`, `az://`, ...) to TensorStore's local-file driver, which
  refuses it ("Checkpoint path should be absolute"), so such a workdir is refused here, up front."""
  text = os.fspath(directory)
  if not paths.is_remote(text):
    return
  if not text.startswith("gs://"):
    raise paths.RemotePathError(
        f"{key}: expected a local directory or a gs:// URL for the checkpoints, got {text}: orbax writes "
        f"checkpoint arrays through TensorStore, which it gives only local paths and gs:// buckets")
  try:
    import google.cloud.storage  # noqa: F401  (only whether it imports)
  except ImportError:
    raise paths.RemotePathError(
        f"{key}: checkpoints in {text} need the google-cloud-storage package (orbax lists a gs:// "
        f"bucket's checkpoints through it), which is not installed: pip install google-cloud-storage") from None


class Checkpointer:
  """Saves and restores `(state, iterator position)` pairs under `directory` (see module doc)."""

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 3,
               async_save: bool = True):
    check_directory(directory)
    self.directory = paths.absolute(directory)
    self.corrupt_directory = self.directory.parent / (self.directory.name + "_corrupt")
    self.save_every = max(1, int(save_every))
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(1, int(save_every)), max_to_keep=keep, create=True,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))
    self._in_flight: int | None = None   # the step of the asynchronous save not yet waited for
    self._failed: CheckpointWriteError | None = None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Every `save_every` steps (orbax's own rule also saves the very first step; we do not)."""
    return step % self.save_every == 0 and step not in self._manager.all_steps()

  def save(self, step: int, state, data_state: dict[str, Any], *, force: bool = False,
           unlogged: list[dict[str, float]] = ()) -> bool:
    """Starts saving `state` and the iterator positions as `step` (a collective: every process calls
    it, `data_state` holding its own iterators' states by string key). `unlogged`: one dict of losses
    per step trained since the last logged row, oldest first. Returns whether a save started (not if
    the interval says no or the step exists already).
    """
    merged = {}
    for part in _allgather_json(data_state):
      merged.update(part)
    if step in self._manager.all_steps():
      return False
    data = {"format": 1, "iterators": merged, "unlogged": list(unlogged)}
    with self._writing(step):   # also reports a failure of the previous asynchronous save
      started = self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)), force=force)
    if started:
      self._in_flight = step
    return started

  @contextlib.contextmanager
  def _writing(self, step: int):
    """Turns any failure to write a step into one CheckpointWriteError that says what to do."""
    if self._failed is not None:
      raise self._failed
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except  # orbax and TensorStore raise many types
      failed = self._in_flight if self._in_flight is not None else step
      good = [s for s in self.steps() if s != failed and (self.directory / str(s)).exists()]
      last = (f"the last good checkpoint is step {good[-1]} in {self.directory}" if good
              else f"no earlier checkpoint is in {self.directory}")
      if _is_disk_full(e):
        what = "the disk is full (No space left on device)"
        todo = ("free space there (or lower config.keep_checkpoints, or use a --workdir on a larger disk)")
      else:
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        what = f"{type(e).__name__}: {reason}"
        todo = "fix the cause"
      self._failed = CheckpointWriteError(
          f"could not write checkpoint step {failed} to {self.directory}: {what}; {last}. The "
          f"half-written step is removed on the next start: {todo}, then rerun the same command to "
          f"resume{' from it' if good else ''}.")
      raise self._failed from e
    finally:
      self._in_flight = None

  def wait(self) -> None:
    """Blocks until the pending asynchronous save is on disk (CheckpointWriteError if it failed)."""
    with self._writing(-1):
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the pending save and releases orbax's threads; a failed save was reported already."""
    try:
      if self._failed is None:
        self.wait()
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except  # the failure was reported by save/wait
        if self._failed is None:
          raise

  def _quarantine(self, step: int, error: Exception) -> None:
    # One line (on process 0): the error's first line, not its traceback.
    if jax.process_index() == 0:
      reason = (str(error).strip().splitlines() or [""])[0][:200]
      print(f"WARNING: checkpoint {self.directory / str(step)} is damaged ({type(error).__name__}: "
            f"{reason}); moved to {self.corrupt_directory}, trying the previous one.", flush=True)
      self.corrupt_directory.mkdir(parents=True, exist_ok=True)
      target = self.corrupt_directory / f"{step}_{int(time.time())}"
      (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"dense_jax_quarantine_{step}")
    self._manager.reload()

  def restore_latest(self, abstract_state) -> Restored | None:
    """The newest step that restores, or None.

    `abstract_state`: the state's `jax.ShapeDtypeStruct`s with `.sharding` set, so arrays come back
    placed as the train step expects them.
    """
    expected = state_structure(abstract_state)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        saved = saved_state_structure(self.directory / str(step))
      except Exception as e:  # pylint: disable=broad-except  # unreadable metadata: the step is damaged
        self._quarantine(step, e)
        continue
      differences = structure_differences(saved, expected)
      if differences:
        raise CheckpointMismatchError(
            f"checkpoint {self.directory / str(step)} holds a state of another structure than this run's "
            f"({'; '.join(differences)}): it was saved by another model/optimizer config or code version. "
            f"Nothing was moved. Use a new workdir, or train from the config and code that wrote it.")
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        data = restored["data"]
        if not isinstance(data, dict) or not isinstance(data.get("iterators"), dict):
          raise ValueError(f"the iterator positions are missing or malformed: {str(data)[:200]}")
      except Exception as e:  # pylint: disable=broad-except  # any failure means "this step is unusable"
        self._quarantine(step, e)
        continue
      return Restored(step, restored["state"], data["iterators"], list(data.get("unlogged", [])))
    return None
