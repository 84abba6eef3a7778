"""The output convention of the multi-task dense models (Eigen–Fergus, colorization, the UberNet-style net).

A model returns a dict `{task name: output}`; for the tasks of these families the outputs are:

  semantic      logits `(B, H, W, K)` (K = num_classes)
  depth         **log-depth** `(B, H, W)`: the natural log of the depth in metres (z in the camera frame);
                Eigen & Fergus regress log-depth, and the scale-invariant loss works on it; metres are
                `exp(output)`
  normals       `(B, H, W, 3)`, not normalised (divide by the length to get unit normals; x right,
                y down, z towards the camera)
  colorization  logits over the Q quantized ab bins `(B, H/4, W/4, Q)` (`dense_jax.data.color.AbBins`)
  boundaries    logits `(B, H, W)` of a boundary pixel (sigmoid)

`raw_channels(task)` is what a head's last convolution produces; `finalize(task, y)` turns that
`(B, h, w, C)` map into the output above (drops the channel axis of the one-channel tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

ALL_TASKS = ("semantic", "depth", "normals", "colorization", "boundaries")


def check_tasks(tasks: Sequence[str], allowed: Sequence[str], name: str = "tasks") -> tuple[str, ...]:
  """`tasks` as a tuple; ValueError unless it is a non-empty, duplicate-free subset of `allowed`."""
  if isinstance(tasks, str):
    tasks = (tasks,)
  tasks = tuple(tasks)
  bad = [t for t in tasks if t not in allowed]
  if not tasks or bad or len(set(tasks)) != len(tasks):
    raise ValueError(f"{name}: expected a non-empty subset of {tuple(allowed)} without repeats, got {tasks!r}")
  return tasks


def raw_channels(task: str, *, num_classes: int, num_bins: int) -> int:
  """Channels of a head's last convolution for `task`."""
  return {"semantic": num_classes, "depth": 1, "normals": 3, "colorization": num_bins,
          "boundaries": 1}[task]


def finalize(task: str, y):
  """A head's raw `(B, h, w, C)` map -> the task's output (module docstring)."""
  return y[..., 0] if task in ("depth", "boundaries") else y
