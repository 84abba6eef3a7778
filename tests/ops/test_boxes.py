"""Box ops against torchvision.ops / BoxCoder, float64 NumPy formulas and hand-computed cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.ops import boxes as B


def _random_boxes(rng, n, size=100.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(1, size / 2, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def test_layout_conversion_round_trip_and_order():
  yxyx = np.array([[1.0, 2.0, 3.0, 5.0]], np.float32)  # y0=1 x0=2 y1=3 x1=5
  xyxy = B.yxyx_to_xyxy(yxyx)
  np.testing.assert_array_equal(xyxy, [[2.0, 1.0, 5.0, 3.0]])
  np.testing.assert_array_equal(B.xyxy_to_yxyx(xyxy), yxyx)
  assert float(B.box_area(xyxy)[0]) == 6.0  # 3 wide, 2 high, half-open pixels


def test_iou_hand_cases():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
  b = jnp.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
  iou = np.asarray(B.box_iou(a, b))
  np.testing.assert_allclose(iou[0], [1 / 7, 1.0, 0.0, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(iou[1], [0.0, 0.0, 0.0, 0.0])  # empty vs empty: 0, not NaN
  g = jax.grad(lambda x: B.box_iou(x, b).sum())(a)
  assert np.all(np.isfinite(g))


@pytest.mark.torch
def test_iou_batched_and_vs_torchvision():
  torchvision = pytest.importorskip("torchvision")
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, 13), _random_boxes(rng, 7)
  ref = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
  np.testing.assert_allclose(B.box_iou(a, b), ref, rtol=1e-6, atol=1e-7)
  batched = B.box_iou(np.stack([a[:7], b]), np.stack([b, a[:7]]))
  assert batched.shape == (2, 7, 7)
  np.testing.assert_allclose(batched[0], ref[:7], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(B.box_area(a), torchvision.ops.box_area(torch.from_numpy(a)).numpy(), rtol=1e-6)


@pytest.mark.torch
def test_clip_to_image_static_and_per_image():
  torchvision = pytest.importorskip("torchvision")
  torch = pytest.importorskip("torch")
  boxes = np.array([[-5, -3, 20, 40], [3, 4, 8, 9], [50, 60, 70, 80]], np.float32)
  ref = torchvision.ops.clip_boxes_to_image(torch.from_numpy(boxes), (30, 55)).numpy()
  np.testing.assert_array_equal(B.clip_boxes_to_image(boxes, (30, 55)), ref)
  sizes = jnp.array([[30.0, 55.0], [100.0, 100.0]])
  out = jax.jit(B.clip_boxes_to_image)(np.stack([boxes, boxes]), sizes[:, None, :])
  np.testing.assert_array_equal(out[0], ref)
  np.testing.assert_array_equal(out[1], np.clip(boxes, 0, 100))


def test_large_boxes_mask():
  boxes = np.array([[0, 0, 1, 1], [0, 0, 0.5, 3], [2, 2, 5, 2.9]], np.float32)
  np.testing.assert_array_equal(B.large_boxes_mask(boxes, 1.0), [True, False, False])


@pytest.mark.torch
@pytest.mark.parametrize("weights", [B.RPN_BOX_WEIGHTS, B.ROI_BOX_WEIGHTS])
def test_encode_decode_vs_torchvision_and_float64(weights):
  torch = pytest.importorskip("torch")
  det_utils = pytest.importorskip("torchvision.models.detection._utils")
  rng = np.random.default_rng(1)
  gt, anchors = _random_boxes(rng, 50), _random_boxes(rng, 50)
  coder = det_utils.BoxCoder(weights)
  ref = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()
  deltas = B.encode_boxes(gt, anchors, weights)
  np.testing.assert_allclose(deltas, ref, rtol=1e-5, atol=1e-5)
  # float64 formula
  g, a = gt.astype(np.float64), anchors.astype(np.float64)
  aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
  gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
  f64 = np.stack([weights[0] * ((g[:, 0] + gw / 2) - (a[:, 0] + aw / 2)) / aw,
                  weights[1] * ((g[:, 1] + gh / 2) - (a[:, 1] + ah / 2)) / ah,
                  weights[2] * np.log(gw / aw), weights[3] * np.log(gh / ah)], 1)
  np.testing.assert_allclose(deltas, f64, rtol=1e-4, atol=1e-4)
  # decoding: torchvision, and the round trip
  big = np.concatenate([ref, np.full((3, 4), 20.0, np.float32)])  # huge dw, dh hit the clip
  anc = np.concatenate([anchors, anchors[:3]])
  ref_dec = coder.decode_single(torch.from_numpy(big), torch.from_numpy(anc)).numpy()
  np.testing.assert_allclose(B.decode_boxes(big, anc, weights), ref_dec, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(B.decode_boxes(deltas, anchors, weights), gt, rtol=1e-5, atol=1e-3)
  assert B.BBOX_XFORM_CLIP == math.log(1000.0 / 16)


def test_decode_per_class_broadcast_and_grad():
  rng = np.random.default_rng(2)
  anchors = _random_boxes(rng, 5)
  deltas = rng.normal(size=(5, 3, 4)).astype(np.float32)
  out = B.decode_boxes(deltas, anchors[:, None], B.ROI_BOX_WEIGHTS)
  assert out.shape == (5, 3, 4)
  np.testing.assert_allclose(out[:, 1], B.decode_boxes(deltas[:, 1], anchors, B.ROI_BOX_WEIGHTS), rtol=1e-6)
  # padding rows (zeros) stay finite through encoding and its gradient
  pad = np.zeros((2, 4), np.float32)
  g = jax.grad(lambda b: B.encode_boxes(b, pad).sum())(pad)
  assert np.all(np.isfinite(B.encode_boxes(pad, pad))) and np.all(np.isfinite(g))
  vm = jax.vmap(lambda d: B.decode_boxes(d, anchors))(deltas.transpose(1, 0, 2))
  np.testing.assert_allclose(vm[2], B.decode_boxes(deltas[:, 2], anchors), rtol=1e-6)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="boxes"):
    B.box_area(np.zeros((3, 5)))
  with pytest.raises(ValueError, match="weights"):
    B.encode_boxes(np.zeros((1, 4)), np.zeros((1, 4)), (1, 1, 1))
  with pytest.raises(ValueError, match="image_size"):
    B.clip_boxes_to_image(np.zeros((1, 4)), 5)
  with pytest.raises(ValueError, match="boxes1"):
    B.box_iou(np.zeros(4), np.zeros((2, 4)))
