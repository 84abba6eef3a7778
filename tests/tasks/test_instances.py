"""The `instances` and `keypoints` tasks: the loss is the sum of the detection terms, the evaluation folded
through the engine's loop (to_host / combine in any batching, padding skipped) equals one pycocotools
evaluation of the same arrays, hand-made perfect detections score AP 1, keypoint ground truth is class 1,
results JSON with COCO's category ids, figures, bad arguments, and with `semantic` in one config."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import data, evaluation, tasks as tasks_lib
from dense_jax.losses import detection_losses
from dense_jax.metrics import coco
from dense_jax.tasks.instances import InstancesTask
from dense_jax.tasks.keypoints import KeypointsTask

H = W = 32
DATASET = "dense_shapes/small_64"
# Two ground-truth instances (y0, x0, y1, x1) and a padding row.
BOXES_YXYX = np.array([[2, 4, 18, 20], [12, 14, 30, 30], [0, 0, 0, 0]], np.float32)
# RoI map 1 inside, 0.5 on its outer ring: pasted at the box it gives exactly the rectangle (test_coco.py).
ROI_MAP = np.pad(np.ones((26, 26), np.float32), 1, constant_values=0.5)


def _batch(b, classes=(4, 5), batch_mask=None, keypoints=False):
  masks = np.zeros((b, 3, H, W), np.uint8)
  for j, (y0, x0, y1, x1) in enumerate(BOXES_YXYX[:2].astype(int)):
    masks[:, j, y0:y1, x0:x1] = 1
  batch = {"image": np.zeros((b, H, W, 3), np.float32), "boxes": np.repeat(BOXES_YXYX[None], b, 0),
           "classes": np.repeat(np.array([*classes, 0], np.int32)[None], b, 0), "masks": masks,
           "num_instances": np.full((b,), 2, np.int32),
           "batch_mask": np.ones((b,), np.int32) if batch_mask is None else np.asarray(batch_mask, np.int32)}
  if keypoints:
    kp = np.zeros((3, 4, 3), np.float32)
    kp[0] = [[4, 2, 2], [20, 2, 2], [20, 18, 2], [4, 18, 1]]
    kp[1] = [[14, 12, 2], [30, 12, 2], [22, 30, 2], [0, 0, 0]]
    batch["keypoints"] = np.repeat(kp[None], b, 0)
  return batch


def _outputs(b, scores, labels, valid=(True, True, False), shift=0.0, keypoints=None):
  boxes = BOXES_YXYX[:, [1, 0, 3, 2]] + np.float32(shift)
  out = {"boxes": np.repeat(boxes[None], b, 0), "scores": np.repeat(np.float32(scores)[None], b, 0),
         "labels": np.repeat(np.int32(labels)[None], b, 0), "valid": np.repeat(np.array(valid)[None], b, 0),
         "masks": np.repeat(np.repeat(ROI_MAP[None, None], 3, 1), b, 0)}
  if keypoints is not None:
    out["keypoints"] = np.repeat(np.float32(keypoints)[None], b, 0)
  return out


@pytest.fixture(scope="module")
def info():
  return data.dataset_info(DATASET)


def _fold(task, pieces):
  """The engine's loop over `pieces` [(outputs, batch)]: jit(update) per batch, to_host, combine."""
  step = jax.jit(lambda outputs, batch: task.update(task.init(), outputs, batch))
  total = None
  for outputs, batch in pieces:
    acc = task.to_host(step({task.name: outputs}, batch))
    total = acc if total is None else task.combine(total, acc)
  return task.result(total)


def test_loss_is_the_sum_of_the_detection_terms(info):
  task = InstancesTask(info=info)
  rng = np.random.default_rng(0)
  b, a, r, c = 2, 12, 6, 9
  out = {"rpn_logits": rng.normal(size=(b, a)), "rpn_deltas": rng.normal(size=(b, a, 4)),
         "rpn_labels": rng.integers(-1, 2, size=(b, a)), "rpn_box_targets": rng.normal(size=(b, a, 4)),
         "roi_class_logits": rng.normal(size=(b, r, c)), "roi_box_deltas": rng.normal(size=(b, r, c, 4)),
         "roi_labels": rng.integers(-1, c, size=(b, r)), "roi_box_targets": rng.normal(size=(b, r, 4)),
         "mask_logits": rng.normal(size=(b, 3, 28, 28)), "mask_targets": rng.uniform(size=(b, 3, 28, 28)),
         "mask_valid": rng.uniform(size=(b, 3)) > 0.3}
  out = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32 if v.dtype == np.float64 else
                                             (jnp.int32 if v.dtype == np.int64 else v.dtype)), out)
  batch = {"batch_mask": np.array([1, 0], np.int32)}
  loss, aux = task.loss({"instances": out}, batch)
  terms = detection_losses(out, jnp.array([True, False]))
  assert set(terms) == {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box", "mask"}
  np.testing.assert_allclose(float(loss), float(sum(terms.values())), rtol=1e-6)
  for k, v in terms.items():
    np.testing.assert_allclose(float(aux[f"instances/loss_{k}"]), float(v), rtol=1e-6)
  assert float(loss) > 0


def test_evaluation_equals_one_pycocotools_run_in_any_batching(info):
  task = InstancesTask(info=info)
  # Image 1: both found (one with the wrong class), image 2: boxes shifted by 3 px, image 3 padding.
  # The third detection of image 1 has a stuff class (2, sky): not evaluated, dropped by the task.
  outs = [_outputs(1, [0.9, 0.8, 0.95], [4, 6, 2], valid=(True, True, True)),
          _outputs(1, [0.7, 0.6, 0.1], [4, 5, 0], shift=3.0),
          _outputs(1, [0.99, 0.99, 0.99], [4, 5, 4], valid=(True, True, True))]
  batches = [_batch(1), _batch(1), _batch(1, batch_mask=[0])]
  reference = coco.CocoAccumulator(info.thing_classes, iou_types=("box", "mask"))
  for o, bt in zip(outs, batches):
    o = dict(o, valid=o["valid"] & (o["labels"] != 2))
    reference.add(o, bt)
  expected = reference.compute()
  one_by_one = _fold(task, list(zip(outs, batches)))
  together = _fold(task, [(jax.tree.map(lambda *v: np.concatenate(v), *outs),
                           jax.tree.map(lambda *v: np.concatenate(v), *batches))])
  for got in (one_by_one, together):
    for key in coco.result_keys(("box", "mask"))[:-2]:
      np.testing.assert_equal(got[key], expected[key], err_msg=key)
    assert got["instances/gt_dropped"] == 0 and got["instances/images_gt_capped"] == 0
  assert 0.2 < expected["box_ap"] < 0.9 and 0.2 < expected["mask_ap"] < 0.9   # neither trivial 0 nor 1


def test_perfect_detections_score_one_and_masks_stay_uint8(info):
  task = InstancesTask(info=info)
  step = jax.jit(lambda outputs, batch: task.update(task.init(), outputs, batch))
  acc = task.to_host(step({"instances": _outputs(2, [0.9, 0.8, 0.0], [4, 5, 0])}, _batch(2)))
  assert acc["truth"]["masks"].dtype == np.uint8   # not widened to int64 on the host
  metrics = task.result(acc)
  for key in ("box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75"):
    assert metrics[key] == pytest.approx(1.0), key
  empty = task.result(task.to_host(task.init()))   # an empty split
  assert all(np.isnan(empty[k]) for k in ("box_ap", "mask_ap"))


def test_keypoint_truth_is_class_one_and_perfect_keypoints_score_one(info):
  task = KeypointsTask(info=info)
  assert task.oks_sigmas == info.oks_sigmas and len(task.oks_sigmas) == info.num_keypoints
  assert {"keypoints", "boxes", "classes", "num_instances"} <= set(task.batch_keys)
  assert task.keypoint_classes == info.keypoint_classes == (5, 6)   # dense_shapes' squares and triangles
  batch = _batch(2, classes=(5, 6), keypoints=True)
  kp = batch["keypoints"][0].copy()
  metrics = _fold(task, [(_outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=kp), batch)])
  assert metrics["keypoint_ap"] == pytest.approx(1.0)
  assert metrics["keypoint_ap50"] == pytest.approx(1.0) and metrics["keypoint_ap75"] == pytest.approx(1.0)
  far = kp.copy()
  far[..., :2] += 6.0   # 6 px off on ~16-18 px objects with σ = 0.05: OKS ~ 0
  assert _fold(task, [(_outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=far), batch)])["keypoint_ap"] == 0.0
  assert "box_ap" not in metrics   # no clash with `instances`


def test_keypoint_truth_is_the_keypoint_classes_only(info):
  """As COCO's person_keypoints annotations hold persons only: a disc (class 4, no keypoint slots) is not
  ground truth, so a detection of it is a false positive, and the square alone, detected, scores AP 1."""
  task = KeypointsTask(info=info)
  batch = _batch(2, classes=(4, 5), keypoints=True)   # instance 0 a disc, instance 1 a square
  kp = batch["keypoints"][0].copy()
  truth = jax.device_get(task.update({}, {"keypoints": _outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=kp)},
                                     batch)["truth"])
  np.testing.assert_array_equal(truth["num_instances"], [1, 1])
  np.testing.assert_array_equal(truth["classes"][:, 0], [1, 1])
  np.testing.assert_array_equal(truth["boxes"][:, 0], np.repeat(BOXES_YXYX[1:2], 2, 0))   # the square, moved up
  np.testing.assert_array_equal(truth["keypoints"][:, 0], np.repeat(kp[1:2], 2, 0))
  np.testing.assert_array_equal(truth["masks"][:, 0], batch["masks"][:, 1])
  only_square = _fold(task, [(_outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], valid=(False, True, False), keypoints=kp),
                              batch)])
  assert only_square["keypoint_ap"] == pytest.approx(1.0)
  with_disc = _fold(task, [(_outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=kp), batch)])
  assert with_disc["keypoint_ap"] < 0.99   # the disc's detection, ranked first, is a false positive
  every = KeypointsTask(info=info, keypoint_classes=())   # () = every instance is ground truth
  assert _fold(every, [(_outputs(2, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=kp), batch)])["keypoint_ap"] == (
      pytest.approx(1.0))


def test_with_semantic_in_one_config_no_key_clash(info):
  config = {"semantic": {"weight": 1.0}, "instances": {"weight": 1.0}, "keypoints": {"weight": 0.5}}
  tasks = tasks_lib.build_tasks(config, info)
  assert set(tasks) == {"semantic", "instances", "keypoints"}
  keys = tasks_lib.build.batch_keys(tasks)
  assert {"semantic", "masks", "keypoints", "boxes"} <= set(keys)
  accs = {name: task.to_host(task.init()) for name, task in tasks.items()}
  metrics = evaluation.results(tasks, accs, prefix="val/")   # raises on a clash
  assert {"val/miou", "val/box_ap", "val/mask_ap", "val/keypoint_ap"} <= set(metrics)


def test_results_json_and_coco_category_ids(info, tmp_path):
  task = InstancesTask(info=info)
  step = jax.jit(lambda outputs, batch: task.update(task.init(), outputs, batch))
  acc = task.to_host(step({"instances": _outputs(1, [0.9, 0.8, 0.0], [4, 5, 0])}, _batch(1)))
  files = task.write_outputs(acc, tmp_path, "eval_validation_whole")
  rows = json.loads(open(files["instances_results"]).read())
  assert [(r["image_id"], r["category_id"]) for r in rows] == [(1, 4), (1, 5)]
  assert rows[0]["bbox"] == [4.0, 2.0, 16.0, 16.0] and rows[0]["score"] == pytest.approx(0.9)
  assert "counts" in rows[0]["segmentation"]
  coco_info = data.dataset_info("coco2017_instances")
  mapping = InstancesTask(info=coco_info).category_map
  assert mapping[1] == 1 and mapping[12] == 13 and mapping[80] == 90   # person; stop sign; toothbrush


def test_figures(info):
  task = InstancesTask(info=info, draw_threshold=0.5)
  example = {k: v[0] for k, v in _batch(1).items()}
  prediction = {k: v[0] for k, v in _outputs(1, [0.9, 0.3, 0.0], [4, 5, 0]).items()}
  panels = task.draw(np.full((H, W, 3), 0.5, np.float32), prediction, example)
  assert [t for t, _ in panels] == ["instances truth", "instances prediction"]
  truth, predicted = (p for _, p in panels)
  assert truth.shape == predicted.shape == (H, W, 3) and truth.dtype == np.uint8
  from dense_jax import viz
  grey = np.all(predicted == viz.to_uint8(np.full((H, W, 3), 0.5, np.float32)), axis=-1)
  assert not grey[8, 10] and grey[25, 25]   # inside the drawn detection; the 0.3 one is not drawn
  kp_task = KeypointsTask(info=info)
  example = {k: v[0] for k, v in _batch(1, keypoints=True).items()}
  prediction = {k: v[0] for k, v in _outputs(1, [0.9, 0.8, 0.0], [1, 1, 0], keypoints=example["keypoints"]).items()}
  panels = kp_task.draw(np.zeros((H, W, 3), np.float32), prediction, example)
  assert len(panels) == 2 and all(p.shape == (H, W, 3) for _, p in panels)
  assert tuple(panels[1][1][2, 20]) == (255, 255, 0)   # a predicted keypoint (x 20, y 2) drawn
  truth = panels[0][1]   # the ground truth: the square's keypoints (x 14, y 12), not the disc's (x 4, y 2)
  assert tuple(truth[12, 14]) == (255, 255, 0) and tuple(truth[2, 4]) != (255, 255, 0)


def test_bad_arguments(info):
  with pytest.raises(ValueError, match="category_ids"):
    InstancesTask(category_ids=None)
  with pytest.raises(ValueError, match="category_ids"):
    InstancesTask(category_ids=(0, 1))
  with pytest.raises(ValueError, match="draw_threshold"):
    InstancesTask(info=info, draw_threshold=2.0)
  with pytest.raises(ValueError, match=r"config.tasks.instances.mask_paste: expected one of .*'exact'.*got 'bilinear'"):
    InstancesTask(info=info, mask_paste="bilinear")
  with pytest.raises(ValueError, match="instances"):
    tasks_lib.build_tasks({"instances": {"weight": 1.0}}, data.dataset_info("voc2012"))
  with pytest.raises(ValueError, match="mode='whole'"):
    InstancesTask(info=info).merge([{}, {}])
  with pytest.raises(ValueError, match=r"config.tasks.keypoints.keypoint_classes: expected class ids >= 1.*got \(0,\)"):
    KeypointsTask(info=info, keypoint_classes=(0,))
