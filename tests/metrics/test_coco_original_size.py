"""The results JSON in the original image's pixels: a batch's `original_size` (B, 2) maps boxes, keypoints
and masks back through `eval_resized_size` (hand-computed case: (40, 60) evaluated at (80, 80)), the metrics
do not change, and without `original_size` the JSON is byte for byte what it was before the key existed."""

import hashlib
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dense_jax.data.augment import eval_resized_size
from dense_jax.metrics import coco

ORIGINAL = (40, 60)   # (h, w) of the source image
EVALUATED = (80, 80)  # f = min(80 / 40, 80 / 60) = 4 / 3 -> (round(53.33), 80) = (53, 80), padded to 80 x 80
# (sy, sx) = (53 / 40, 80 / 60) = (1.325, 4 / 3).
# Resized-frame box (x0, y0, x1, y1) = (8, 13.25, 40, 39.75) -> original (6, 10, 30, 30):
# xywh (6, 10, 24, 20).
DET_BOX = [8.0, 13.25, 40.0, 39.75]
# Resized-frame keypoints (x, y, score): (20, 26.5) -> (15, 20); (4, 6.625) -> (3, 5); the score stays.
DET_KPS = [[20.0, 26.5, 0.75], [4.0, 6.625, 0.5]]


def _batch(original_size=None):
  """One image at EVALUATED with one ground-truth rectangle of class 1 (with two keypoints)."""
  masks = np.zeros((1, 1) + EVALUATED, np.uint8)
  masks[0, 0, 13:40, 8:40] = 1
  batch = {"boxes": np.array([[[13, 8, 40, 40]]], np.float32), "classes": np.array([[1]], np.int32),
           "num_instances": np.array([1], np.int32), "masks": masks, "batch_mask": np.ones((1,), np.float32),
           "keypoints": np.array([[[[20, 26, 2], [4, 7, 2]]]], np.float32)}
  if original_size is not None:
    batch["original_size"] = np.array([original_size], np.int32)
  return batch


def _detections(box=DET_BOX):
  return {"boxes": np.array([[box]], np.float32), "scores": np.array([[0.9]], np.float32),
          "labels": np.array([[1]], np.int32), "valid": np.ones((1, 1), bool),
          "masks": np.ones((1, 1, 28, 28), np.float32),   # a full-box map: pastes to exactly the box
          "keypoints": np.array([[DET_KPS]], np.float32)}


def _accumulator(**kw):
  return coco.CocoAccumulator([1], iou_types=("box", "mask", "keypoint"), oks_sigmas=[0.07, 0.07], **kw)


def test_eval_resized_size_by_hand():
  assert eval_resized_size(ORIGINAL, EVALUATED) == (53, 80)
  assert eval_resized_size((480, 640), (1024, 1024)) == (768, 1024)   # COCO's 640 x 480 at f = 1.6
  assert eval_resized_size((80, 60), (80, 80)) == (80, 60)            # f = 1: padded only
  assert eval_resized_size((40, 60), None) == (40, 60) == eval_resized_size((40, 60), (40, 60))
  with pytest.raises(ValueError, match="hw"):
    eval_resized_size((0, 60), EVALUATED)


def test_json_in_original_pixels_by_hand():
  acc = _accumulator()
  acc.add(_detections(), _batch(ORIGINAL), image_ids=[139])
  (row,) = acc.results_json(category_map={1: 5})
  assert row["image_id"] == 139 and row["category_id"] == 5 and row["score"] == pytest.approx(0.9)
  assert row["bbox"] == pytest.approx([6.0, 10.0, 24.0, 20.0], abs=1e-9)
  assert row["keypoints"] == pytest.approx([15.0, 20.0, 0.75, 3.0, 5.0, 0.5], abs=1e-6)
  assert row["segmentation"]["size"] == [40, 60]
  decoded = mask_utils.decode(row["segmentation"])
  expected = np.zeros(ORIGINAL, np.uint8)
  expected[10:30, 6:30] = 1   # rows y0..y1, columns x0..x1 of the original-pixel box
  assert decoded.shape == ORIGINAL and np.array_equal(decoded, expected)
  # The metrics' results stay in the evaluated pixels: the box and mask as given, the mask at 80 x 80.
  (box,) = acc.results("box")
  assert box["bbox"] == [8.0, 13.25, 32.0, 26.5]
  (mask,) = acc.results("mask")
  assert mask["segmentation"]["size"] == list(EVALUATED) and mask_utils.area(mask["segmentation"]) == 27 * 32
  json.dumps(acc.results_json())   # JSON-ready (no NumPy scalars)


def test_box_into_the_padding_is_clipped_to_the_image_and_mask_pasted_unclipped():
  # x 60..80 -> 45..60; y 40..70 (the padding starts at row 53) -> 30.19..52.83, clipped to 40.
  acc = _accumulator()
  acc.add(_detections([60.0, 40.0, 80.0, 70.0]), _batch(ORIGINAL))
  (row,) = acc.results_json()
  assert row["bbox"] == pytest.approx([45.0, 40.0 / 1.325, 15.0, 40.0 - 40.0 / 1.325])
  decoded = mask_utils.decode(row["segmentation"])
  expected = np.zeros(ORIGINAL, np.uint8)
  expected[30:40, 45:60] = 1   # pixel centres 30.5 .. 39.5 lie in [30.19, 52.83), cut at the image's edge
  assert np.array_equal(decoded, expected)


def test_padded_only_image_keeps_coordinates_but_its_own_mask_size():
  acc = _accumulator()
  acc.add(_detections(), _batch((80, 60)))   # f = 1: the 80 x 60 image padded to 80 x 80
  (row,) = acc.results_json()
  assert row["bbox"] == [8.0, 13.25, 32.0, 26.5] and row["segmentation"]["size"] == [80, 60]
  assert row["keypoints"] == pytest.approx(np.ravel(DET_KPS).tolist())


def test_metrics_do_not_depend_on_original_size_and_equal_size_is_today():
  plain, mapped, same = _accumulator(), _accumulator(), _accumulator()
  plain.add(_detections(), _batch())
  mapped.add(_detections(), _batch(ORIGINAL))
  same.add(_detections(), _batch(EVALUATED))
  out = plain.compute()
  assert out == mapped.compute() == same.compute() and out["box_ap"] == pytest.approx(1.0)
  assert same.results_json() == plain.results_json() != mapped.results_json()


def test_torchvision_paste_mode_is_used_for_the_original_mask():
  from dense_jax.ops.paste_masks import paste_masks
  probs = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
  dets = _detections()
  dets["masks"] = probs[None]
  acc = _accumulator(mask_paste="torchvision")
  acc.add(dets, _batch(ORIGINAL))
  (row,) = acc.results_json()
  box = np.array([[8.0 / (4 / 3), 13.25 / 1.325, 40.0 / (4 / 3), 39.75 / 1.325]])
  expected = paste_masks(probs, box, ORIGINAL, mode="torchvision")[0] > 0.5
  assert np.array_equal(mask_utils.decode(row["segmentation"]).astype(bool), expected)


def test_bad_original_size_names_the_key():
  acc = _accumulator()
  for bad in (np.array([[40, 60, 1]], np.int32), np.array([40, 60], np.int32), np.array([[0, 60]], np.int32),
              np.array([[40.0, 60.0]], np.float32)):
    batch = _batch()
    batch["original_size"] = bad
    with pytest.raises(ValueError, match=r"batch\['original_size'\]"):
      acc.add(_detections(), batch)
  assert acc.images == [] and acc.detections == []
  batch = _batch((0, 0))
  batch["batch_mask"][:] = 0   # a padding example's (0, 0) is fine: it is skipped
  acc.add(_detections(), batch)
  assert acc.images == []


# ---- unchanged without original_size: a fixed input's JSON, its sha256 taken with the code before
# `original_size` existed (commit ddfd9fe).
GOLDEN_SHA256 = "b734ef6aab826b385314e2eed67b38e7080faaf34c52e074b52282b6b8a33e96"


def _fixed_input():
  h = w = 64
  boxes = np.array([[8, 4, 40, 36], [20, 40, 60, 62], [0, 0, 0, 0]], np.float32)
  masks = np.zeros((2, 3, h, w), np.uint8)
  for j, (y0, x0, y1, x1) in enumerate(boxes[:2].astype(int)):
    masks[:, j, y0:y1, x0:x1] = 1
  kps = np.zeros((3, 4, 3), np.float32)
  kps[0] = [[4, 8, 2], [36, 8, 2], [36, 40, 2], [4, 40, 0]]
  kps[1] = [[40, 20, 2], [62, 20, 1], [62, 60, 2], [40, 60, 2]]
  batch = {"boxes": np.repeat(boxes[None], 2, 0), "classes": np.array([[1, 2, 0]] * 2, np.int32),
           "masks": masks,
           "num_instances": np.full((2,), 2, np.int32), "batch_mask": np.ones((2,), np.float32),
           "keypoints": np.repeat(kps[None], 2, 0)}
  probs = (np.arange(3 * 28 * 28, dtype=np.float32).reshape(3, 28, 28) % 97) / 96.0
  xyxy = [[3.5, 7.25, 37.0, 41.5], [40.0, 19.0, 63.5, 61.0], [-4.0, 50.0, 20.0, 70.0]]
  dets = {"boxes": np.array([xyxy] * 2, np.float32), "scores": np.array([[0.9, 0.75, 0.3]] * 2, np.float32),
          "labels": np.array([[1, 2, 1]] * 2, np.int32),
          "valid": np.array([[True, True, True], [True, False, True]]), "masks": np.repeat(probs[None], 2, 0),
          "keypoints": np.repeat((kps[[0, 1, 0]] + 0.5)[None], 2, 0)}
  return dets, batch


def test_json_without_original_size_is_unchanged():
  dets, batch = _fixed_input()
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask", "keypoint"), oks_sigmas=[0.07] * 4)
  acc.add(dets, batch, image_ids=[7, 3])
  rows = acc.results_json(category_map={1: 11, 2: 12})
  assert len(rows) == 5 and rows[0]["bbox"] == [3.5, 7.25, 33.5, 34.25]
  assert rows[0]["keypoints"][:3] == [4.5, 8.5, 2.5] and rows[0]["segmentation"]["size"] == [64, 64]
  assert hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest() == GOLDEN_SHA256
