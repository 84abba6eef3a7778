"""mask_targets against torchvision's project_masks_on_boxes (aligned=False, adaptive sampling), against
torchvision.ops.roi_align(aligned=True) (detectron2's crop_and_resize), and hand cases."""

import jax
import numpy as np
import pytest

from dense_jax.ops.mask_targets import mask_targets
from dense_jax.ops.roi_align import roi_align


def _masks_and_boxes(rng, g, h, w, r):
  masks = np.zeros((g, h, w), np.uint8)
  for i in range(g):
    y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
    masks[i, y0:y0 + rng.integers(3, h // 2), x0:x0 + rng.integers(3, w // 2)] = 1
    masks[i] |= (rng.uniform(size=(h, w)) < 0.05).astype(np.uint8)
  xy = rng.uniform(0, [w - 2, h - 2], (r, 2))
  wh = rng.uniform(1, [w, h], (r, 2))
  boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1).astype(np.float32)  # clipped to the image
  return masks, boxes, rng.integers(0, g, r).astype(np.int32)


@pytest.mark.torch
def test_equal_to_torchvision_project_masks_on_boxes():
  torch = pytest.importorskip("torch")
  roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
  rng = np.random.default_rng(0)
  masks, boxes, idx = _masks_and_boxes(rng, 4, 40, 52, 12)
  ref = roi_heads.project_masks_on_boxes(torch.from_numpy(masks), torch.from_numpy(boxes),
                                         torch.from_numpy(idx).long(), 7).numpy()
  out = mask_targets(masks, boxes, idx, 7)
  assert out.shape == (12, 7, 7) and out.dtype == np.float32
  np.testing.assert_allclose(out, ref, atol=1e-5)  # float32 rounding of the many-sample means


@pytest.mark.torch
def test_aligned_equals_torchvision_roi_align_aligned():
  torch = pytest.importorskip("torch")
  ops = pytest.importorskip("torchvision.ops")
  rng = np.random.default_rng(2)
  masks, boxes, idx = _masks_and_boxes(rng, 4, 40, 52, 12)
  rois = torch.cat([torch.from_numpy(idx).double()[:, None], torch.from_numpy(boxes).double()], 1)
  ref = ops.roi_align(torch.from_numpy(masks).double()[:, None], rois, 7, 1.0, -1, aligned=True)[:, 0].numpy()
  out = mask_targets(masks, boxes, idx, 7, aligned=True)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  # Box [2, 6)^2 over the mask's square 2:6: every sample inside it reads 1 (aligned: values at centres).
  square = np.zeros((1, 8, 8), np.uint8)
  square[0, 2:6, 2:6] = 1
  np.testing.assert_allclose(mask_targets(square, np.array([[2, 2, 6, 6]], np.float32), np.zeros(1, np.int32),
                                          2, aligned=True)[0], np.ones((2, 2)), atol=1e-6)


def test_hand_case_and_batched_jit():
  masks = np.zeros((1, 8, 8), np.uint8)
  masks[0, 2:6, 2:6] = 1
  boxes = np.array([[2, 2, 6, 6], [0, 0, 4, 4]], np.float32)
  out = np.asarray(mask_targets(masks, boxes, np.zeros(2, np.int32), 2))
  # aligned=False samples pixel (i, j)'s value at the point (i, j), not at its centre: box [2, 6)^2 has
  # samples 2.5, 3.5 | 4.5, 5.5 per axis, reading 1, 1 | 1, 0.5 -> bin means 1 | 0.75 per axis (separable).
  np.testing.assert_allclose(out[0], [[1.0, 0.75], [0.75, 0.5625]], atol=1e-6)
  # box [0, 4)^2: samples 0.5, 1.5 | 2.5, 3.5 read 0, 0.5 | 1, 1 -> 0.25 | 1 per axis.
  np.testing.assert_allclose(out[1], [[0.0625, 0.25], [0.25, 1.0]], atol=1e-6)
  rng = np.random.default_rng(1)
  m1, b1, i1 = _masks_and_boxes(rng, 3, 24, 24, 5)
  m2, b2, i2 = _masks_and_boxes(rng, 3, 24, 24, 5)
  batched = jax.jit(lambda m, b, i: mask_targets(m, b, i, 6))(np.stack([m1, m2]), np.stack([b1, b2]),
                                                              np.stack([i1, i2]))
  np.testing.assert_allclose(batched[1], mask_targets(m2, b2, i2, 6), atol=1e-6)
  fixed = mask_targets(m1, b1, i1, 6, sampling_ratio=2)
  assert fixed.shape == (5, 6, 6) and np.all((np.asarray(fixed) >= 0) & (np.asarray(fixed) <= 1))
  # the separable form equals RoIAlign's gather backend on the masks as a batch of 1-channel images
  via_gather = roi_align(m1[..., None].astype(np.float32), b1, 6, 1.0, 2, batch_indices=i1)[..., 0]
  np.testing.assert_allclose(fixed, via_gather, atol=1e-6)
  empty = mask_targets(np.zeros((0, 24, 24), np.uint8), b1, i1, 6)
  assert empty.shape == (5, 6, 6) and not np.any(np.asarray(empty))


def test_bad_input_raises():
  with pytest.raises(ValueError, match="boxes"):
    mask_targets(np.zeros((2, 8, 8)), np.zeros((3, 5)), np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="matched_idxs"):
    mask_targets(np.zeros((2, 8, 8)), np.zeros((3, 4)), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match="mask_size"):
    mask_targets(np.zeros((2, 8, 8)), np.zeros((3, 4)), np.zeros(3, np.int32), 0)
  with pytest.raises(ValueError, match="aligned"):
    mask_targets(np.zeros((2, 8, 8)), np.zeros((3, 4)), np.zeros(3, np.int32), aligned="yes")
