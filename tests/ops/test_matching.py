"""match_boxes against torchvision's Matcher (random IoU matrices with ties, both detection settings),
padding rows, empty images and batching."""

import jax
import numpy as np
import pytest

from dense_jax.ops.boxes import box_iou
from dense_jax.ops.matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match_boxes

SETTINGS = [(0.7, 0.3, True), (0.5, 0.5, False), (0.7, 0.3, False), (0.5, 0.4, True)]


def _quality(rng, m, n):
  q = np.round(rng.uniform(0, 1, (m, n)) ** 2 * 10) / 10  # coarse values: many ties, exact thresholds
  q[rng.uniform(size=(m, n)) < 0.3] = 0.0
  return q.astype(np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("setting", SETTINGS)
def test_equal_to_torchvision_matcher(setting):
  torch = pytest.importorskip("torch")
  det_utils = pytest.importorskip("torchvision.models.detection._utils")
  matcher = det_utils.Matcher(*setting)
  rng = np.random.default_rng(0)
  for m, n in [(1, 20), (5, 40), (12, 300)]:
    q = _quality(rng, m, n)
    ref = matcher(torch.from_numpy(q)).numpy()
    np.testing.assert_array_equal(match_boxes(q, *setting), ref)
    # padding rows (all quality 0 or even high) change nothing
    padded = np.concatenate([q, rng.uniform(size=(3, n)).astype(np.float32)])
    valid = np.arange(m + 3) < m
    np.testing.assert_array_equal(match_boxes(padded, *setting, gt_valid=valid), ref)


def test_hand_case_low_quality_restore():
  # gt 0 overlaps best with prediction 2 at 0.4 (< 0.7): restored; prediction 1 stays between thresholds.
  q = np.array([[0.1, 0.35, 0.4, 0.0], [0.0, 0.0, 0.2, 0.9]], np.float32)
  np.testing.assert_array_equal(match_boxes(q, 0.7, 0.3, True), [-1, -2, 0, 1])
  np.testing.assert_array_equal(match_boxes(q, 0.7, 0.3, False), [-1, -2, -2, 1])
  assert BELOW_LOW_THRESHOLD == -1 and BETWEEN_THRESHOLDS == -2


def test_empty_image_and_batched_jit():
  q = np.random.default_rng(1).uniform(size=(2, 4, 10)).astype(np.float32)
  valid = np.array([[True, True, False, False], [False] * 4])
  out = jax.jit(lambda q, v: match_boxes(q, 0.7, 0.3, True, gt_valid=v))(q, valid)
  assert out.shape == (2, 10) and out.dtype == np.int32
  np.testing.assert_array_equal(out[0], match_boxes(q[0, :2], 0.7, 0.3, True))
  np.testing.assert_array_equal(out[1], -1)
  np.testing.assert_array_equal(match_boxes(np.zeros((0, 5), np.float32), 0.7, 0.3, True), -1)
  assert match_boxes(np.zeros((3, 0), np.float32), 0.7, 0.3, True).shape == (0,)
  # typical use: IoU of ground truth with anchors
  gt = np.array([[0, 0, 10, 10]], np.float32)
  anchors = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], np.float32)
  np.testing.assert_array_equal(match_boxes(box_iou(gt, anchors), 0.7, 0.3, True), [0, -1, -1])


def test_bad_input_raises():
  with pytest.raises(ValueError, match="quality"):
    match_boxes(np.zeros(3), 0.7, 0.3)
  with pytest.raises(ValueError, match="low_threshold"):
    match_boxes(np.zeros((2, 3)), 0.3, 0.7)
  with pytest.raises(ValueError, match="gt_valid"):
    match_boxes(np.zeros((2, 3)), 0.7, 0.3, gt_valid=np.ones(3, bool))
