"""COCO box / mask / keypoint AP through pycocotools: hand-computed cases (perfect -> 1, the 101-point
interpolation of one of two found, wrong class -> 0, empty -> 0), OKS against its float64 formula and
pycocotools' computeOks, capped ground truth counted, the mask paste ('exact' against grid_sample with
align_corners=False, detectron2's paste; 'torchvision' against its paste_masks_in_image; the exact paste
inverts the aligned mask-target crop) and the RLE round trip through pycocotools' decode, the results JSON."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval, Params

from dense_jax.metrics import coco
from dense_jax.metrics.paste import expand_boxes, paste_masks

H = W = 64
BOXES_YXYX = np.array([[8, 4, 40, 36], [20, 40, 60, 62], [0, 0, 0, 0]], np.float32)   # two instances + padding
CLASSES = np.array([1, 2, 0], np.int32)


def _gt_batch(b=1, num_instances=2, keypoints=None):
  masks = np.zeros((b, 3, H, W), np.uint8)
  for j, (y0, x0, y1, x1) in enumerate(BOXES_YXYX[:num_instances].astype(int)):
    masks[:, j, y0:y1, x0:x1] = 1
  batch = {"boxes": np.repeat(BOXES_YXYX[None], b, 0), "classes": np.repeat(CLASSES[None], b, 0),
           "masks": masks, "num_instances": np.full((b,), num_instances, np.int32),
           "batch_mask": np.ones((b,), np.float32)}
  if keypoints is not None:
    batch["keypoints"] = np.repeat(keypoints[None], b, 0)
  return batch


# RoI map of ones: the exact paste (the default) at BOXES_YXYX gives exactly the ground-truth rectangle
# (test_perfect_predictions checks); torchvision's would spill one pixel over every side of the box.
_ROI_MAP = np.ones((28, 28), np.float32)


def _xyxy(yxyx):
  return yxyx[..., [1, 0, 3, 2]]


def _detections(boxes_xyxy, scores, labels, valid=None, keypoints=None, b=1):
  n = len(scores)
  out = {"boxes": np.repeat(np.asarray(boxes_xyxy, np.float32).reshape(n, 4)[None], b, 0),
         "scores": np.repeat(np.asarray(scores, np.float32)[None], b, 0),
         "labels": np.repeat(np.asarray(labels, np.int32)[None], b, 0),
         "valid": np.repeat(np.ones((n,), bool)[None] if valid is None else np.asarray(valid)[None], b, 0),
         "masks": np.repeat(np.repeat(_ROI_MAP[None, None], n, 1), b, 0)}
  if keypoints is not None:
    out["keypoints"] = np.repeat(np.asarray(keypoints, np.float32)[None], b, 0)
  return out


def test_perfect_predictions_score_one_and_padded_examples_count_for_nothing():
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask"))
  batch = _gt_batch(b=3)
  batch["batch_mask"][2] = 0
  dets = _detections(_xyxy(BOXES_YXYX[:2]), [0.9, 0.8], [1, 2], b=3)
  dets["labels"][2] = [2, 1]   # the padded example's detections would be false positives if counted
  acc.add({k: jnp.asarray(v) for k, v in dets.items()}, batch)   # JAX arrays straight from the eval step
  decoded = mask_utils.decode([r["segmentation"] for r in acc.results("mask")[:2]])
  assert np.array_equal(np.transpose(decoded, (2, 0, 1)), batch["masks"][0, :2])
  out = acc.compute()
  assert set(out) == set(coco.result_keys(("box", "mask")))
  for p in ("box", "mask"):
    # Areas 32 * 32 (small and medium: COCO's ranges share the bound) and 40 * 22 (small); none large.
    for k in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ar"):
      assert out[f"{p}_{k}"] == pytest.approx(1.0), (p, k)
    assert math.isnan(out[f"{p}_ap_large"])
  assert len(acc.images) == 2 and out["gt_dropped"] == 0


@pytest.mark.parametrize("first_is_hit, expected", [(True, 51 / 101), (False, 25.5 / 101)])
def test_one_of_two_found_gives_the_101_point_interpolated_value(first_is_hit, expected):
  # Two GT of class 1; detections: one exact hit and one box far from both. Ranked by score:
  #   hit first:  precision (1, 1/2) at recall (1/2, 1/2) -> precision 1 at the 51 recall points 0..0.50
  #   miss first: precision (0, 1/2) at recall (0, 1/2) -> interpolated 1/2 at the 51 points 0..0.50
  # The recall points above 0.5 are never reached: precision 0. AP = sum / 101, the same at every IoU.
  batch = _gt_batch()
  batch["classes"][0, :2] = 1
  hit, miss = _xyxy(BOXES_YXYX[0]), np.array([45, 0, 63, 15], np.float32)
  scores = [0.9, 0.4] if first_is_hit else [0.4, 0.9]
  acc = coco.CocoAccumulator([1], iou_types=("box",))
  acc.add(_detections(np.stack([hit, miss]), scores, [1, 1]), batch)
  out = acc.compute()
  assert out["box_ap"] == pytest.approx(expected, abs=1e-12)
  assert out["box_ap50"] == pytest.approx(expected, abs=1e-12)
  assert out["box_ap75"] == pytest.approx(expected, abs=1e-12)
  assert out["box_ar"] == pytest.approx(0.5)


def test_wrong_class_scores_zero():
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask"))
  acc.add(_detections(_xyxy(BOXES_YXYX[:2]), [0.9, 0.8], [2, 1]), _gt_batch())
  out = acc.compute()
  assert out["box_ap"] == 0.0 and out["mask_ap"] == 0.0 and out["box_ar"] == 0.0


def test_empty_predictions_score_zero_and_no_ground_truth_is_nan():
  kps = np.zeros((3, 4, 3), np.float32)
  kps[0] = [[10, 10, 2], [30, 10, 2], [30, 35, 1], [10, 35, 2]]
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask", "keypoint"), oks_sigmas=(0.1,) * 4)
  dets = _detections(np.zeros((4, 4)), np.zeros(4), np.zeros(4), valid=np.zeros(4, bool),
                     keypoints=np.zeros((4, 4, 3)))
  acc.add(dets, _gt_batch(keypoints=kps))
  out = acc.compute()
  for p in ("box", "mask", "keypoint"):
    assert out[f"{p}_ap"] == 0.0 and out[f"{p}_ap50"] == 0.0 and out[f"{p}_ar"] == 0.0
  assert acc.results_json() == []
  # Images without any ground truth: every value undefined (NaN), with or without detections.
  acc = coco.CocoAccumulator([1, 2], iou_types=("box",))
  acc.add(_detections(_xyxy(BOXES_YXYX[:1]), [0.9], [1]), _gt_batch(num_instances=0))
  assert all(math.isnan(v) for k, v in acc.compute().items() if k.startswith("box_"))
  assert all(math.isnan(v) for k, v in coco.CocoAccumulator([1]).compute().items() if k.startswith("box_"))


def test_oks_matches_its_float64_formula_and_pycocotools():
  rng = np.random.default_rng(0)
  sigmas = np.array(coco.COCO_OKS_SIGMAS)
  gt = np.concatenate([rng.uniform(0, 100, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], -1)
  gt[2, :, 2] = 0    # no labelled keypoint -> 0
  dt = gt[[0, 1, 0, 1]].copy()
  dt[..., :2] += rng.normal(0, 3, (4, 17, 2))
  areas = np.array([900.0, 2500.0, 400.0])
  oks = coco.object_keypoint_similarity(dt, gt, areas, sigmas)
  for d in range(4):
    for g in range(2):
      v = gt[g, :, 2] > 0
      d2 = np.sum((dt[d, :, :2] - gt[g, :, :2]) ** 2, -1)
      expected = np.mean(np.exp(-d2 / (2 * areas[g] * (2 * sigmas) ** 2))[v])
      np.testing.assert_allclose(oks[d, g], expected, rtol=1e-12)
  assert np.all(oks[:, 2] == 0)
  # pycocotools' own computeOks on the same arrays (first two GT: labelled ones).
  acc = coco.CocoAccumulator([1], iou_types=("keypoint",))
  gts = [{"id": g + 1, "image_id": 1, "category_id": 1, "keypoints": gt[g].ravel().tolist(), "area": areas[g],
          "bbox": [0, 0, 10, 10], "iscrowd": 0, "num_keypoints": int(np.sum(gt[g, :, 2] > 0))} for g in range(2)]
  dts = [{"image_id": 1, "category_id": 1, "keypoints": dt[d].ravel().tolist(), "score": 1.0 - d / 10}
         for d in range(4)]
  ds = {"images": [{"id": 1, "height": 100, "width": 100}], "annotations": gts,
        "categories": [{"id": 1, "name": "1"}]}
  gt_coco = coco.coco_from_dataset(ds)
  ev = COCOeval(gt_coco, coco._quiet(gt_coco.loadRes, dts), "keypoints")
  ev.params.imgIds, ev.params.catIds = [1], [1]
  ev._prepare()
  np.testing.assert_allclose(ev.computeOks(1, 1), oks[:, :2], rtol=1e-12)
  del acc


def test_keypoint_ap_of_a_known_displacement():
  # One GT square (area 32 * 32 from its mask), its 4 corners labelled; the detection moves every corner by
  # d chosen so that OKS = exp(-d^2 / (2 s^2 k^2)) = 0.72 with k = 2 sigma: matched at IoU thresholds
  # 0.50 .. 0.70 (5 of 10) -> AP 0.5, AP50 1, AP75 0.
  sigma, area, target = 0.08, 32.0 * 32.0, 0.72
  d = math.sqrt(-math.log(target) * 2 * area * (2 * sigma) ** 2)
  kps = np.zeros((3, 4, 3), np.float32)
  kps[0] = [[4, 8, 2], [36, 8, 2], [36, 40, 2], [4, 40, 1]]
  dt = kps[:1].copy()
  dt[..., 0] += d
  acc = coco.CocoAccumulator([1, 2], iou_types=("keypoint",), oks_sigmas=[sigma] * 4)
  acc.add(_detections(_xyxy(BOXES_YXYX[:1]), [0.9], [1], keypoints=dt), _gt_batch(keypoints=kps))
  out = acc.compute()
  assert (out["keypoint_ap"], out["keypoint_ap50"], out["keypoint_ap75"]) == pytest.approx((0.5, 1.0, 0.0))
  assert "keypoint_ap_small" not in out
  oks = coco.object_keypoint_similarity(dt, kps[:1], [area], [sigma] * 4)
  assert oks[0, 0] == pytest.approx(target, rel=1e-6)   # float32 keypoints


def test_keypoint_sigmas_default_only_for_coco():
  acc = coco.CocoAccumulator([1, 2], iou_types=("keypoint",))
  kps = np.zeros((3, 4, 3), np.float32)
  with pytest.raises(ValueError, match="oks_sigmas"):
    acc.add(_detections(np.zeros((1, 4)), [0.5], [1], keypoints=np.zeros((1, 4, 3))), _gt_batch(keypoints=kps))
  assert coco.default_oks_sigmas(17) == coco.COCO_OKS_SIGMAS
  np.testing.assert_array_equal(coco.COCO_OKS_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)


def test_capped_ground_truth_is_counted():
  acc = coco.CocoAccumulator([1, 2], iou_types=("box",), max_gt_instances=1)
  batch = _gt_batch(b=2)
  batch["num_instances"][1] = 5   # 5 instances in the image, 3 rows in the arrays: the task cut them
  acc.add(_detections(_xyxy(BOXES_YXYX[:1]), [0.9], [1], b=2), batch)
  out = acc.compute()
  assert out["gt_dropped"] == 1 + 4 and out["images_gt_capped"] == 2
  assert out["box_ap"] == pytest.approx(1.0)   # only the kept instance (class 1) is evaluated


@pytest.mark.torch
def test_paste_masks_equals_torchvision():
  torch = pytest.importorskip("torch")
  roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
  rng = np.random.default_rng(1)
  n, im_h, im_w = 64, 40, 56
  masks = rng.random((n, 28, 28), dtype=np.float32)
  xy = rng.uniform(-15, 30, (n, 2))
  wh = rng.uniform(0.2, 50, (n, 2))
  wh[:4] = [[0.2, 0.3], [1.0, 1.0], [3.5, 2.0], [80, 70]]   # tiny, unit, small, larger than the image
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  ours = paste_masks(masks, boxes, (im_h, im_w), mode="torchvision")
  # Boxes wholly above or left of the image (integer corners, inclusive): torchvision raises there (an
  # empty slice assigned a non-empty one).
  corners = np.trunc(expand_boxes(boxes, 30 / 28))
  outside = (corners[:, 2] < 0) | (corners[:, 3] < 0)
  assert outside.sum() == 2 and not ours[outside].any()
  ref = roi_heads.paste_masks_in_image(torch.from_numpy(masks[~outside])[:, None],
                                       torch.from_numpy(boxes[~outside]), (im_h, im_w))[:, 0].numpy()
  np.testing.assert_allclose(ours[~outside], ref, atol=2e-6)
  assert np.array_equal(ours[~outside] > 0.5, ref > 0.5)


@pytest.mark.torch
def test_exact_paste_equals_grid_sample_align_corners_false():
  """detectron2's paste: pixel centres mapped into the box, bilinear grid_sample of the map (zeros outside)."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(4)
  n, im_h, im_w, m = 40, 36, 50, 28
  masks = rng.random((n, m, m), dtype=np.float32)
  xy = rng.uniform(-10, 40, (n, 2))
  wh = rng.uniform(0.5, 45, (n, 2))
  wh[:3] = [[0.5, 0.7], [3.0, 2.0], [90, 80]]   # sub-pixel, small, larger than the image
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  ours = paste_masks(masks, boxes, (im_h, im_w))
  # Normalised grid coordinates of every pixel centre in each box: -1 / +1 are the box's edges.
  b = torch.from_numpy(boxes.astype(np.float64))
  gx = (torch.arange(im_w, dtype=torch.float64)[None] + 0.5 - b[:, :1]) / (b[:, 2:3] - b[:, :1]) * 2 - 1
  gy = (torch.arange(im_h, dtype=torch.float64)[None] + 0.5 - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]) * 2 - 1
  grid = torch.stack([gx[:, None, :].expand(n, im_h, im_w), gy[:, :, None].expand(n, im_h, im_w)], -1)
  ref = torch.nn.functional.grid_sample(torch.from_numpy(masks[:, None]).double(), grid, mode="bilinear",
                                        padding_mode="zeros", align_corners=False)[:, 0].numpy()
  np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_exact_paste_inverts_the_aligned_mask_target_crop():
  """A ground-truth mask cropped to its own box (aligned=True, 28x28) and pasted back is the mask again,
  for small and large objects alike; torchvision's pair (aligned=False crop, integer-corner paste) is not."""
  from dense_jax.ops.mask_targets import mask_targets  # pylint: disable=g-import-not-at-top
  masks = np.zeros((3, 64, 64), np.uint8)
  boxes = np.array([[5, 7, 11, 14], [20, 3, 61, 40], [30, 45, 39, 52]], np.float32)   # xyxy, 6x7 .. 41x37 px
  for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
    masks[i, y0:y1, x0:x1] = 1
  idx = np.arange(3, dtype=np.int32)
  exact = paste_masks(np.asarray(mask_targets(masks, boxes, idx, 28, aligned=True)), boxes, (64, 64)) > 0.5
  assert np.array_equal(exact, masks.astype(bool))
  tv = paste_masks(np.asarray(mask_targets(masks, boxes, idx, 28, aligned=False)), boxes, (64, 64),
                   mode="torchvision") > 0.5
  assert not np.array_equal(tv[0], masks[0].astype(bool))   # the 6x7 px object loses or gains pixels


def test_mask_results_are_the_thresholded_paste_as_rle():
  rng = np.random.default_rng(2)
  n = 5
  probs = rng.random((n, 28, 28), dtype=np.float32)
  boxes = np.array([[3, 4, 30, 20], [10.5, 0, 50, 33.3], [-5, -5, 12, 9], [40, 40, 70, 80], [1, 1, 2, 2]],
                   np.float32)
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask"))
  dets = _detections(boxes, rng.random(n), [1, 2, 1, 2, 1])
  dets["masks"] = probs[None]
  acc.add(dets, _gt_batch())
  decoded = mask_utils.decode([r["segmentation"] for r in acc.results("mask")])   # (H, W, n)
  expected = paste_masks(probs, boxes, (H, W)) > 0.5
  assert np.array_equal(np.transpose(decoded, (2, 0, 1)).astype(bool), expected)
  assert [r["bbox"] for r in acc.results("box")][0] == [3.0, 4.0, 27.0, 16.0]   # xyxy -> x, y, w, h


def test_results_json_reevaluates_to_the_same_numbers(tmp_path):
  rng = np.random.default_rng(3)
  kps = np.zeros((3, 4, 3), np.float32)
  kps[0] = [[4, 8, 2], [36, 8, 2], [36, 40, 2], [4, 40, 0]]
  kps[1] = [[40, 20, 2], [62, 20, 1], [62, 60, 2], [40, 60, 2]]
  boxes = _xyxy(BOXES_YXYX[[0, 1, 0, 1]]) + rng.normal(0, 3, (4, 4)).astype(np.float32)
  det_kps = kps[[0, 1, 1, 0]] + rng.normal(0, 2, (4, 4, 3)).astype(np.float32)
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask", "keypoint"), oks_sigmas=[0.07] * 4)
  acc.add(_detections(boxes, rng.random(4), [1, 2, 2, 1], keypoints=det_kps, b=2), _gt_batch(b=2, keypoints=kps),
          image_ids=[7, 3])
  out = acc.compute()
  path = acc.write_results_json(tmp_path / "results.json", category_map={1: 11, 2: 12})
  written = json.loads(path.read_text())
  assert len(written) == 8 and {r["image_id"] for r in written} == {7, 3}
  assert set(written[0]) == {"image_id", "category_id", "bbox", "score", "segmentation", "keypoints"}
  assert {r["category_id"] for r in written} == {11, 12}
  # The written file, read back as torchvision's reference does (one field per type), against ground truth
  # built here from the arrays, through pycocotools alone, scores the same.
  anns = []
  for image_id in (7, 3):
    for j, (y0, x0, y1, x1) in enumerate(BOXES_YXYX[:2].tolist()):
      mask = np.zeros((H, W, 1), np.uint8, order="F")
      mask[int(y0):int(y1), int(x0):int(x1)] = 1
      rle = mask_utils.encode(mask)[0]
      anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 11 + j, "iscrowd": 0,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(mask.sum()), "segmentation": rle,
                   "keypoints": kps[j].ravel().tolist(), "num_keypoints": int(np.sum(kps[j, :, 2] > 0))})
  gt = coco.coco_from_dataset({"images": [{"id": i, "height": H, "width": W} for i in (7, 3)],
                               "categories": [{"id": 11}, {"id": 12}], "annotations": anns})
  for p, field, iou_type in (("box", "bbox", "bbox"), ("mask", "segmentation", "segm"),
                             ("keypoint", "keypoints", "keypoints")):
    results = [{"image_id": r["image_id"], "category_id": r["category_id"], field: r[field], "score": r["score"]}
               for r in written]
    ev = COCOeval(gt, coco._quiet(gt.loadRes, results), iou_type)
    ev.params.kpt_oks_sigmas = np.full(4, 0.07)
    coco._quiet(ev.evaluate), coco._quiet(ev.accumulate), coco._quiet(ev.summarize)
    assert ev.stats[0] == pytest.approx(out[f"{p}_ap"]) and ev.stats[1] == pytest.approx(out[f"{p}_ap50"]), p
  assert 0 < out["box_ap50"] <= 1 and 0 < out["keypoint_ap50"] <= 1


@pytest.mark.parametrize("change, match", [
    (lambda d, b: d.update(labels=np.full_like(d["labels"], 3)), r"detections\['labels'\]"),
    (lambda d, b: b["classes"].__setitem__((0, 1), 0), r"batch\['classes'\]"),
    (lambda d, b: d.update(boxes=d["boxes"][..., :3]), r"detections\['boxes'\]"),
    (lambda d, b: d.pop("masks"), "masks"),
    (lambda d, b: d.update(scores=d["scores"][:, :1]), r"detections\['scores'\]"),
])
def test_bad_input_names_the_argument(change, match):
  acc = coco.CocoAccumulator([1, 2], iou_types=("box", "mask"))
  dets, batch = _detections(_xyxy(BOXES_YXYX[:2]), [0.9, 0.8], [1, 2]), _gt_batch()
  change(dets, batch)
  with pytest.raises(ValueError, match=match):
    acc.add(dets, batch)
  assert acc.images == [] and acc.annotations == []   # nothing half-added
  with pytest.raises(ValueError, match="category_ids"):
    coco.CocoAccumulator([0, 1])
  with pytest.raises(ValueError, match="iou_types"):
    coco.CocoAccumulator([1], iou_types=("segm",))
  with pytest.raises(ValueError, match="mask_paste"):
    coco.CocoAccumulator([1], mask_paste="detectron2")
  with pytest.raises(ValueError, match="mode"):
    paste_masks(np.ones((1, 28, 28)), np.array([[0, 0, 4, 4]]), (8, 8), mode="nearest")
