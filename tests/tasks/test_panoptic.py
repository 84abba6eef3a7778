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


def _write_pngs_inputs(ids, classes, valid, mask, **extra):
  """Model outputs and a batch for the `write_pngs` path: `ids (B, H, W)`, per-id `classes` and `valid`
  `(B, S)`, `batch_mask (B,)`; `extra` batch keys (image_id, original_size) as given."""
  b, h, w = ids.shape
  outputs = {"panoptic": {"panoptic": jnp.asarray(ids), "segment_classes": jnp.asarray(classes),
                          "segment_valid": jnp.asarray(valid)}, "panoptic_semantic": jnp.zeros((b, h, w, 4))}
  batch = {"panoptic": jnp.asarray(ids), "segment_classes": jnp.asarray(classes),
           "semantic": jnp.zeros((b, h, w), jnp.int32), "batch_mask": jnp.asarray(mask),
           **{k: jnp.asarray(v) for k, v in extra.items()}}
  return outputs, batch


def _written_digest(files) -> str:
  """sha256 of the JSON's bytes and of each PNG's name, mode, size and decoded pixels (the pixels rather
  than the PNG bytes, so a zlib / Pillow update that re-compresses the same image does not change it)."""
  import hashlib
  import pathlib

  from PIL import Image
  digest = hashlib.sha256(pathlib.Path(files["panoptic_json"]).read_bytes())
  for path in sorted(pathlib.Path(files["panoptic_pngs"]).iterdir()):
    with Image.open(path) as im:
      digest.update(f"{path.name} {im.mode} {im.size}".encode())
      digest.update(np.asarray(im).tobytes())
  return digest.hexdigest()


def test_write_pngs_without_original_size_is_unchanged(tmp_path):
  """dense_shapes' batches (no image_id, no original_size): the files as before the original-size
  mapping, pinned by a digest computed with that earlier code (images numbered 1, 2, evaluated size)."""
  task = make_task(write_pngs=True)
  rng = np.random.default_rng(3)
  ids = rng.integers(0, 4, size=(3, 6, 8)).astype(np.int32)
  ids[1][ids[1] == 3] = 0
  classes = np.array([[0, 3, 1, 4], [0, 5, 2, 0], [0, 1, 1, 1]], np.int32)
  valid = np.array([[0, 1, 1, 1], [0, 1, 1, 0], [0, 1, 1, 1]], bool)
  outputs, batch = _write_pngs_inputs(ids, classes, valid, [1, 1, 0])
  files = task.write_outputs(task.to_host(task.update(task.init(), outputs, batch)), tmp_path, "golden")
  assert _written_digest(files) == "78c1505b2750ac91a74c9f11661d51d704d4bb3529a11dabbad0d471b1ab7e90"
  reader = panoptic_format.PanopticReader(files["panoptic_json"])
  assert [(reader[i]["image_id"], reader[i]["file_name"]) for i in range(2)] == \
      [(1, "000000000001.png"), (2, "000000000002.png")]
  np.testing.assert_array_equal(reader[0]["ids"], ids[0])


def test_write_pngs_maps_back_to_the_original_image_and_names_it_by_its_id(tmp_path):
  """An image of original (40, 60) evaluated at (80, 80): f = min(80 / 40, 80 / 60) = 4/3, resized content
  (53, 80), rows 53.. padding. Nearest back to (40, 60) with half-pixel centres: original row j reads
  content row floor((j + .5) 53 / 40), column i reads floor((i + .5) 4 / 3)."""
  task = make_task(write_pngs=True)
  pred = np.zeros((3, 80, 80), np.int32)
  pred[0, :53, :40] = 1       # sky, the content's left half
  pred[0, 10:30, 40:] = 2     # a disc, content rows 10..29 of the right half
  pred[0, 53:, :] = 3         # a square in the padding only: not in the image, not written
  pred[1, 5:9, 2:7] = 2       # image 2 is evaluated at its own size: written as it is
  pred[2] = 1                 # padding example
  classes = np.array([[0, 1, 3, 4]] * 3, np.int32)
  valid = np.array([[0, 1, 1, 1]] * 3, bool)
  outputs, batch = _write_pngs_inputs(pred, classes, valid, [1, 1, 0],
                                      image_id=np.array([139, 285, 0], np.int32),
                                      original_size=np.array([[40, 60], [80, 80], [0, 0]], np.int32))
  acc = task.to_host(jax.jit(task.update)(task.init(), outputs, batch))
  assert len(acc["pngs"]) == 2
  assert task.result(acc)["pq"] == 1.0   # PQ stays at the evaluated resolution (prediction = truth)
  files = task.write_outputs(task.combine(task.to_host(task.init()), acc), tmp_path, "val")
  reader = panoptic_format.PanopticReader(files["panoptic_json"])
  assert [(reader[i]["image_id"], reader[i]["file_name"]) for i in range(2)] == \
      [(139, "000000000139.png"), (285, "000000000285.png")]
  written = sorted(p.name for p in (tmp_path / "val_panoptic").iterdir())
  assert written == ["000000000139.png", "000000000285.png"]
  first = reader[0]
  # By hand: columns 0..29 read content columns < 40 (i + .5 < 30), 30..59 the rest. Rows: every row
  # reads content rows <= 52 (segment 1 everywhere on the left); content rows 10..29 are read by original
  # rows 8..22 (row 7 reads 9, row 8 reads 11, row 22 reads 29, row 23 reads 31).
  expected = np.zeros((40, 60), np.int32)
  expected[:, :30] = 1
  expected[8:23, 30:] = 2
  assert first["ids"].shape == (40, 60)
  np.testing.assert_array_equal(first["ids"], expected)
  assert first["segments"] == {
      1: {"id": 1, "category_id": 1, "iscrowd": 0, "area": 40 * 30, "bbox": [0, 0, 30, 40]},
      2: {"id": 2, "category_id": 3, "iscrowd": 0, "area": 15 * 30, "bbox": [30, 8, 30, 15]}}
  second = reader[1]
  np.testing.assert_array_equal(second["ids"], pred[1])
  assert second["segments"] == {2: {"id": 2, "category_id": 3, "iscrowd": 0, "area": 4 * 5,
                                    "bbox": [2, 5, 5, 4]}}
  # Repeated image ids would overwrite a file: the writer refuses them.
  twice = task.combine(acc, acc)
  with pytest.raises(ValueError, match="000000000139.png"):
    task.write_outputs(twice, tmp_path / "twice", "val")
  bad = {**batch, "original_size": jnp.array([[40, 60], [0, 80], [0, 0]], jnp.int32)}
  match = r"batch\['original_size'\]: expected sizes >= 1 .* got \[\[40, 60\], \[0, 80\]\]"
  with pytest.raises(ValueError, match=match):
    task.to_host(task.update(task.init(), outputs, bad))


def test_write_pngs_of_coco2017_use_cocos_category_ids(tmp_path):
  """coco2017's contiguous classes are written as COCO's sparse category ids (instances.coco_category_map);
  a segment of class 0 (no COCO category) is void. PERSON 1 -> 1, DOG 17 -> 18, SKY 120 -> 187."""
  from dense_jax.data.real import coco
  from dense_jax.tasks.instances import coco_category_map
  task = tasks_lib.get_task("panoptic", info=coco.INFO, write_pngs=True)
  assert task.category_map == coco_category_map(coco.INFO)
  person, dog, sky = coco.CONTIGUOUS[1], coco.CONTIGUOUS[18], coco.CONTIGUOUS[187]
  assert (person, dog, sky) == (1, 17, 120)
  ids = np.array([[[1, 1, 4], [2, 3, 3]]], np.int32)
  classes = np.array([[0, person, dog, sky, 0]], np.int32)
  valid = np.array([[0, 1, 1, 1, 1]], bool)
  outputs = {"panoptic": {"panoptic": jnp.asarray(ids), "segment_classes": jnp.asarray(classes),
                          "segment_valid": jnp.asarray(valid)},
             "panoptic_semantic": jnp.zeros((1, 2, 3, len(task.stuff_classes) + 1))}
  batch = {"panoptic": jnp.asarray(ids), "segment_classes": jnp.asarray(classes),
           "batch_mask": jnp.array([1]), "semantic": jnp.zeros((1, 2, 3), jnp.int32),
           "image_id": jnp.array([632]), "original_size": jnp.array([[2, 3]])}
  acc = task.to_host(task.update(task.init(), outputs, batch))
  files = task.write_outputs(acc, tmp_path, "val")
  back = panoptic_format.PanopticReader(files["panoptic_json"])
  np.testing.assert_array_equal(back[0]["ids"], [[1, 1, 0], [2, 3, 3]])   # class 0's segment 4 is void
  assert {i: s["category_id"] for i, s in back[0]["segments"].items()} == {1: 1, 2: 18, 3: 187}
  assert back.categories[187] == {"isthing": 0, "name": "sky-other-merged"} and 0 not in back.categories
  assert back.categories[18]["isthing"] == 1 and len(back.categories) == 133
