"""Panoptic merge: hand-made cases (overlap, low score, small stuff, all void), a plain NumPy loop in
detectron2's order on random inputs, one compilation under vmap, bad input."""

import chex
import jax
import numpy as np
import pytest

from dense_jax.ops import panoptic_merge as merge_module

# Jitted once per shape and threshold set (eager dispatch of the scan is slower than compiling it).
panoptic_merge = jax.jit(merge_module.panoptic_merge, static_argnames=(
    "score_threshold", "overlap_threshold", "stuff_area_fraction", "mask_threshold"))


def _loop_reference(masks, scores, classes, semantic, is_stuff, score_threshold, overlap_threshold,
                    stuff_area):
  """The merge written as the plain loop it is: (panoptic map, [(category, is_thing, instance index)])."""
  panoptic = np.zeros(semantic.shape, np.int64)
  segments = []
  for i in sorted(range(len(scores)), key=lambda j: (-scores[j], j)):
    if scores[i] < score_threshold:
      break
    mask = masks[i].astype(bool)
    area = mask.sum()
    if area == 0:
      continue
    if (mask & (panoptic > 0)).sum() / area > overlap_threshold:
      continue
    segments.append((int(classes[i]), True, i))
    panoptic[mask & (panoptic == 0)] = len(segments)
  for label in np.unique(semantic):
    if not (0 <= label < len(is_stuff)) or not is_stuff[label]:
      continue
    region = (semantic == label) & (panoptic == 0)
    if region.sum() == 0 or region.sum() < stuff_area:
      continue
    segments.append((int(label), False, -1))
    panoptic[region] = len(segments)
  return panoptic, segments


def _segments(out):
  """The merged output's segments as [(category, is_thing, instance index)] in id order."""
  valid = np.asarray(out["segment_valid"])
  ids = np.flatnonzero(valid)
  np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))   # consecutive ids
  return [(int(out["segment_classes"][i]), bool(out["segment_is_thing"][i]), int(out["segment_instance"][i]))
          for i in ids]


def _box_mask(h, w, y0, y1, x0, x1):
  m = np.zeros((h, w), bool)
  m[y0:y1, x0:x1] = True
  return m


IS_STUFF = np.array([False, True, True])   # label 0 = Panoptic FPN's "thing" label; 1, 2 stuff


def test_overlap_drops_or_claims_only_unclaimed_pixels():
  h, w = 4, 8
  masks = np.stack([_box_mask(h, w, 0, 4, 0, 4),     # 16 px, score 0.9 -> id 1
                    _box_mask(h, w, 0, 4, 2, 6),     # 16 px, 8 on id 1: 8/16 = 0.5, not > 0.5 -> id 2, 8 px
                    _box_mask(h, w, 0, 4, 3, 7),     # 16 px, 12 claimed: 0.75 > 0.5 -> dropped
                    _box_mask(h, w, 0, 1, 5, 8)])    # 3 px, 1 claimed (col 5) -> id 3, cols 6-7
  out = panoptic_merge(masks, np.array([0.9, 0.8, 0.7, 0.6]), np.array([3, 4, 5, 6]),
                       np.ones((h, w), np.int32), IS_STUFF, stuff_area_fraction=0.0)
  expected = np.zeros((h, w), np.int32)
  expected[:, 0:4], expected[:, 4:6], expected[0, 6:8] = 1, 2, 3
  expected[1:, 6:8] = 4                                   # the rest is stuff label 1 -> id 4
  np.testing.assert_array_equal(out["panoptic"], expected)
  assert _segments(out) == [(3, True, 0), (4, True, 1), (6, True, 3), (1, False, -1)]
  np.testing.assert_allclose(np.asarray(out["segment_scores"])[1:5], [0.9, 0.8, 0.6, 0.0])


def test_low_scores_stop_and_order_is_by_score():
  h, w = 2, 4
  masks = np.stack([_box_mask(h, w, 0, 2, 0, 2), _box_mask(h, w, 0, 2, 0, 4), _box_mask(h, w, 0, 2, 2, 4)])
  scores = np.array([0.5, 0.95, 0.49])   # exactly the threshold is kept; 0.49 is not
  out = panoptic_merge(masks, scores, np.array([7, 8, 9]), np.zeros((h, w), np.int32), IS_STUFF)
  # Instance 1 (0.95) takes the whole image first; instance 0 (0.5) then overlaps 100 % -> dropped.
  np.testing.assert_array_equal(out["panoptic"], np.ones((h, w)))
  assert _segments(out) == [(8, True, 1)]
  out = panoptic_merge(masks, scores, np.array([7, 8, 9]), np.zeros((h, w), np.int32), IS_STUFF,
                       score_threshold=0.96)
  np.testing.assert_array_equal(out["panoptic"], np.zeros((h, w)))      # nothing left: all void
  out = panoptic_merge(masks, scores, np.array([7, 8, 9]), np.zeros((h, w), np.int32), IS_STUFF,
                       valid=np.array([True, False, True]))              # a padding row is never kept
  assert _segments(out) == [(7, True, 0)]


def test_small_stuff_becomes_void():
  h, w = 4, 4   # 16 px; label 1 has 6 px, label 2 has 4 (2 of them under an instance), label 0 has 6
  semantic = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [0, 0, 2, 2], [0, 0, 0, 0]], np.int32)
  masks = _box_mask(h, w, 2, 4, 2, 4)[None]              # claims the bottom-right 2x2
  args = (masks, np.array([0.9]), np.array([5]), semantic, IS_STUFF)
  # Limit 2/16 -> 2 px: label 2 keeps its 2 unclaimed pixels (>= 2), label 1 its 6.
  out = panoptic_merge(*args, stuff_area_fraction=2 / 16)
  expected = np.array([[2, 2, 2, 3], [2, 2, 2, 3], [0, 0, 1, 1], [0, 0, 1, 1]])
  np.testing.assert_array_equal(out["panoptic"], expected)
  assert _segments(out) == [(5, True, 0), (1, False, -1), (2, False, -1)]
  # Limit 3 px: label 2's unclaimed 2 px are void (its claimed pixels do not count); label 1 stays.
  out = panoptic_merge(*args, stuff_area_fraction=3 / 16)
  np.testing.assert_array_equal(out["panoptic"], np.where(expected == 3, 0, expected))
  assert _segments(out) == [(5, True, 0), (1, False, -1)]


def test_all_void():
  h, w = 3, 5
  # No instance above the threshold and every pixel on the "thing" label or a too-small stuff region.
  semantic = np.zeros((h, w), np.int32)
  semantic[0, 0] = 1
  out = panoptic_merge(np.ones((2, h, w), bool), np.array([0.3, 0.1]), np.array([1, 2]), semantic,
                       IS_STUFF, stuff_area_fraction=2 / 15)
  np.testing.assert_array_equal(out["panoptic"], np.zeros((h, w)))
  assert not np.asarray(out["segment_valid"]).any()
  assert out["segment_classes"].shape == (1 + 2 + 3,)


def test_equals_the_numpy_loop_on_random_inputs_with_one_compilation():
  rng = np.random.default_rng(0)
  batch, n, h, w, k = 6, 7, 12, 16, 5
  is_stuff = np.array([False, True, True, False, True])
  boxes = rng.integers(0, [h, h, w, w], (batch, n, 4))
  yy, xx = np.mgrid[:h, :w]
  lo_y, hi_y = np.minimum(boxes[..., 0], boxes[..., 1]), np.maximum(boxes[..., 0], boxes[..., 1]) + 1
  lo_x, hi_x = np.minimum(boxes[..., 2], boxes[..., 3]), np.maximum(boxes[..., 2], boxes[..., 3]) + 1
  probs = ((yy >= lo_y[..., None, None]) & (yy < hi_y[..., None, None]) & (xx >= lo_x[..., None, None])
           & (xx < hi_x[..., None, None])) * rng.uniform(0.3, 1.0, (batch, n, h, w))  # float masks
  scores = np.round(rng.uniform(0.2, 1.0, (batch, n)), 1)      # rounded: ties in score occur
  classes = rng.integers(1, 9, (batch, n))
  semantic = np.kron(rng.integers(-1, k + 1, (batch, 3, 4)), np.ones((1, 4, 4), np.int64))  # some out of range
  kw = dict(score_threshold=0.5, overlap_threshold=0.4, stuff_area_fraction=10 / (h * w))
  merge = jax.jit(jax.vmap(chex.assert_max_traces(
      lambda m, s, c, sem: merge_module.panoptic_merge(m, s, c, sem, is_stuff, **kw), n=1)))
  out = jax.device_get(merge(probs, scores, classes, semantic.astype(np.int32)))
  kept = 0
  for b in range(batch):
    expected, segments = _loop_reference(probs[b] >= 0.5, scores[b], classes[b], semantic[b], is_stuff,
                                         0.5, 0.4, 10)
    np.testing.assert_array_equal(out["panoptic"][b], expected)
    assert _segments(jax.tree.map(lambda x, b=b: x[b], out)) == segments
    kept += len(segments)
  assert kept > 2 * batch   # the random cases keep segments of both kinds, not just void


@pytest.mark.parametrize("change, match", [
    (dict(semantic=np.zeros((3, 4), np.int32)), r"semantic: expected the masks' image shape \(2, 4\)"),
    (dict(scores=np.zeros((3,))), r"scores: expected shape \(2,\)"),
    (dict(masks=np.zeros((2, 4), bool)), r"masks: expected a rank-3"),
    (dict(semantic=np.zeros((2, 4), np.float32)), r"semantic: expected integer labels"),
    (dict(score_threshold=1.5), r"score_threshold: expected a number in \[0, 1\]"),
])
def test_bad_input(change, match):
  args = dict(masks=np.zeros((2, 2, 4), bool), scores=np.zeros((2,)), classes=np.zeros((2,), np.int32),
              semantic=np.zeros((2, 4), np.int32), is_stuff=IS_STUFF) | change
  with pytest.raises(ValueError, match=match):
    merge_module.panoptic_merge(**args)
