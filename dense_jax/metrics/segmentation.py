"""Semantic segmentation metrics from one global confusion matrix (the way VOC/Cityscapes report).

`C[i, j]` counts pixels of true class `i` predicted as class `j`, summed over the whole evaluation
set (not averaged per image). Pixels whose label is the ignore label (255), or any id outside
`[0, num_classes)`, are not counted. From `C`:

  IoU_c          = C[c, c] / (sum_j C[c, j] + sum_i C[i, c] - C[c, c])     (TP / (TP + FN + FP))
  mIoU           = mean of IoU_c over classes with a non-empty union (a class never present and never
                   predicted is NaN and left out, as mmseg/torchmetrics do)
  pixel accuracy = trace(C) / sum(C)
  mean accuracy  = mean over classes present in the labels of C[c, c] / sum_j C[c, j]

`confusion_matrix` / `update_confusion` are jit-able (static `num_classes`); they use a one-hot
contraction, so with a batch sharded over devices the counts are a local contraction plus one
all-reduce. The summary functions run in NumPy on the accumulated matrix (int64 on the host).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax.checks import check_rank


def confusion_matrix(labels, predictions, num_classes: int, ignore_label: int = 255):
  """`(num_classes, num_classes)` int32 counts, rows = true class, columns = predicted class.

  labels, predictions: int arrays of the same shape (e.g. `(B, H, W)`).
  """
  if labels.shape != predictions.shape:
    raise ValueError(f"predictions: expected the labels' shape {labels.shape}, got {predictions.shape}")
  if num_classes < 1:
    raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
  labels = labels.reshape(-1).astype(jnp.int32)
  predictions = predictions.reshape(-1).astype(jnp.int32)
  valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
  classes = jnp.arange(num_classes, dtype=jnp.int32)
  true_onehot = ((labels[:, None] == classes) & valid[:, None]).astype(jnp.int32)
  pred_onehot = (predictions[:, None] == classes).astype(jnp.int32)
  return jnp.einsum("nk,nl->kl", true_onehot, pred_onehot, preferred_element_type=jnp.int32)


def update_confusion(confusion, labels, predictions, ignore_label: int = 255):
  """`confusion + confusion_matrix(labels, predictions)` (jit-able accumulation step)."""
  check_rank(confusion, 2, "confusion")
  return confusion + confusion_matrix(labels, predictions, confusion.shape[0], ignore_label).astype(
      confusion.dtype)


def per_class_iou(confusion) -> np.ndarray:
  """IoU of each class (float64); NaN where the class is neither present nor predicted."""
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"confusion: expected a square matrix, got shape {c.shape}")
  tp = np.diag(c)
  union = c.sum(0) + c.sum(1) - tp
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, tp / union, np.nan)


def segmentation_metrics(confusion, class_names=None) -> dict:
  """`{'miou', 'pixel_accuracy', 'mean_accuracy', 'iou/<class>'...}` as Python floats."""
  c = np.asarray(confusion, np.float64)
  iou = per_class_iou(c)
  total = c.sum()
  support = c.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    acc = np.where(support > 0, np.diag(c) / support, np.nan)
  out = {
      "miou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
      "pixel_accuracy": float(np.trace(c) / total) if total > 0 else float("nan"),
      "mean_accuracy": float(np.nanmean(acc)) if np.any(~np.isnan(acc)) else float("nan"),
  }
  names = list(class_names) if class_names is not None else [str(i) for i in range(c.shape[0])]
  if len(names) != c.shape[0]:
    raise ValueError(f"class_names: expected {c.shape[0]} names, got {len(names)}")
  for name, value in zip(names, iou):
    out[f"iou/{name}"] = float(value)
  return out
