"""Text tables of an evaluation result (`dense_jax.evaluation.workdir.evaluate`), as printed by
`python -m dense_jax.evaluate`.

`format_table`: the semantic task's per-class table (IoU; accuracy = the class's recall, its confusion
row's diagonal share; share = the class's fraction of the labelled pixels) and the summary line;
`format_metrics`: one `key value` line per other metric. n/a: a class neither labelled nor predicted.
"""

from __future__ import annotations

import math

import numpy as np


def _cell(value) -> str:
  return "     n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:8.4f}"


def format_table(result: dict) -> str:
  """The per-class table and the summary line of a result with a semantic view (`class_names`,
  `confusion_matrix`, `per_class_iou`, `miou`, `pixel_accuracy`, `mean_accuracy`)."""
  names = result["class_names"]
  c = np.asarray(result["confusion_matrix"], np.float64)
  support = c.sum(1)
  total = max(c.sum(), 1.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = np.diag(c) / support
  width = max(12, max(len(n) for n in names) + 2)
  lines = [f"{'class':<{width}}{'IoU':>8}{'accuracy':>10}{'share':>9}"]
  for i, name in enumerate(names):
    lines.append(f"{name:<{width}}{_cell(result['per_class_iou'][name])}  {_cell(float(recall[i]))}"
                 f"{100 * support[i] / total:8.2f}%")
  lines.append(f"mIoU {result['miou']:.4f}   pixel accuracy {result['pixel_accuracy']:.4f}   "
               f"mean accuracy {result['mean_accuracy']:.4f}")
  return "\n".join(lines)


def format_metrics(metrics: dict) -> str:
  """One line per metric: the key, then the value (floats to 4 decimals)."""
  return "\n".join(f"{key:<40}{value:10.4f}" if isinstance(value, float) else f"{key:<40}{value}"
                   for key, value in metrics.items())
