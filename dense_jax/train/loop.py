"""`train_and_evaluate(config, workdir)`: the whole run, from a config to a final metrics dict.

Sections, in the order they run: config → data and mesh checks → model and optimizer → input
iterators → state (restored from the newest good checkpoint, or initialised) → compiled steps → the
loop (train, log, evaluate, checkpoint, stop on signal or non-finite loss) → final evaluation.

Everything that can be wrong with the config (unknown keys, a mesh that does not divide the devices,
a batch that does not divide the 'data' axis, an unknown model, a missing dataset) raises ValueError
before the first compilation.

The step is one `jax.jit` of a pure `(state, batch) -> (state, metrics)` with `NamedSharding`s on both
sides, the state donated. The batch is a global array assembled from every process's rows; batch-norm
statistics, the loss and the gradients are over the global batch, so the numbers do not depend on the
mesh (up to float summation order, see tests/train/test_sharding_equivalence.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from dense_jax import evaluation, paths, tasks as tasks_lib, viz
from dense_jax.convert import init_from
from dense_jax.models import build as build_lib
from dense_jax.tasks import build as task_build
from dense_jax.train import (
  checkpoint as checkpoint_lib,
  config as config_lib,
  optimizers,
  reporting,
  sharding as sharding_lib,
  workdir as workdir_lib,
)
from dense_jax.train.state import TrainState, init_train_state
from dense_jax.train.step import make_train_step, output_constraint  # make_train_step: re-exported
from dense_jax.train.workdir import CHECKPOINTS, CONFIG_FILE


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN/inf; the run stopped without saving the bad state."""


class ConfigError(ValueError):
  """Bad input found before compiling: the config, the mesh, the batch, the model or the dataset."""


# --------------------------------------------------------------------------------------------------
# Input: a global batch assembled from input shards.
# --------------------------------------------------------------------------------------------------
class ShardedInput:
  """The process's share of the input: iterators over input shards `shards` (of `num_shards`),
  concatenated in shard order. Shard s reads examples s, s + S, s + 2S, … of the split, so the global
  batch is the same whatever the number of processes, as long as `num_shards` is."""

  def __init__(self, make_iterator, shards: list[int], num_shards: int, keys: tuple[str, ...]):
    self.shards = shards
    self.keys = keys
    self._iters = [make_iterator(process_index=s, process_count=num_shards) for s in shards]

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    parts = [next(it) for it in self._iters]
    return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in self.keys}

  def get_state(self) -> dict[str, Any]:
    return {str(s): it.get_state() for s, it in zip(self.shards, self._iters)}

  def set_state(self, states: dict[str, Any]) -> None:
    for s, it in zip(self.shards, self._iters):
      if str(s) not in states:
        raise ValueError(f"checkpoint: no saved position for input shard {s}; saved shards: "
                         f"{sorted(states)} (was config.dataset.input_shards changed?)")
      it.set_state(states[str(s)])

  def close(self) -> None:
    for it in self._iters:
      it.close()


def _input_shards(config) -> tuple[int, list[int]]:
  """(number of input shards, the ones this process reads)."""
  pc, pi = jax.process_count(), jax.process_index()
  num = config.dataset.input_shards or pc
  if num % pc:
    raise ValueError(f"config.dataset.input_shards: expected a multiple of the process count {pc}, got {num}")
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % num:
      raise ValueError(f"config.{key}: expected a multiple of config.dataset.input_shards = {num}, "
                       f"got {config[key]}")
  per = num // pc
  return num, list(range(pi * per, (pi + 1) * per))


# --------------------------------------------------------------------------------------------------
# The steps.
# --------------------------------------------------------------------------------------------------
def make_eval_step(model, tasks: dict, spatial: bool):
  """`(state, batch) -> ({task: accumulator}, {task: prediction})` (`dense_jax.evaluation`)."""
  step = evaluation.make_eval_step(model, tasks, constrain=output_constraint(spatial))
  return lambda state, batch: step(state.variables(), batch)


# --------------------------------------------------------------------------------------------------
# Signals: SIGTERM / SIGINT ask the loop to save and stop.
# --------------------------------------------------------------------------------------------------
class StopRequest:
  """Set by SIGTERM/SIGINT (a second SIGINT interrupts at once). Handlers only in the main thread."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signal_name is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def requested(self) -> bool:
    """Whether any process was asked to stop (an all-gather when there are several processes)."""
    local = self.signal_name is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.array([local], np.int32))))


# --------------------------------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _PreparedRun:
  """What the checks before compiling produce."""
  config: ml_collections.ConfigDict
  info: Any                      # dense_jax.data.DatasetInfo
  image_size: tuple[int, int]
  mesh: jax.sharding.Mesh
  spatial: bool
  model: Any
  tasks: dict                    # {name: dense_jax.tasks.Task}
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  rules: tuple
  train_input: ShardedInput
  make_eval_input: Any           # () -> ShardedInput over the evaluation split
  init_plan: Any = None          # dense_jax.convert.init_from.Plan for a fresh run with config.init


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                       restart: bool = False) -> dict[str, Any]:
  """Trains and evaluates as `config` says, writing into `workdir`; resumes if `workdir` has checkpoints.

  Returns the final metrics: the last logged train metrics, the final evaluation (`val/miou`, …),
  `step`, `interrupted` (a signal stopped the run), `train_step_compilations`, `wall_time_s`.
  Raises ConfigError (a ValueError) for bad input, before compiling anything, and NonFiniteLossError
  for a diverged run. A workdir holding a run of another config is refused (ConfigError) unless
  `restart`, which sets that run aside first (see dense_jax.train.workdir).
  """
  from dense_jax.tools import restore as restore_lib  # pylint: disable=g-import-not-at-top
  start_time = time.perf_counter()
  try:
    workdir = paths.absolute(workdir, "workdir")   # RemotePathError for a scheme no filesystem serves
    # Before anything in the workdir is written: is it this run's (or a new) directory?
    set_aside = workdir_lib.check_workdir(workdir, config_lib.resolve(config), restart=restart)
    setup = _prepare(config, fresh=set_aside or restore_lib.latest_step(workdir) is None)
  except (ValueError, FileNotFoundError) as e:   # FileNotFoundError: a dataset's files are missing
    raise ConfigError(str(e)) from e
  try:
    if set_aside:
      workdir_lib.set_aside_previous_run(workdir)
    return _run(setup, workdir, start_time)
  finally:
    setup.train_input.close()


def _prepare(config, fresh: bool = True) -> _PreparedRun:
  """Validates the config and builds everything that needs no compilation (raises ValueError); for a
  `fresh` run (no checkpoint to resume) also reads `config.init` and plans what loads."""
  # pylint: disable=g-import-not-at-top
  from dense_jax import data as data_lib

  config = config_lib.resolve(config)
  config_lib.apply_cpu_devices(config)
  model, info, image_size = build_lib.build_model(config)
  tasks = tasks_lib.build_tasks(config.tasks, info)   # unknown task, missing dataset keys, bad weight
  train_keys = task_build.batch_keys(tasks)
  devices = jax.devices()
  if config.num_devices is not None:
    if config.num_devices > len(devices) or (jax.process_count() > 1 and config.num_devices != len(devices)):
      raise ValueError(f"config.num_devices: expected at most the {len(devices)} devices (all of them in a "
                       f"multi-process run), got {config.num_devices}")
    devices = devices[:config.num_devices]
  mesh = sharding_lib.make_mesh(config.mesh_shape, devices)
  spatial = bool(config.sharding.spatial)
  for key in ("batch_size", "eval_batch_size"):
    try:
      sharding_lib.check_batch(config[key], mesh, image_size, spatial)
    except ValueError as e:
      raise ValueError(str(e).replace("config.batch_size", f"config.{key}")) from None
  num_shards, my_shards = _input_shards(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.total_steps)
  rules = tuple(tuple(r) for r in config.sharding.params)
  sharding_lib.check_rules(rules)

  def make_iterator(split, train, batch_size, **kw):
    return data_lib.create_iterator(
        config.dataset.name, split, global_batch_size=batch_size, seed=config.seed, train=train,
        image_size=image_size, data_dir=config.dataset.data_dir,
        augment=config.dataset.augment if train else False, keys=train_keys,
        num_threads=config.dataset.num_threads, **kw)

  # Creating an iterator opens the dataset: a missing dataset fails here, before any compile.
  train_input = ShardedInput(functools.partial(make_iterator, config.dataset.train_split, True,
                                               config.batch_size), my_shards, num_shards, keys=train_keys)
  make_eval_input = functools.partial(
      ShardedInput, functools.partial(make_iterator, config.dataset.eval_split, False, config.eval_batch_size),
      my_shards, num_shards, keys=train_keys + ("batch_mask",))
  try:
    make_eval_input().close()
    # Last, as it traces the model (nothing is compiled): every task has its model output.
    task_build.check_outputs(tasks, build_lib.output_shapes(model, image_size), config.model.name)
    if optimizers.uses_partitions(config.optimizer):   # freeze / lr_multipliers must name real params
      optimizers.check_param_patterns(config.optimizer, jax.eval_shape(functools.partial(
          build_lib.init_variables, model, image_size=image_size), jax.random.PRNGKey(0))["params"])
    init_plan = build_lib.plan_init(config, model, image_size) if fresh else None
  except Exception:
    train_input.close()
    raise
  return _PreparedRun(config, info, image_size, mesh, spatial, model, tasks, tx, schedule, rules, train_input,
                make_eval_input, init_plan)


def _apply_init(state: TrainState, plan, tx, state_sharding) -> TrainState:
  """`state` with `config.init`'s arrays in its params and batch stats (placed in their shardings) and
  the optimizer state initialised for them."""
  variables = init_from.apply({"params": state.params, "batch_stats": state.batch_stats}, plan)
  variables = jax.device_put(variables, {"params": state_sharding.params,
                                         "batch_stats": state_sharding.batch_stats})
  opt_state = jax.jit(tx.init, out_shardings=state_sharding.opt_state)(variables["params"])
  return state.replace(params=variables["params"], batch_stats=variables["batch_stats"], opt_state=opt_state)


@dataclasses.dataclass
class _Start:
  """Where the loop starts: the state (restored or freshly initialised) and what came with it."""
  checkpointer: checkpoint_lib.Checkpointer
  state: TrainState
  step: int
  state_sharding: Any             # the TrainState's shardings (a pytree of NamedSharding)
  abstract: Any                   # the TrainState's shapes and dtypes
  # Per step since the last logged row: 'loss' and each task's 'loss/<task>'. Saved with every
  # checkpoint, so a resumed run's next row averages the same steps as an uninterrupted run's.
  interval_losses: list[dict]
  resumed: bool
  init_plan: Any = None           # what config.init loaded into a fresh state, if anything


@dataclasses.dataclass
class _Steps:
  """The compiled step functions and the batch placement they expect."""
  train_step: Any                 # (state, batch) -> (state, metrics on device)
  eval_step: Any                  # (state, batch) -> ({task: accumulator}, {task: prediction})
  to_global: Any                  # host batch -> global batch of the mesh


def _restore_or_init(setup: _PreparedRun, workdir: paths.Path, stack: contextlib.ExitStack, is_main: bool) -> _Start:
  """Opens the run's checkpointer (closed by `stack`) and starts from its newest good checkpoint, or from
  a fresh initialisation (with `config.init` applied and its report written)."""
  config, model, tx = setup.config, setup.model, setup.tx
  init_fn = functools.partial(init_train_state, model, tx)
  sample = jax.ShapeDtypeStruct((1, *setup.image_size, 3), jnp.float32)
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(init_fn, rng, sample)
  state_sharding = sharding_lib.tree_shardings(abstract, setup.mesh, setup.rules)
  checkpointer = checkpoint_lib.Checkpointer(
      workdir / CHECKPOINTS, save_every=config.checkpoint_every, keep=config.keep_checkpoints,
      async_save=config.async_checkpoints)
  stack.callback(checkpointer.close)
  abstract_sharded = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract, state_sharding)
  restored = checkpointer.restore_latest(abstract_sharded)
  if restored is not None:
    setup.train_input.set_state(restored.iterators)
    return _Start(checkpointer, restored.state, restored.step, state_sharding, abstract, restored.unlogged,
                  resumed=True)
  state = jax.jit(init_fn, out_shardings=state_sharding)(rng, sample)
  init_plan = setup.init_plan or build_lib.plan_init(config, model, setup.image_size)
  if init_plan is not None:
    state = _apply_init(state, init_plan, tx, state_sharding)
    if is_main:
      init_from.write_report(workdir, init_plan)
  return _Start(checkpointer, state, 0, state_sharding, abstract, [], resumed=False, init_plan=init_plan)


def _announce(setup: _PreparedRun, start: _Start, reporter, checkpointer, workdir: paths.Path,
              last_step: int) -> None:
  """The run's opening lines: what trains where, how it starts, the optimizer's partitions."""
  config, mesh = setup.config, setup.mesh
  reporter.message(
      f"{config.model.name} on {config.dataset.name}: {config.total_steps} steps of batch {config.batch_size} "
      f"on {mesh.size} device(s) (mesh {dict(mesh.shape)}{', spatial' if setup.spatial else ''}, "
      f"{jax.process_count()} process(es)); writing to {workdir}")
  if start.resumed:
    reporter.message(f"Resuming from step {start.step} ({checkpointer.directory / str(start.step)}).")
  elif start.init_plan is not None:
    reporter.message(init_from.summary_line(start.init_plan))
  if optimizers.uses_partitions(config.optimizer):
    reporter.message(optimizers.partition_summary(config.optimizer, start.abstract.params))
  if start.step < last_step:
    reporter.message("Compiling the train step (the first step takes a while)...")


def _build_steps(setup: _PreparedRun, state_sharding) -> _Steps:
  """The jitted train and eval steps, with the batch and state shardings of the mesh (the state is
  donated to the train step)."""
  mesh, spatial, tasks, keys = setup.mesh, setup.spatial, setup.tasks, setup.train_input.keys
  pixel_keys = task_build.pixel_keys(tasks)
  specs = sharding_lib.batch_specs(spatial, keys + ("batch_mask",), pixel_keys)
  sharding_of = lambda keys: {k: NamedSharding(mesh, specs[k]) for k in keys}
  replicated = NamedSharding(mesh, P())
  train_step = jax.jit(make_train_step(setup.model, setup.tx, setup.schedule, spatial, tasks),
                       in_shardings=(state_sharding, sharding_of(keys)),
                       out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  eval_step = jax.jit(make_eval_step(setup.model, tasks, spatial),
                      in_shardings=(state_sharding, sharding_of(keys + ("batch_mask",))),
                      out_shardings=(replicated, replicated))
  return _Steps(train_step, eval_step, lambda local: sharding_lib.to_global(local, mesh, spatial, pixel_keys))


def _evaluate(setup: _PreparedRun, steps: _Steps, reporter, state, step: int) -> dict:
  """`val/...` results of `state` on the evaluation split; the first batch's first `num_figures`
  examples are drawn into the step's figure."""
  config, tasks = setup.config, setup.tasks

  def figure(i, local, predictions):   # process 0's rows come first in the replicated predictions
    n = min(config.num_figures, int(local["batch_mask"].sum()))
    if i == 0 and n:
      predictions = jax.tree.map(lambda v: np.asarray(v[:n]), predictions)   # arrays or dicts of them
      reporter.figure(step, viz.grid(evaluation.figure_rows(tasks, local["image"], predictions, local, n)))

  eval_input = setup.make_eval_input()
  try:
    accs, _ = evaluation.run(steps.eval_step, state, eval_input, tasks, to_device=steps.to_global,
                             max_batches=config.eval_max_batches, on_batch=figure)
  finally:
    eval_input.close()
  return evaluation.results(tasks, accs, prefix="val/")


def _checked_metrics(step: int, metrics, checkpointer, interval_losses: list[dict]) -> dict:
  """The train metrics of `step` on the host; NonFiniteLossError (naming the last good checkpoint) for a
  non-finite loss, else its losses are appended to `interval_losses`."""
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not math.isfinite(host["loss"]):
    checkpointer.wait()
    good = checkpointer.steps()
    where = (f"the last good checkpoint is step {good[-1]} in {checkpointer.directory}" if good
             else "no checkpoint was written yet")
    raise NonFiniteLossError(
        f"loss is {host['loss']} at step {step}: stopped without saving; {where}. Lower "
        f"config.optimizer.learning_rate or set config.optimizer.grad_clip_norm, then rerun"
        f"{' (a rerun resumes from that checkpoint)' if good else ''}.")
  interval_losses.append({k: v for k, v in host.items() if k == "loss" or k.startswith("loss/")})
  return host


def _run(setup: _PreparedRun, workdir: paths.Path, start_time: float) -> dict[str, Any]:
  """The compiled part of the run (see `train_and_evaluate`): restore or initialise the state, build the
  step functions, train (logging, evaluating and checkpointing on schedule), then finish (a final
  evaluation if the last step had none, the final checkpoint, the summary)."""
  config, tasks, train_input = setup.config, setup.tasks, setup.train_input
  is_main = jax.process_index() == 0
  if is_main:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  with contextlib.ExitStack() as stack:
    stack.enter_context(jax.set_mesh(setup.mesh))
    stop = stack.enter_context(StopRequest())

    # ---- Restore or initialise.
    start = _restore_or_init(setup, workdir, stack, is_main)
    checkpointer, state, interval_losses = start.checkpointer, start.state, start.interval_losses
    last_step = min(config.total_steps, config.stop_at_step or config.total_steps)
    reporter = reporting.Reporter(workdir, enabled=is_main, total_steps=config.total_steps,
                                  start_step=start.step, tensorboard=config.tensorboard)
    stack.callback(reporter.close)
    _announce(setup, start, reporter, checkpointer, workdir, last_step)

    # ---- Step functions.
    steps = _build_steps(setup, start.state_sharding)

    def evaluate(step: int) -> dict:   # of the current `state`
      return _evaluate(setup, steps, reporter, state, step)

    # ---- The loop: train a step; log, evaluate and save on schedule.
    step = start.step
    final: dict[str, Any] = {}
    timer = reporting.Timer()
    steps_timed = 0   # steps trained by this process since the last logged row (for steps/s)
    # (step, metrics on device) not yet checked for finiteness: checking step s - 1 while step s runs
    # keeps the device busy.
    pending = None
    last_host: dict = {}
    evaluated_at = None
    while step < last_step:
      if stop.requested():
        break
      batch = steps.to_global(next(train_input))
      state, metrics = steps.train_step(state, batch)
      step += 1
      steps_timed += 1
      if pending is not None:
        last_host = _checked_metrics(*pending, checkpointer, interval_losses)
      pending = (step, metrics)
      is_last = step == last_step
      # Rows at log_every multiples and the end only, not at stop_at_step: the rows of a run stopped
      # and resumed are then those of the uninterrupted run (the unlogged steps travel in the checkpoint).
      do_log = step % config.log_every == 0 or step == config.total_steps
      do_eval = step % config.eval_every == 0 or step == config.total_steps
      do_save = checkpointer.should_save(step) or is_last
      if not (do_log or do_eval or do_save):
        continue
      last_host = _checked_metrics(*pending, checkpointer, interval_losses)
      pending = None

      # ---- Log, evaluate, save.
      record = {}
      if do_log:
        rate = timer.rate(steps_timed)
        steps_timed = 0
        record.update(last_host, steps_per_sec=rate, images_per_sec=rate * config.batch_size)
        record.update({k: float(np.mean([l[k] for l in interval_losses])) for k in interval_losses[-1]})
        interval_losses.clear()
        reporter.progress(step, record["loss"], rate)
      if do_eval:
        timer.pause_start()
        record.update(evaluate(step))
        evaluated_at = step
        timer.pause_end()
        reporter.message(f"step {step}: val {evaluation.summary(tasks, record, 'val/')}")
      if do_save:
        timer.pause_start()
        checkpointer.save(step, state, train_input.get_state(), force=is_last, unlogged=interval_losses)
        timer.pause_end()
      if record:
        reporter.write(step, record)
        final.update(record)
    if pending is not None:
      last_host = _checked_metrics(*pending, checkpointer, interval_losses)

    # ---- Finish.
    interrupted = step < last_step
    if interrupted:
      checkpointer.save(step, state, train_input.get_state(), force=True, unlogged=interval_losses)
      checkpointer.wait()
      reporter.message(f"Stopped by {stop.signal_name} at step {step}; checkpoint saved in "
                       f"{checkpointer.directory}. Rerun the same command to resume.")
    elif evaluated_at != step:
      # Nothing left to train (a finished run rerun, or stop_at_step): report the evaluation anyway.
      final.update(evaluate(step))
    checkpointer.wait()

    final.update(step=step, interrupted=interrupted,
                 train_step_compilations=steps.train_step._cache_size(),  # pylint: disable=protected-access
                 wall_time_s=time.perf_counter() - start_time)
    if not interrupted:
      reporter.message(f"Done: step {step}, val {evaluation.summary(tasks, final, 'val/')}. Results in {workdir}: "
                       f"{reporting.METRICS_FILE}, {CONFIG_FILE}, figures/, tensorboard/, {CHECKPOINTS}/")
    return final
