"""Bad input to evaluate_coco: a result for an image (or a category) the ground truth lacks, a result
without its iou_type's field, a non-finite score — our own ValueError naming the result and the id, not
pycocotools' bare AssertionError (or a category silently ignored)."""

import math

import pytest

from dense_jax.metrics import coco

GT = {"images": [{"id": 7, "height": 20, "width": 20}, {"id": 3, "height": 20, "width": 20}],
      "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
      "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64.0,
                       "iscrowd": 0}]}
GOOD = {"image_id": 7, "category_id": 1, "bbox": [2, 2, 8, 8], "score": 0.9}


def test_good_results_evaluate():
  assert coco.evaluate_coco(GT, [GOOD], "box")["ap"] == pytest.approx(1.0)


@pytest.mark.parametrize("change, match", [
    (dict(image_id=12), r"results\[1\]: expected an image_id of the ground truth \(2 images, ids \[3, 7\]\), "
                        r"got image_id 12"),
    (dict(category_id=5), r"results\[1\]: expected a category_id of the ground truth \[1, 2\], got category_id 5 "
                          r"\(image_id 7\)"),
    (dict(score=math.nan), r"results\[1\]: expected a finite score, got nan \(image_id 7\)"),
    (dict(bbox=None), None),
])
def test_bad_result(change, match):
  result = {**GOOD, **change}
  if change.get("bbox", 0) is None:
    del result["bbox"]
    match = (r"results\[1\]: expected the keys image_id, category_id, bbox, score \(iou_type 'box'\), "
             r"got .*missing \['bbox'\]")
  with pytest.raises(ValueError, match=match):
    coco.evaluate_coco(GT, [GOOD, result], "box")


def test_mask_result_without_segmentation_and_a_non_dict():
  with pytest.raises(ValueError, match=r"results\[0\]: expected the keys .*segmentation.*missing \['segmentation'\]"):
    coco.evaluate_coco(GT, [GOOD], "mask")
  with pytest.raises(ValueError, match=r"results\[0\]: expected a dict .* got list"):
    coco.evaluate_coco(GT, [[7, 1, 0.9]], "box")
