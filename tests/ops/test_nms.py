"""Padded NMS against torchvision.ops.nms / batched_nms (random boxes, score ties, empty input) and a
plain greedy float64 loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.ops.nms import batched_nms_padded, nms_padded


def _boxes(rng, n, size=64.0, max_wh=24.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(0.5, max_wh, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _greedy(boxes, scores, thr, classes=None):
  """Textbook greedy NMS in float64 with a stable descending sort."""
  b = boxes.astype(np.float64)
  order = np.argsort(-scores.astype(np.float64), kind="stable")
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  keep = []
  for i in order:
    ok = True
    for j in keep:
      if classes is not None and classes[i] != classes[j]:
        continue
      w = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
      h = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
      inter = w * h
      if inter / (area[i] + area[j] - inter) > thr:
        ok = False
        break
    if ok:
      keep.append(i)
  return np.array(keep, np.int64)


def _kept(indices, valid):
  return np.asarray(indices)[np.asarray(valid)]


@pytest.mark.torch
@pytest.mark.parametrize("n,thr,tile", [(300, 0.5, 64), (300, 0.7, 256), (1000, 0.3, 128), (37, 0.5, 16)])
def test_equal_to_torchvision_nms_with_ties(n, thr, tile):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(n)
  boxes = _boxes(rng, n)
  scores = rng.integers(0, 20, n).astype(np.float32) / 20  # many exact ties
  boxes[5] = boxes[3]  # identical boxes with identical scores
  scores[5] = scores[3]
  ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
  idx, valid = nms_padded(boxes, scores, thr, n, tile_size=tile)
  np.testing.assert_array_equal(_kept(idx, valid), ref)
  np.testing.assert_array_equal(ref, _greedy(boxes, scores, thr))
  assert np.all(np.asarray(idx)[~np.asarray(valid)] == 0)


@pytest.mark.torch
def test_threshold_ties_decided_as_torchvision():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  # IoU of [0,0,10,10] with [0,0,10,x1] is x1/10 (x1 <= 10) and 100/(10 x1) (x1 >= 10), exactly 0.3
  # / 0.5 / 0.7 in float32 for some of these.
  x1 = np.array([3, 5, 7, 10 / 0.7, 10 / 0.3, 20], np.float32)
  boxes = np.concatenate([[[0, 0, 10, 10]], np.stack([np.zeros(6), np.zeros(6), np.full(6, 10), x1], 1)])
  boxes = boxes.astype(np.float32)
  scores = np.linspace(1, 0.1, len(boxes)).astype(np.float32)
  for thr in (0.3, 0.5, 0.7):
    ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
    idx, valid = nms_padded(boxes, scores, thr, len(boxes))
    np.testing.assert_array_equal(_kept(idx, valid), ref, err_msg=f"threshold {thr}")


def test_empty_input_and_truncation_and_invalid():
  idx, valid = nms_padded(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 5)
  assert idx.shape == (5,) and not np.any(valid) and np.all(np.asarray(idx) == 0)
  rng = np.random.default_rng(1)
  boxes, scores = _boxes(rng, 200), rng.uniform(size=200).astype(np.float32)
  full = _greedy(boxes, scores, 0.5)
  idx, valid = nms_padded(boxes, scores, 0.5, 7, tile_size=32)
  np.testing.assert_array_equal(_kept(idx, valid), full[:7])
  mask = rng.uniform(size=200) > 0.4
  idx, valid = nms_padded(boxes, scores, 0.5, 200, valid=mask)
  sub = np.nonzero(mask)[0]
  np.testing.assert_array_equal(_kept(idx, valid), sub[_greedy(boxes[sub], scores[sub], 0.5)])
  none_valid = nms_padded(boxes, scores, 0.5, 9, valid=np.zeros(200, bool))[1]
  assert not np.any(none_valid)


@pytest.mark.torch
def test_batched_nms_equal_to_torchvision():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(3)
  for n in (400, 1500):  # torchvision: coordinate trick below 4000 coordinates, per-class loop above
    boxes = _boxes(rng, n)
    scores = rng.uniform(size=n).astype(np.float32)  # no ties across classes: torchvision's order is defined
    classes = rng.integers(0, 5, n).astype(np.int32)
    ref = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                      torch.from_numpy(classes).long(), 0.5).numpy()
    idx, valid = batched_nms_padded(boxes, scores, classes, 0.5, n, tile_size=128)
    np.testing.assert_array_equal(_kept(idx, valid), ref)
    np.testing.assert_array_equal(ref, _greedy(boxes, scores, 0.5, classes))


def test_per_image_vmap_jit_single_trace():
  rng = np.random.default_rng(4)
  boxes = np.stack([_boxes(rng, 120) for _ in range(3)])
  scores = rng.uniform(size=(3, 120)).astype(np.float32)
  valid = np.ones((3, 120), bool)
  valid[2, 60:] = False

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(b, s, v):
    return nms_padded(b, s, 0.6, 50, valid=v, tile_size=32)

  idx, ok = run(boxes, scores, valid)
  assert idx.shape == (3, 50) and ok.shape == (3, 50)
  for i in range(3):
    sub = np.nonzero(valid[i])[0]
    ref = sub[_greedy(boxes[i, sub], scores[i, sub], 0.6)][:50]
    np.testing.assert_array_equal(_kept(idx[i], ok[i]), ref)
  run(boxes + 1, scores, valid)  # same shapes: no retrace
  # inside a differentiated function: integer outputs, finite zero gradient through gathered scores
  g = jax.grad(lambda s: jnp.sum(jnp.where(nms_padded(boxes[0], s, 0.5, 10)[1],
                                           s[nms_padded(boxes[0], s, 0.5, 10)[0]], 0)))(scores[0])
  assert np.all(np.isfinite(g)) and np.isclose(np.sum(g), 10.0)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="scores"):
    nms_padded(np.zeros((3, 4)), np.zeros(4), 0.5, 2)
  with pytest.raises(ValueError, match="max_output"):
    nms_padded(np.zeros((3, 4)), np.zeros(3), 0.5, 0)
  with pytest.raises(ValueError, match="classes"):
    batched_nms_padded(np.zeros((3, 4)), np.zeros(3), np.zeros(2), 0.5, 2)
  with pytest.raises(ValueError, match="iou_threshold"):
    nms_padded(np.zeros((3, 4)), np.zeros(3), float("nan"), 2)
