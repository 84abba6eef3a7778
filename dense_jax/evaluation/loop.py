"""The one evaluation loop: tasks' accumulators over a split (the trainer, `dense_jax.evaluation.workdir`,
`experiments/evaluate_breakdown.py`).

    step = make_eval_step(model, tasks)                      # (variables, batch) -> (accs, predictions)
    accs, examples = run(jax.jit(step), variables, batches, tasks)
    metrics = results(tasks, accs)                           # {'miou': ..., 'iou/<class>': ..., ...}

`make_eval_step` computes the model's outputs (`dense_jax.models.build.apply_model`, or a `predict_fn`
such as a `dense_jax.inference` mode), each task's per-batch accumulator `task.update(task.init(), ...)`
and each task's prediction (`task.predict`, e.g. the argmax, for figures). `run` folds the per-batch
accumulators on the host in 64 bits (`task.to_host`, by default `dense_jax.tasks.host_accumulator`;
`task.combine`), so counts do not overflow and the numbers do not depend on the batching; padded
examples (batch_mask 0) count for nothing, as each task's `update` guarantees. `results` merges every
task's `result` into one dict and refuses two tasks that report the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

from dense_jax.models.build import apply_model


def make_eval_step(model, tasks: dict, *, predict_fn: Callable | None = None,
                   constrain: Callable | None = None):
  """`(variables, batch) -> ({task: accumulator}, {task: prediction})` (pure; jit it).

  predict_fn: `(variables, images) -> outputs dict` instead of one whole-image model call.
  constrain: applied to every output (e.g. a sharding constraint).
  """

  def eval_step(variables, batch):
    if predict_fn is None:
      outputs = apply_model(model, variables, batch["image"], train=False)
    else:
      outputs = predict_fn(variables, batch["image"])
    if constrain is not None:
      outputs = {k: constrain(v) for k, v in outputs.items()}
    accs = {name: task.update(task.init(), outputs, batch) for name, task in tasks.items()}
    predictions = {name: task.predict(outputs[name]) for name, task in tasks.items()}
    return accs, predictions

  return eval_step


def run(eval_step, variables, batches: Iterable[dict], tasks: dict, *, to_device: Callable | None = None,
        max_batches: int | None = None, on_batch: Callable | None = None) -> tuple[dict, int]:
  """Runs `eval_step` over `batches` (host dicts with `batch_mask`); `({task: host accumulator}, real
  examples)`. `to_device(batch)` places a host batch (default: as it is); `on_batch(index, host batch,
  predictions)` is called after each batch (figures)."""
  totals: dict[str, Any] = {}
  examples = 0
  for i, local in enumerate(batches):
    if max_batches is not None and i >= max_batches:
      break
    accs, predictions = eval_step(variables, to_device(local) if to_device else local)
    for name, task in tasks.items():
      acc = task.to_host(accs[name])
      totals[name] = acc if name not in totals else task.combine(totals[name], acc)
    examples += int(np.sum(local["batch_mask"])) if "batch_mask" in local else len(local["image"])
    if on_batch is not None:
      on_batch(i, local, predictions)
  for name, task in tasks.items():   # an empty split: the empty accumulators
    if name not in totals:
      totals[name] = task.to_host(task.init())
  return totals, examples


def results(tasks: dict, accs: dict, prefix: str = "") -> dict:
  """`{prefix + key: value}` of every task's `result`; ValueError if two tasks report the same key."""
  out: dict[str, Any] = {}
  owner: dict[str, str] = {}
  for name, task in tasks.items():
    for key, value in task.result(accs[name]).items():
      if key in owner:
        raise ValueError(f"config.tasks: tasks {owner[key]!r} and {name!r} both report {key!r}; give one of "
                         f"them another name")
      owner[key] = name
      out[prefix + key] = value
  return out


def figure_rows(tasks: dict, images: np.ndarray, predictions: dict, batch: dict, count: int) -> list[list]:
  """Rows `[image, <each task's panels>]` for the first `count` examples (see `Task.draw`)."""
  from dense_jax import viz  # pylint: disable=g-import-not-at-top
  rows = []
  for i in range(count):
    example = {k: np.asarray(v[i]) for k, v in batch.items()}
    row = [viz.to_uint8(images[i])]
    for name, task in tasks.items():
      prediction = jax.tree.map(lambda v, i=i: np.asarray(v[i]), predictions[name])   # an array or a dict of them
      row += [panel for _, panel in task.draw(images[i], prediction, example)]
    rows.append(row)
  return rows


def summary(tasks: dict, metrics: dict, prefix: str = "") -> str:
  """'mIoU 0.6012  pixel accuracy 0.9234': each task's headline numbers (`Task.summary_keys`)."""
  parts = []
  for task in tasks.values():
    for key, label in task.summary_keys().items():
      value = metrics.get(prefix + key)
      if isinstance(value, (int, float)):
        parts.append(f"{label} {value:.4f}")
  return "  ".join(parts)
