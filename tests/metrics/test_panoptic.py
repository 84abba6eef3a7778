"""Panoptic quality: one hand-computed case per COCO rule, bad input, the jit form against the NumPy form,
and torchmetrics' PanopticQuality where its rules coincide with COCO's (no crowd, no predicted void)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.metrics import panoptic

CATS = {1: {"isthing": 1}, 2: {"isthing": 1}, 3: {"isthing": 0}, 4: {"isthing": 0}}


def _pq(gt, gt_segs, pred, pred_segs, cats=CATS):
  as_maps = lambda maps: [np.asarray(m, np.int32) for m in maps]
  return panoptic.pq_compute(as_maps(gt), gt_segs, as_maps(pred), pred_segs, cats)


def _seg(cat, crowd=0):
  return {"category_id": cat, "iscrowd": crowd}


def test_match_needs_iou_strictly_above_half():
  # gt 1 (cat 1) = columns 0-2; pred 5 (cat 1) = columns 1-3: |∩| = 2, ∪ = 3 + 3 - 2 = 4 -> IoU 0.5, no match.
  out = _pq([[[1, 1, 1, 2]]], [{1: _seg(1), 2: _seg(3)}], [[[0, 5, 5, 5]]], [{5: _seg(1)}])
  assert out["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}   # one FP and one FN
  assert out["all"]["n"] == 2 and out["all"]["pq"] == 0.0             # cat 3 (stuff) appears as a FN
  # One more column of gt 1: |∩| = 3, ∪ = 4 + 3 - 3 = 4 -> IoU 0.75 matches; cat 3 is a FN, cat 1 a TP.
  out = _pq([[[1, 1, 1, 1, 2]]], [{1: _seg(1), 2: _seg(3)}], [[[0, 5, 5, 5, 0]]], [{5: _seg(1)}])
  assert out["per_class"][1] == pytest.approx({"pq": 0.75, "sq": 0.75, "rq": 1.0})
  assert out["things"] == pytest.approx({"pq": 0.75, "sq": 0.75, "rq": 1.0, "n": 1})
  assert out["stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
  assert out["all"] == pytest.approx({"pq": 0.375, "sq": 0.375, "rq": 0.5, "n": 2})


def test_void_is_left_out_of_the_union():
  # gt 1 = columns 0-1, void after; pred 5 = columns 0-3: |∩| = 2, ∪ = 4 + 2 - 2 - 2 (pred on void) = 2 -> 1.0.
  # Counting the void pixels would give 2 / 4 = 0.5: no match.
  out = _pq([[[1, 1, 0, 0, 0]]], [{1: _seg(2)}], [[[5, 5, 5, 5, 0]]], [{5: _seg(2)}])
  assert out["per_class"][2] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
  # Ground-truth pixels predicted as void stay in the union (COCO; torchmetrics removes them):
  # gt 1 = 4 columns, pred 5 = 3 of them, the fourth predicted void: IoU 3 / 4.
  out = _pq([[[1, 1, 1, 1]]], [{1: _seg(2)}], [[[5, 5, 5, 0]]], [{5: _seg(2)}])
  assert out["per_class"][2]["sq"] == pytest.approx(0.75)


def test_crowd_is_never_matched_and_hides_predictions_of_its_category():
  gt, gt_segs = [[[1, 1, 1, 1, 2, 2, 2, 2]]], [{1: _seg(1, crowd=1), 2: _seg(2)}]
  # pred 5 equals the crowd region and has its category: not a TP (crowd), not a FP (all on own crowd).
  out = _pq(gt, gt_segs, [[[5, 5, 5, 5, 6, 6, 6, 6]]], [{5: _seg(1), 6: _seg(2)}])
  assert out["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
  assert out["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}   # only cat 2 appears; the crowd is no FN
  # The same pixels predicted as cat 2: the crowd of cat 1 does not excuse it -> a FP of cat 2.
  out = _pq(gt, gt_segs, [[[5, 5, 5, 5, 6, 6, 6, 6]]], [{5: _seg(2), 6: _seg(2)}])
  assert out["per_class"][2] == pytest.approx({"pq": 2 / 3, "sq": 1.0, "rq": 2 / 3})
  assert out["all"]["n"] == 1
  # A crowd segment of cat 2 is not matched even with a perfect cat-2 prediction (and iscrowd of a
  # prediction is ignored).
  out = _pq([[[1, 1, 2, 2]]], [{1: _seg(2, crowd=1), 2: _seg(3)}], [[[5, 5, 6, 6]]],
            [{5: _seg(2, crowd=1), 6: _seg(3)}])
  assert out["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0} and out["all"]["n"] == 1


def test_unmatched_prediction_mostly_on_void_or_own_crowd_is_not_a_false_positive():
  # pred 7 (cat 1): 3 of 4 pixels on void -> ignored; pred 8 (cat 3): |∩| 4, ∪ = 4 + 5 - 4 = 5 -> 0.8.
  gt, gt_segs = [[[0, 0, 0, 1, 1, 1, 1, 1]]], [{1: _seg(3)}]
  out = _pq(gt, gt_segs, [[[7, 7, 7, 7, 8, 8, 8, 8]]], [{7: _seg(1), 8: _seg(3)}])
  assert out["all"] == pytest.approx({"pq": 0.8, "sq": 0.8, "rq": 1.0, "n": 1})
  # Exactly half on void is still a FP: pred 7 = columns 1-4 (2 on void); pred 8 |∩| 3, ∪ 5 -> 0.6.
  out = _pq(gt, gt_segs, [[[0, 7, 7, 7, 7, 8, 8, 8]]], [{7: _seg(1), 8: _seg(3)}])
  assert out["things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}
  assert out["stuff"] == pytest.approx({"pq": 0.6, "sq": 0.6, "rq": 1.0, "n": 1})
  assert out["all"] == pytest.approx({"pq": 0.3, "sq": 0.3, "rq": 0.5, "n": 2})
  # Void and own-category crowd add up: pred 7 (cat 2) = 1 void + 2 crowd-of-cat-2 + 1 crowd-of-cat-1
  # pixels -> 3/4 ignored; with cat 1 it is 1 void + 1 own crowd = 2/4 -> a FP.
  gt, gt_segs = [[[0, 1, 1, 2, 3, 3]]], [{1: _seg(2, crowd=1), 2: _seg(1, crowd=1), 3: _seg(4)}]
  pred = [[[7, 7, 7, 7, 9, 9]]]
  out = _pq(gt, gt_segs, pred, [{7: _seg(2), 9: _seg(4)}])
  assert out["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
  out = _pq(gt, gt_segs, pred, [{7: _seg(1), 9: _seg(4)}])
  assert out["per_class"][1]["rq"] == 0.0 and out["all"]["n"] == 2


def test_sums_over_images_then_averages_over_categories_that_appear():
  gt_segs = [{1: _seg(1), 2: _seg(3)}, {1: _seg(1), 2: _seg(3)}]
  gt = [[[1, 1, 2, 2, 2]], [[1, 1, 2, 2, 2]]]
  # Image 0: cat 1 TP (IoU 1), cat 3 TP (IoU 2/3: pred 6 = columns 3-4, column 2 predicted void, ∪ 3).
  # Image 1: cat 1 missed (pred 5 is cat 2 -> FP of cat 2, FN of cat 1), cat 3 TP with IoU 1.
  pred = [[[5, 5, 0, 6, 6]], [[5, 5, 6, 6, 6]]]
  pred_segs = [{5: _seg(1), 6: _seg(3)}, {5: _seg(2), 6: _seg(3)}]
  out = _pq(gt, gt_segs, pred, pred_segs)
  # cat 1: TP 1 (IoU sum 1), FN 1 -> PQ 1 / 1.5 (not the mean of per-image PQs, 0.5).
  # cat 2: FP 1 -> 0. cat 3: TP 2, IoU sum 5/3 -> PQ = SQ = 5/6, RQ 1. cat 4 never appears.
  assert out["per_class"][1] == pytest.approx({"pq": 2 / 3, "sq": 1.0, "rq": 2 / 3})
  assert out["per_class"][3] == pytest.approx({"pq": 5 / 6, "sq": 5 / 6, "rq": 1.0})
  assert out["per_class"][4] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
  assert out["things"] == pytest.approx({"pq": 1 / 3, "sq": 0.5, "rq": 1 / 3, "n": 2})
  assert out["stuff"] == pytest.approx({"pq": 5 / 6, "sq": 5 / 6, "rq": 1.0, "n": 1})
  assert out["all"] == pytest.approx({"pq": (2 / 3 + 5 / 6) / 3, "sq": (1 + 5 / 6) / 3,
                                      "rq": (2 / 3 + 1) / 3, "n": 3})


def test_empty_and_listed_but_absent_segments():
  out = _pq([[[0, 0]]], [{3: _seg(1)}], [[[0, 0]]], [{4: _seg(2)}])   # listed, zero pixels: ignored
  assert out["all"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
  assert panoptic.pq_compute([], [], [], [], CATS)["all"]["n"] == 0


@pytest.mark.parametrize("case, match", [
    (dict(pred_segs=[{5: _seg(1)}, {}]), r"pred_ids\[1\].*segment id 9.*image 1"),
    (dict(gt_segs=[{1: _seg(1)}, {}]), r"gt_ids\[1\].*segment id 1.*image 1"),
    (dict(pred_segs=[{5: _seg(1)}, {9: _seg(42)}]), r"pred_segments\[1\]\[9\].*category_id 42.*image 1"),
    (dict(gt_segs=[{1: _seg(77)}, {1: _seg(1)}]), r"gt_segments\[0\]\[1\].*category_id 77.*image 0"),
    (dict(pred=[[[5, 5]], [[9, 9, 9]]]), r"pred_ids\[1\].*\(1, 2\).*image 1.*\(1, 3\)"),
    (dict(pred=[[[5, 5]]]), r"one entry per image"),
    (dict(gt_segs=[{0: _seg(1)}, {1: _seg(1)}]), r"gt_segments\[0\].*0 is void"),
    (dict(gt_segs=[{1: _seg(1, crowd=2)}, {1: _seg(1)}]), r"gt_segments\[0\]\[1\].*iscrowd"),
])
def test_bad_input_names_the_image_and_the_id(case, match):
  args = dict(gt=[[[1, 1]], [[1, 1]]], gt_segs=[{1: _seg(1)}, {1: _seg(1)}], pred=[[[5, 5]], [[9, 9]]],
              pred_segs=[{5: _seg(1)}, {9: _seg(1)}]) | case
  with pytest.raises(ValueError, match=match):
    _pq(args["gt"], args["gt_segs"], args["pred"], args["pred_segs"])


def test_bad_categories():
  with pytest.raises(ValueError, match="categories"):
    _pq([[[1]]], [{1: _seg(1)}], [[[1]]], [{1: _seg(1)}], cats={1: {"thing": 1}})


def _random_batch(rng, batch=3, size=16, max_things=5, crowd=True, pred_void=True):
  """Random images in both forms: id maps + segment dicts, and padded arrays (index = id).

  Ground truth: a 4x4 grid of 4x4-pixel cells, each cell void, one of the stuff categories (3, 4; one
  segment each) or one of a few thing segments (categories 1, 2, some crowd). Prediction: the ground
  truth's cells with some cells relabelled, then 15 % of pixels re-drawn, so IoUs spread around 0.5.
  """
  s = 1 + 2 + max_things
  gt_ids, pred_ids = np.zeros((batch, size, size), np.int32), np.zeros((batch, size, size), np.int32)
  gt_cls, pred_cls = np.zeros((batch, s), np.int32), np.zeros((batch, s), np.int32)
  gt_crowd = np.zeros((batch, s), bool)
  for b in range(batch):
    gt_cls[b, 1:3] = (3, 4)
    gt_cls[b, 3:] = rng.integers(1, 3, max_things)
    gt_crowd[b, 3:] = crowd & (rng.random(max_things) < 0.25)
    pred_cls[b] = gt_cls[b]
    pred_cls[b, 3:] = np.where(rng.random(max_things) < 0.2, 3 - gt_cls[b, 3:], gt_cls[b, 3:])
    cells = rng.integers(0, s, (4, 4))
    cells[rng.random((4, 4)) < 0.15] = 0
    pred_cells = np.where(rng.random((4, 4)) < 0.3, rng.integers(0 if pred_void else 1, s, (4, 4)), cells)
    if not pred_void:
      pred_cells = np.where(pred_cells == 0, 1, pred_cells)
    gt_ids[b] = np.kron(cells, np.ones((4, 4), np.int32))
    pred = np.kron(pred_cells, np.ones((4, 4), np.int32))
    noise = rng.random((size, size)) < 0.15
    pred[noise] = rng.integers(0 if pred_void else 1, s, noise.sum())
    pred_ids[b] = pred
  # Dict form with scattered ids (pred ids shifted by 100) to show ids need not be small or contiguous.
  gt_segs = [{i: _seg(int(gt_cls[b, i]), int(gt_crowd[b, i])) for i in range(1, s)} for b in range(batch)]
  pred_segs = [{100 + i: _seg(int(pred_cls[b, i])) for i in range(1, s)} for b in range(batch)]
  pred_shifted = np.where(pred_ids > 0, pred_ids + 100, 0)
  return (gt_ids, gt_cls, gt_crowd, pred_ids, pred_cls), (list(gt_ids), gt_segs, list(pred_shifted), pred_segs)


def test_jit_stats_equal_pq_compute_and_accumulate_over_batches():
  rng = np.random.default_rng(0)
  stats_fn = jax.jit(chex.assert_max_traces(panoptic.pq_stats, n=1), static_argnames="num_classes")
  total, all_dicts = None, ([], [], [], [])
  for _ in range(3):
    (gt, gt_cls, crowd, pred, pred_cls), dicts = _random_batch(rng)
    stats = stats_fn(jnp.asarray(gt), jnp.asarray(gt_cls), jnp.asarray(pred), jnp.asarray(pred_cls),
                     num_classes=5, gt_is_crowd=jnp.asarray(crowd))
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    for acc, part in zip(all_dicts, dicts):
      acc.extend(part)
  expected = panoptic.pq_compute(*all_dicts, CATS)
  got = panoptic.pq_from_stats(jax.device_get(total), CATS)
  assert expected["all"]["n"] == 4 and 0.05 < expected["all"]["pq"] < 0.95   # the cases are not trivial
  for group in ("all", "things", "stuff"):
    assert got[group] == pytest.approx(expected[group], rel=1e-6)
  for cat in CATS:
    assert got["per_class"][cat] == pytest.approx(expected["per_class"][cat], rel=1e-6)


def test_stats_take_out_of_range_ids_as_void():
  gt = jnp.array([[[1, 1, 0, 0]]])
  classes = jnp.array([[0, 2]])
  # pred id 7 (no such slot) is void: pred 1 has 2 px on gt 1 and 1 px on void -> IoU 2 / (3 + 2 - 2 - 1) = 1.
  stats = jax.jit(panoptic.pq_stats, static_argnums=4)(gt, classes, jnp.array([[[1, 1, 1, 7]]]), classes, 3)
  assert int(stats["tp"][2]) == 1 and float(stats["iou"][2]) == 1.0 and int(stats["fp"].sum()) == 0


def test_stats_check_shapes_before_tracing():
  x = jnp.zeros((1, 4, 4), jnp.int32)
  with pytest.raises(ValueError, match="pred_ids: expected the shape of gt_ids"):
    panoptic.pq_stats(x, jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 4, 5), jnp.int32),
                      jnp.zeros((1, 3), jnp.int32), 4)
  with pytest.raises(ValueError, match="gt_is_crowd"):
    panoptic.pq_stats(x, jnp.zeros((1, 3), jnp.int32), x, jnp.zeros((1, 3), jnp.int32), 4,
                      gt_is_crowd=jnp.zeros((1, 4), bool))


@pytest.mark.torch
def test_matches_torchmetrics_without_crowd_and_predicted_void():
  """torchmetrics' PanopticQuality knows no crowd, removes ground-truth pixels predicted as void from the
  union and drops a FN that is mostly predicted void; with no crowd and no predicted void those rules
  do not fire and it must agree with COCO's."""
  torch = pytest.importorskip("torch")
  tm = pytest.importorskip("torchmetrics.detection")
  rng = np.random.default_rng(1)
  (gt, gt_cls, _, pred, pred_cls), dicts = _random_batch(rng, batch=4, crowd=False, pred_void=False)
  metric = tm.PanopticQuality(things={1, 2}, stuffs={3, 4}, return_sq_and_rq=True, return_per_class=True)

  def colours(ids, classes):  # (category, instance id) per pixel; 99 (unknown) = void; stuff instance 0
    cat = np.take_along_axis(classes, ids.reshape(len(ids), -1), 1).reshape(ids.shape)
    cat = np.where(ids == 0, 99, cat)
    return torch.as_tensor(np.stack([cat, np.where(cat <= 2, ids, 0)], -1))

  metric.update(colours(pred, pred_cls), colours(gt, gt_cls))
  theirs = metric.compute().numpy()   # (K, 3): per class pq, sq, rq; classes things first, sorted
  ours = panoptic.pq_compute(*dicts, CATS)
  assert ours["all"]["n"] == 4 and 0.05 < ours["all"]["pq"] < 0.95
  for row, cat in enumerate((1, 2, 3, 4)):
    np.testing.assert_allclose(theirs[row], [ours["per_class"][cat][k] for k in ("pq", "sq", "rq")],
                               rtol=1e-6)
  np.testing.assert_allclose(theirs.mean(0), [ours["all"][k] for k in ("pq", "sq", "rq")], rtol=1e-6)


def test_merging_a_dense_shapes_scene_from_its_own_labels_scores_one():
  """The chain data -> merge -> metric agrees on layouts: the ground truth's own instances (score 0.9)
  and semantic labels merge into a segmentation with PQ 1; dropping an instance costs exactly one FN."""
  from dense_jax.data.dense_shapes import config as shapes_config, scene
  from dense_jax.ops.panoptic_merge import panoptic_merge
  cfg = shapes_config.CONFIGS["small_64"]
  examples = [scene.generate_example(seed, cfg) for seed in range(2)]
  stack = lambda key: jnp.asarray(np.stack([ex[key] for ex in examples]))
  num_classes = cfg.classes.num_classes
  is_stuff = np.arange(num_classes) < len(cfg.classes.stuff)
  valid = np.arange(cfg.max_instances)[None] < np.stack([ex["num_instances"] for ex in examples])[:, None]
  cats = {c: {"isthing": int(not is_stuff[c])} for c in range(num_classes)}

  @jax.jit
  def merge_and_score(valid):
    merged = jax.vmap(lambda m, c, s, v: panoptic_merge(m, jnp.full(m.shape[:1], 0.9), c, s, is_stuff, valid=v,
                                                        stuff_area_fraction=0.0))(
        stack("masks"), stack("classes"), stack("semantic"), valid)
    return merged, panoptic.pq_stats(stack("panoptic"), stack("segment_classes"), merged["panoptic"],
                                     merged["segment_classes"], num_classes)

  merged, stats = merge_and_score(jnp.asarray(valid))
  out = panoptic.pq_from_stats(jax.device_get(stats), cats)
  assert out["all"]["pq"] == 1.0 and out["things"]["n"] >= 2 and out["stuff"]["n"] >= 2
  valid[0, 0] = False   # drop the first instance of image 0: its pixels become void (not stuff)
  merged, stats = merge_and_score(jnp.asarray(valid))
  lost = int(examples[0]["classes"][0])
  assert int(stats["fn"][lost]) == 1 and int(stats["fn"].sum()) == 1 and int(stats["fp"].sum()) == 0
