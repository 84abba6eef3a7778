"""The panoptic task: semantic-FPN targets and loss, the PQ accumulator (against `pq_compute`), predictions,
drawing, the COCO writer and bad configs, on hand-made arrays (no model)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import data, tasks as tasks_lib, viz
from dense_jax.data import panoptic_format
from dense_jax.metrics import panoptic as pq_lib
from dense_jax.tasks.base import host_accumulator

# 6 classes: 0, 1, 2 stuff; 3, 4, 5 things. Head channels: 0, 1, 2 stuff, 3 "thing".
THINGS = (3, 4, 5)


def make_task(**kwargs):
  return tasks_lib.get_task("panoptic", num_classes=6, thing_classes=THINGS,
                            class_names=("bg", "sky", "grass", "disc", "square", "ring"), **kwargs)


def test_semantic_targets_map_things_to_one_channel_and_keep_ignore():
  task = make_task()
  labels = jnp.array([[[0, 1, 2], [3, 4, 5], [255, 2, 9]]])
  targets = task.semantic_targets({"semantic": labels})
  np.testing.assert_array_equal(targets[0], [[0, 1, 2], [3, 3, 3], [255, 2, 255]])
  padded = task.semantic_targets({"semantic": labels, "batch_mask": jnp.array([0])})
  assert np.all(np.asarray(padded) == 255)


def test_loss_is_cross_entropy_over_stuff_and_thing_channels():
  task = make_task()
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
  labels = rng.integers(0, 6, size=(2, 3, 4)).astype(np.int32)
  labels[0, 0, 0] = 255
  batch = {"semantic": jnp.asarray(labels), "batch_mask": jnp.array([1, 0])}
  loss, aux = task.loss({"panoptic_semantic": jnp.asarray(logits)}, batch)
  # float64 reference: channel of each label, the first example only (the second is padding).
  channel = np.where(labels >= 3, 3, labels)
  lg = logits[0].astype(np.float64)
  logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
  valid = labels[0] != 255
  expected = -np.take_along_axis(logp, channel[0][..., None], -1)[..., 0][valid].mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  accuracy = (logits[0].argmax(-1) == channel[0])[valid].mean()
  np.testing.assert_allclose(float(aux["panoptic/train_pixel_accuracy"]), accuracy, rtol=1e-6)


def _segments(classes):
  return {i: {"category_id": int(c)} for i, c in enumerate(classes) if i > 0}


def test_accumulator_equals_pq_compute_and_ignores_padding():
  task = make_task()
  # Image 0: stuff 0 (left), a disc (id 2) matched, a square predicted as a ring (FP + FN).
  gt0 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 3, 3, 0], [1, 3, 3, 0]])
  gt_cls0 = np.array([0, 0, 3, 4, 0])
  pr0 = np.array([[1, 1, 2, 2], [1, 1, 2, 0], [1, 3, 3, 0], [1, 3, 3, 1]])
  pr_cls0 = np.array([0, 0, 3, 5, 0])
  # Image 1: all sky, predicted all sky except one pixel of grass (a small FP).
  gt1 = np.ones((4, 4), int)
  gt_cls1 = np.array([0, 1, 0, 0, 0])
  pr1 = np.ones((4, 4), int)
  pr1[0, 0] = 2
  pr_cls1 = np.array([0, 1, 2, 0, 0])
  gt = np.stack([gt0, gt1, gt1])
  pred = np.stack([pr0, pr1, pr0])   # the third example is padding: it must not count
  semantic = np.stack([np.where(g > 0, c[g], 255) for g, c in ((gt0, gt_cls0), (gt1, gt_cls1), (gt1, gt_cls1))])
  batch = {"panoptic": jnp.asarray(gt), "segment_classes": jnp.asarray(np.stack([gt_cls0, gt_cls1, gt_cls1])),
           "semantic": jnp.asarray(semantic), "batch_mask": jnp.array([1, 1, 0])}
  pr_cls = np.stack([pr_cls0, pr_cls1, pr_cls0])
  # The semantic head: right everywhere (things -> channel 3, sky -> 1) except image 0's pixel (0, 0),
  # stuff 0 taken for sky; the padding example's logits say channel 2 everywhere and must not count.
  head = np.where(semantic >= 3, 3, np.where(semantic == 255, 0, semantic))
  head[0, 0, 0], head[2] = 1, 2
  outputs = {"panoptic": {"panoptic": jnp.asarray(pred), "segment_classes": jnp.asarray(pr_cls),
                          "segment_valid": jnp.asarray(np.arange(5)[None].repeat(3, 0) > 0)},
             "panoptic_semantic": jax.nn.one_hot(head, 4)}
  update = jax.jit(chex.assert_max_traces(lambda acc, out, b: task.update(acc, out, b), n=1))
  acc = host_accumulator(update(task.init(), outputs, batch))
  result = task.result(acc)
  expected = pq_lib.pq_compute([gt0, gt1], [_segments(gt_cls0), _segments(gt_cls1)], [pr0, pr1],
                               [_segments(pr_cls0), _segments(pr_cls1)],
                               {c: {"isthing": int(c in THINGS)} for c in range(6)})
  for key, part, metric in (("pq", "all", "pq"), ("sq", "all", "sq"), ("rq", "all", "rq"),
                            ("pq_things", "things", "pq"), ("pq_stuff", "stuff", "pq"),
                            ("rq_things", "things", "rq"), ("sq_stuff", "stuff", "sq")):
    assert result[key] == pytest.approx(expected[part][metric], abs=1e-6), key
  assert result["pq/disc"] == pytest.approx(expected["per_class"][3]["pq"], abs=1e-6)
  # Hand-computed: the ground-truth disc has 4 px, the predicted disc 3 px inside it -> IoU 3/4, one TP.
  assert result["pq/disc"] == pytest.approx(0.75)
  assert result["pq/square"] == 0.0 and result["pq/ring"] == 0.0
  # Semantic head, channels (stuff 0, sky, grass, thing): IoU 5/6, 16/17, absent, 8/8.
  assert result["semantic_miou"] == pytest.approx((5 / 6 + 16 / 17 + 1) / 3)
  # Accumulators add: two batches equal one (the second update keeps tracing count 1).
  twice = host_accumulator(update(update(task.init(), outputs, batch), outputs, batch))
  np.testing.assert_array_equal(twice["tp"], 2 * acc["tp"])


def test_predict_gives_ids_and_pixel_classes_and_the_writer_round_trips(tmp_path):
  task = make_task()
  ids = np.array([[[0, 1], [2, 2]]])
  out = {"panoptic": jnp.asarray(ids), "segment_classes": jnp.array([[0, 4, 1, 7]]),
         "segment_valid": jnp.array([[False, True, True, False]])}
  pred = np.asarray(task.predict(out))
  np.testing.assert_array_equal(pred[0, ..., 0], ids[0])
  np.testing.assert_array_equal(pred[0, ..., 1], [[0, 4], [1, 1]])
  assert task.segments(pred[0]) == {1: {"category_id": 4, "iscrowd": 0}, 2: {"category_id": 1, "iscrowd": 0}}
  with panoptic_format.PanopticWriter(tmp_path / "pred.json", categories=task.categories) as writer:
    task.write_coco(writer, 7, pred[0])
  back = panoptic_format.PanopticReader(tmp_path / "pred.json")[0]
  assert back["image_id"] == 7
  np.testing.assert_array_equal(back["ids"], ids[0])
  assert {i: s["category_id"] for i, s in back["segments"].items()} == {1: 4, 2: 1}


def test_draw_colours_segments_by_class_hue():
  task = make_task()
  ids = np.array([[0, 1, 1, 2], [0, 1, 1, 2]])
  classes = np.array([[0, 3, 3, 3], [0, 3, 3, 3]])
  pred = np.stack([ids, classes], -1)
  example = {"panoptic": ids, "segment_classes": np.array([0, 3, 3])}
  panels = task.draw(np.zeros((2, 4, 3)), pred, example)
  assert [t for t, _ in panels] == ["panoptic truth", "panoptic prediction"]
  picture = panels[1][1]
  assert picture.dtype == np.uint8 and picture.shape == (2, 4, 3)
  assert np.all(picture[:, 0] == 0)                       # void is black
  base = viz.palette(6)[3].astype(float)
  for colour in (picture[0, 2], picture[0, 3]):           # same hue: a multiple of the class colour
    ratio = colour / base
    assert np.ptp(ratio) < 0.05
  assert not np.array_equal(picture[0, 2], picture[0, 3])   # two segments of one class differ


@pytest.mark.parametrize("kwargs, match", [
    ({"thing_classes": ()}, r"config.tasks.panoptic.thing_classes: expected at least one id in \[0, 6\)"),
    ({"thing_classes": (3, 9)}, r"thing_classes: expected at least one id in \[0, 6\), got \(3, 9\)"),
    ({"instance_weight": -1.0}, r"config.tasks.panoptic.instance_weight: expected a number >= 0"),
])
def test_bad_arguments_name_the_setting(kwargs, match):
  args = {"num_classes": 6, "thing_classes": THINGS, **kwargs}
  with pytest.raises(ValueError, match=match):
    tasks_lib.get_task("panoptic", **args)


def test_dataset_defaults_and_output_checks():
  info = data.dataset_info("dense_shapes/small_64")
  task = tasks_lib.build_tasks({"panoptic": {}}, info)["panoptic"]
  assert task.thing_classes == info.thing_classes and task.stuff_classes == (0, 1, 2, 3)
  assert {"semantic", "panoptic", "segment_classes", "masks", "boxes"} <= set(task.batch_keys)
  fake = {"panoptic": {}, "panoptic_semantic": jax.ShapeDtypeStruct((1, 64, 64, 9), jnp.float32)}
  with pytest.raises(ValueError, match=r"expected 'panoptic_semantic' with 5 channels .* got 9"):
    task.check_outputs(fake)
  with pytest.raises(ValueError, match=r"does not output 'panoptic_semantic'"):
    task.check_outputs({"panoptic": {}})
  with pytest.raises(ValueError, match="test-time augmentation"):
    task.merge([{}, {}])


def test_write_pngs_hook_writes_the_splits_predictions_in_coco_format(tmp_path):
  task = make_task(write_pngs=True)
  ids = np.array([[[1, 1], [2, 0]], [[1, 2], [2, 2]], [[1, 1], [1, 1]]])
  outputs = {"panoptic": {"panoptic": jnp.asarray(ids), "segment_classes": jnp.array([[0, 4, 1]] * 3),
                          "segment_valid": jnp.array([[False, True, True]] * 3)},
             "panoptic_semantic": jnp.zeros((3, 2, 2, 4))}
  batch = {"panoptic": jnp.asarray(ids), "segment_classes": jnp.array([[0, 4, 1]] * 3),
           "semantic": jnp.zeros((3, 2, 2), jnp.int32), "batch_mask": jnp.array([1, 1, 0])}
  first = task.to_host(jax.jit(task.update)(task.init(), outputs, batch))
  second = task.to_host(task.update(task.init(), outputs, {**batch, "batch_mask": jnp.array([1, 0, 0])}))
  total = task.combine(task.combine(task.to_host(task.init()), first), second)
  assert len(total["pngs"]) == 3 and task.result(total)["pq"] == 1.0
  files = task.write_outputs(total, tmp_path, "validation_whole")
  reader = panoptic_format.PanopticReader(files["panoptic_json"])
  assert [reader[i]["image_id"] for i in range(3)] == [1, 2, 3]
  for i, expected in enumerate([ids[0], ids[1], ids[0]]):
    np.testing.assert_array_equal(reader[i]["ids"], expected)
  assert {k: s["category_id"] for k, s in reader[1]["segments"].items()} == {1: 4, 2: 1}
  assert reader.categories[3] == {"isthing": 1, "name": "disc"}
  assert make_task().write_outputs(total, tmp_path, "x") == {}
