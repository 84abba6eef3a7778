"""The COCO 2017 loaders feed the full-size Mask R-CNN and Keypoint R-CNN and their tasks unchanged: batches
from small fake COCO files (tests/data/real's fixtures) go through the ordinary input pipeline into
`maskrcnn_resnet50_fpn` / `keypointrcnn_resnet50_fpn` (torchvision's defaults: 91 / 2 classes, 17
keypoints) and the `instances` / `keypoints` tasks' loss and evaluation update. Traced with
`jax.eval_shape` (shapes and dtypes: the full models' compute is the parity tests' job).

The results JSON of an evaluation over those files names the images by their COCO ids, and pycocotools
reads it against the fake annotation files themselves (perfect detections made from the ground truth
stand in for the model: the file's format and ids are under test, not a model)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data as data_lib, evaluation, tasks as tasks_lib
from dense_jax.metrics import coco as coco_metrics
from dense_jax.models.build import apply_model
from dense_jax.models.registry import get_model
from tests.data.real.conftest import Fakes
from tests.data.real.test_coco import COCO_IDS, H, W, _write
from tests.tasks.test_instances import ROI_MAP

SIZE = 64


def _batch(tmp_path, tasks):
  it = data_lib.create_iterator("coco2017_instances", "validation", global_batch_size=2, seed=0, train=False,
                                image_size=SIZE, data_dir=str(tmp_path), keys=tasks_lib.build.batch_keys(tasks),
                                process_index=0, process_count=1, num_threads=1)
  try:
    return next(iter(it))
  finally:
    it.close()


def _trace(model, task, batch):
  """Shapes of `task.loss` on the train outputs and of `task.update` on the eval outputs."""
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), batch["image"][:1], train=False))

  def train(variables, batch):
    outputs = apply_model(model, variables, batch["image"], train=True, batch=batch,
                          rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"])[0]
    return task.loss(outputs, batch)

  def evaluate(variables, batch):
    return task.update(task.init(), apply_model(model, variables, batch["image"], train=False), batch)
  return jax.eval_shape(train, variables, batch), jax.eval_shape(evaluate, variables, batch)


def test_full_size_maskrcnn_and_keypointrcnn_take_coco_batches(tmp_path):
  _write(tmp_path, Fakes)
  info = data_lib.dataset_info("coco2017_instances")
  instances = tasks_lib.build_tasks({"instances": {"weight": 1.0}}, info)
  batch = _batch(tmp_path, instances)
  assert batch["image"].shape == (2, SIZE, SIZE, 3) and batch["masks"].dtype == np.uint8
  (loss, aux), acc = _trace(get_model("maskrcnn_resnet50_fpn"), instances["instances"], batch)
  assert loss.shape == () and "instances/loss_mask" in aux
  assert acc["detections"]["masks"].shape == (2, 100, 28, 28) and acc["truth"]["masks"].dtype == jnp.uint8

  keypoints = tasks_lib.build_tasks({"keypoints": {"weight": 1.0}}, info)
  assert keypoints["keypoints"].oks_sigmas is None   # COCO's 17 sigmas, CocoAccumulator's default
  batch = _batch(tmp_path, keypoints)
  (loss, aux), acc = _trace(get_model("keypointrcnn_resnet50_fpn"), keypoints["keypoints"], batch)
  assert loss.shape == () and "keypoints/loss_keypoint" in aux
  assert acc["detections"]["keypoints"].shape == (2, 100, 17, 3)


def _perfect_outputs(task, batch):
  """Detections equal to the batch's ground truth (score 0.9): boxes xyxy, classes (keypoints: the
  persons, as class 1), RoI maps that paste to exactly the box (the fake masks are rectangles) and the
  true keypoints."""
  g = batch["boxes"].shape[1]
  valid = jnp.arange(g)[None, :] < batch["num_instances"][:, None]
  out = {"boxes": batch["boxes"][..., jnp.array([1, 0, 3, 2])], "labels": batch["classes"]}
  if task.name == "keypoints":
    valid = valid & (batch["classes"] == 1)   # COCO's person
    out.update(labels=jnp.where(valid, 1, 0), keypoints=batch["keypoints"])
  else:
    out["masks"] = jnp.broadcast_to(jnp.asarray(ROI_MAP), valid.shape + ROI_MAP.shape)
  return {**out, "valid": valid, "scores": jnp.where(valid, 0.9, 0.0)}


def _evaluate(tmp_path, task_name, image_size=(H, W)):
  """What `python -m dense_jax.evaluate` does after restoring the model, with `_perfect_outputs` for it:
  the task's batch keys through the pipeline (batch 2: the last batch is padded), `evaluation.run`, the
  task's result files; `image_size` the evaluated size. Returns (metrics, results rows)."""
  tasks = tasks_lib.build_tasks({task_name: {"weight": 1.0}}, data_lib.dataset_info("coco2017_instances"))
  task = tasks[task_name]
  it = data_lib.create_iterator("coco2017_instances", "validation", global_batch_size=2, seed=0, train=False,
                                image_size=image_size, data_dir=str(tmp_path), keys=tasks_lib.build.batch_keys(tasks),
                                process_index=0, process_count=1, num_threads=1)

  def eval_step(variables, batch):
    del variables
    return {task_name: task.update(task.init(), {task_name: _perfect_outputs(task, batch)}, batch)}, {}

  try:
    accs, examples = evaluation.run(jax.jit(eval_step), None, it, tasks,
                                    to_device=lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  finally:
    it.close()
  assert examples == 3
  files = task.write_outputs(accs[task_name], tmp_path / "eval", "validation_whole")
  return evaluation.results(tasks, accs), json.loads(open(files[f"{task_name}_results"]).read())


def _cocoeval(annotation_file, rows, iou_type) -> float:
  """AP of the results `rows` against the annotation file, by pycocotools alone (loadRes checks that
  every result's image id is one of the file's)."""
  gt = coco_metrics._quiet(COCO, str(annotation_file))
  ev = COCOeval(gt, coco_metrics._quiet(gt.loadRes, rows), iou_type)
  coco_metrics._quiet(ev.evaluate)
  coco_metrics._quiet(ev.accumulate)
  coco_metrics._quiet(ev.summarize)
  return float(ev.stats[0])


@pytest.mark.parametrize("task_name", ["instances", "keypoints"])
def test_results_json_names_images_by_their_coco_ids(tmp_path, task_name):
  _write(tmp_path, Fakes, ids=COCO_IDS)
  metrics, rows = _evaluate(tmp_path, task_name)
  annotations = tmp_path / "annotations"
  if task_name == "instances":
    # Image 139: the person (COCO category 1) and the dog (18); image 285: a person; 632 has nothing.
    assert sorted((r["image_id"], r["category_id"]) for r in rows) == [(139, 1), (139, 18), (285, 1)]
    # The file, read against the annotation file, scores what the evaluation scored: boxes exactly the
    # truth; masks as the 28x28 maps paste into these few-pixel boxes (exact or about a pixel larger,
    # by the paste mode: mask AP 1 or less, not this test's subject).
    assert metrics["box_ap"] == pytest.approx(1.0) and 0 < metrics["mask_ap"] <= 1
    for iou_type, key in (("bbox", "box_ap"), ("segm", "mask_ap")):
      assert _cocoeval(annotations / "instances_val2017.json", rows, iou_type) == pytest.approx(metrics[key])
  else:
    assert [(r["image_id"], r["category_id"]) for r in rows] == [(139, 1), (285, 1)]
    assert metrics["keypoint_ap"] == pytest.approx(1.0)
    assert _cocoeval(annotations / "person_keypoints_val2017.json", rows, "keypoints") == pytest.approx(1.0)


@pytest.mark.parametrize("task_name", ["instances", "keypoints"])
def test_results_json_is_in_the_original_pixels_when_evaluated_resized(tmp_path, task_name):
  """Evaluated at 32 x 32 (the 16 x 20 images resized by f = 1.6 to 26 x 32 and padded), the results JSON
  is still in the annotation files' pixels: perfect detections score box / keypoint AP 1 against them,
  with boxes equal to the file's and masks of the original size."""
  _write(tmp_path, Fakes, ids=COCO_IDS)
  annotations = tmp_path / "annotations"
  if task_name == "keypoints":
    # The fixture's keypoints reach x = 48, y = 49, outside the 16 x 20 image: the resize's crop zeroes
    # them (augment's rule), which no results file can undo. Here they lie inside the person's box.
    path = annotations / "person_keypoints_val2017.json"
    data = json.loads(path.read_text())
    k = np.arange(17)
    kps = np.stack([2.5 + k % 8, 3.5 + k % 10, k % 3], -1)
    data["annotations"][0]["keypoints"] = kps.ravel().tolist()
    path.write_text(json.dumps(data))
  metrics, rows = _evaluate(tmp_path, task_name, image_size=(32, 32))
  if task_name == "instances":
    truth = json.loads((annotations / "instances_val2017.json").read_text())["annotations"]
    bbox = {(a["image_id"], a["category_id"]): a["bbox"] for a in truth if not a["iscrowd"]}
    assert metrics["box_ap"] == pytest.approx(1.0)
    for r in rows:
      assert r["bbox"] == pytest.approx(bbox[r["image_id"], r["category_id"]], abs=1e-4)
      assert r["segmentation"]["size"] == [H, W]
    assert _cocoeval(annotations / "instances_val2017.json", rows, "bbox") == pytest.approx(1.0)
    assert _cocoeval(annotations / "instances_val2017.json", rows, "segm") > 0
  else:
    assert metrics["keypoint_ap"] == pytest.approx(1.0)
    (person,) = [r for r in rows if r["image_id"] == COCO_IDS[0]]
    got = np.reshape(person["keypoints"], (17, 3))
    labelled = kps[:, 2] > 0
    np.testing.assert_allclose(got[labelled, :2], kps[labelled, :2], atol=1e-4)
    assert _cocoeval(annotations / "person_keypoints_val2017.json", rows, "keypoints") == pytest.approx(1.0)
