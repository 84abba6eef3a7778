"""Confusion-matrix mIoU: a hand-computed case, an independent per-class count, jit + accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.metrics import segmentation as seg


def test_hand_computed_case():
  labels = np.array([[0, 0, 1, 1, 2, 255]])
  preds = np.array([[0, 1, 1, 1, 0, 2]])
  conf = np.asarray(seg.confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 3))
  np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
  out = seg.segmentation_metrics(conf, ["a", "b", "c"])
  # IoU: a = 1 / (2 + 2 - 1) = 1/3, b = 2 / (2 + 3 - 2) = 2/3, c = 0 / (1 + 0 - 0) = 0.
  np.testing.assert_allclose([out["iou/a"], out["iou/b"], out["iou/c"]], [1 / 3, 2 / 3, 0.0])
  np.testing.assert_allclose(out["miou"], 1 / 3)
  np.testing.assert_allclose(out["pixel_accuracy"], 3 / 5)      # the ignored pixel is not counted
  np.testing.assert_allclose(out["mean_accuracy"], (1 / 2 + 1 + 0) / 3)


def _reference_iou(labels, preds, k, ignore=255):
  """Per-class IoU from set counts, one class at a time (no confusion matrix)."""
  valid = (labels != ignore) & (labels < k)
  ious = []
  for c in range(k):
    inter = np.sum((labels == c) & (preds == c) & valid)
    union = np.sum(((labels == c) | (preds == c)) & valid)
    ious.append(inter / union if union else np.nan)
  return np.array(ious)


def test_matches_independent_implementation_over_batches():
  rng = np.random.default_rng(0)
  k = 5
  update = jax.jit(seg.update_confusion)
  conf = jnp.zeros((k, k), jnp.int32)
  all_labels, all_preds = [], []
  for _ in range(3):
    labels = rng.integers(0, k, size=(2, 7, 9))
    labels[rng.uniform(size=labels.shape) < 0.2] = 255
    preds = np.where(rng.uniform(size=labels.shape) < 0.6, labels % k, rng.integers(0, k, size=labels.shape))
    preds[labels == 4] = 0          # class 4 never predicted: IoU 0, not NaN
    conf = update(conf, jnp.asarray(labels), jnp.asarray(preds))
    all_labels.append(labels)
    all_preds.append(preds)
  labels, preds = np.concatenate(all_labels), np.concatenate(all_preds)
  ref = _reference_iou(labels, preds, k)
  np.testing.assert_allclose(seg.per_class_iou(conf), ref)
  np.testing.assert_allclose(seg.segmentation_metrics(conf)["miou"], np.nanmean(ref))


def test_absent_class_is_left_out_of_the_mean():
  conf = np.array([[5, 0, 0], [0, 3, 0], [0, 0, 0]])
  out = seg.segmentation_metrics(conf)
  assert np.isnan(out["iou/2"]) and out["miou"] == 1.0


def test_out_of_range_labels_are_not_counted():
  conf = seg.confusion_matrix(jnp.array([0, 7, -1, 1]), jnp.array([0, 0, 1, 1]), 2)
  np.testing.assert_array_equal(np.asarray(conf), [[1, 0], [0, 1]])


def test_bad_shapes():
  with pytest.raises(ValueError, match="predictions"):
    seg.confusion_matrix(jnp.zeros((2, 3), jnp.int32), jnp.zeros((3, 2), jnp.int32), 2)
  with pytest.raises(ValueError, match="square"):
    seg.per_class_iou(np.zeros((2, 3)))
