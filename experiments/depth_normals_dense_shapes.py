"""Depth and surface normals on `dense_shapes` with the Eigen–Fergus multi-scale network (ICCV 2015).

Quick (minutes on a 2-core CPU; the narrow network, 64×64 scenes):

    python -m dense_jax.train --config experiments/depth_normals_dense_shapes.py:quick \
        --workdir /tmp/dense_jax_depth_normals

  Measured 2026-11-30 (shared 2-core CPU, about 15 min): 600 steps of batch 16, validation depth abs_rel
  0.780, δ<1.25 0.394; normals mean 15.5°, within 11.25° 0.570 (details in docs/results.md).

Full (128×128 scenes, the paper's widths):

    python -m dense_jax.train --config experiments/depth_normals_dense_shapes.py \
        --workdir runs/depth_normals_dense_shapes

Reported at each evaluation (prefixed `val/`): `depth/abs_rel, sq_rel, rmse, rmse_log, log10, silog,
delta1..3` (per-image metrics averaged over images, depth in scene units clipped to (1e-3, 100]) and
`normals/mean, median, rmse` (degrees), `normals/within_11_25, within_22_5, within_30`; figures show
each task's truth and prediction (`dense_jax.tasks.depth`, `dense_jax.tasks.normals`).

Arguments (`:quick,tasks=depth,steps=300`): quick, tasks ('+'-separated subset of depth, normals,
semantic: one shared trunk, a head each, as in the paper), model ('eigen_fergus' or 'multitask': the
UberNet-style net for comparison; the `_narrow` variant in quick mode), steps (0 = the mode's default).
Any key can also be overridden, e.g. `--config.tasks.depth.weight=0.5`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg, set_dense_shapes_training

TASKS = ("depth", "normals", "semantic")


def parse_tasks(text: str, allowed) -> tuple[str, ...]:
  """'depth+normals' -> ('depth', 'normals'); ValueError naming the allowed tasks."""
  tasks = tuple(t for t in text.replace(" ", "").split("+") if t)
  bad = [t for t in tasks if t not in allowed]
  if not tasks or bad or len(set(tasks)) != len(tasks):
    raise ValueError(f"config argument 'tasks': expected a '+'-separated subset of {list(allowed)} without "
                     f"repeats, got {text!r}")
  return tasks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, tasks="depth+normals", model="eigen_fergus", steps=0)
  tasks = parse_tasks(arg.tasks, TASKS)
  if arg.model not in ("eigen_fergus", "multitask"):
    raise ValueError(f"config argument 'model': expected 'eigen_fergus' or 'multitask', got {arg.model!r}")
  config = default_config()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2

  config.dataset.name = "dense_shapes/small_64" if arg.quick else "dense_shapes/medium_128"
  config.model = ml_collections.ConfigDict(dict(
      name=arg.model + ("_narrow" if arg.quick else ""), tasks=tasks))
  config.tasks = {t: {"weight": 1.0} for t in tasks}

  set_dense_shapes_training(config, quick=arg.quick, steps=arg.steps)
  config.experiment = {"tasks": list(tasks)}
  return config


def sweep(add, arg=None):
  """Each task alone vs. depth and normals together (does sharing the trunk help?)."""
  del arg
  add(name="depth", arg="quick,tasks=depth")
  add(name="normals", arg="quick,tasks=normals")
  add(name="depth+normals", arg="quick,tasks=depth+normals")
