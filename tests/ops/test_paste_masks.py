"""`dense_jax.ops.paste_masks`: 'exact' against grid_sample with align_corners=False (detectron2's paste),
'torchvision' against its paste_masks_in_image, the exact paste inverting the aligned mask-target crop,
and a bad mode named."""

import numpy as np
import pytest

from dense_jax.ops.paste_masks import expand_boxes, paste_masks


@pytest.mark.torch
def test_paste_masks_equals_torchvision():
  torch = pytest.importorskip("torch")
  roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
  rng = np.random.default_rng(1)
  n, im_h, im_w = 64, 40, 56
  masks = rng.random((n, 28, 28), dtype=np.float32)
  xy = rng.uniform(-15, 30, (n, 2))
  wh = rng.uniform(0.2, 50, (n, 2))
  wh[:4] = [[0.2, 0.3], [1.0, 1.0], [3.5, 2.0], [80, 70]]   # tiny, unit, small, larger than the image
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  ours = paste_masks(masks, boxes, (im_h, im_w), mode="torchvision")
  # Boxes wholly above or left of the image (integer corners, inclusive): torchvision raises there (an
  # empty slice assigned a non-empty one).
  corners = np.trunc(expand_boxes(boxes, 30 / 28))
  outside = (corners[:, 2] < 0) | (corners[:, 3] < 0)
  assert outside.sum() == 2 and not ours[outside].any()
  ref = roi_heads.paste_masks_in_image(torch.from_numpy(masks[~outside])[:, None],
                                       torch.from_numpy(boxes[~outside]), (im_h, im_w))[:, 0].numpy()
  np.testing.assert_allclose(ours[~outside], ref, atol=2e-6)
  assert np.array_equal(ours[~outside] > 0.5, ref > 0.5)


@pytest.mark.torch
def test_exact_paste_equals_grid_sample_align_corners_false():
  """detectron2's paste: pixel centres mapped into the box, bilinear grid_sample of the map (zeros outside)."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(4)
  n, im_h, im_w, m = 40, 36, 50, 28
  masks = rng.random((n, m, m), dtype=np.float32)
  xy = rng.uniform(-10, 40, (n, 2))
  wh = rng.uniform(0.5, 45, (n, 2))
  wh[:3] = [[0.5, 0.7], [3.0, 2.0], [90, 80]]   # sub-pixel, small, larger than the image
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  ours = paste_masks(masks, boxes, (im_h, im_w))
  # Normalised grid coordinates of every pixel centre in each box: -1 / +1 are the box's edges.
  b = torch.from_numpy(boxes.astype(np.float64))
  gx = (torch.arange(im_w, dtype=torch.float64)[None] + 0.5 - b[:, :1]) / (b[:, 2:3] - b[:, :1]) * 2 - 1
  gy = (torch.arange(im_h, dtype=torch.float64)[None] + 0.5 - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]) * 2 - 1
  grid = torch.stack([gx[:, None, :].expand(n, im_h, im_w), gy[:, :, None].expand(n, im_h, im_w)], -1)
  ref = torch.nn.functional.grid_sample(torch.from_numpy(masks[:, None]).double(), grid, mode="bilinear",
                                        padding_mode="zeros", align_corners=False)[:, 0].numpy()
  np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_exact_paste_inverts_the_aligned_mask_target_crop():
  """A ground-truth mask cropped to its own box (aligned=True, 28x28) and pasted back is the mask again,
  for small and large objects alike; torchvision's pair (aligned=False crop, integer-corner paste) is not."""
  from dense_jax.ops.mask_targets import mask_targets  # pylint: disable=g-import-not-at-top
  masks = np.zeros((3, 64, 64), np.uint8)
  boxes = np.array([[5, 7, 11, 14], [20, 3, 61, 40], [30, 45, 39, 52]], np.float32)   # xyxy, 6x7 .. 41x37 px
  for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
    masks[i, y0:y1, x0:x1] = 1
  idx = np.arange(3, dtype=np.int32)
  exact = paste_masks(np.asarray(mask_targets(masks, boxes, idx, 28, aligned=True)), boxes, (64, 64)) > 0.5
  assert np.array_equal(exact, masks.astype(bool))
  tv = paste_masks(np.asarray(mask_targets(masks, boxes, idx, 28, aligned=False)), boxes, (64, 64),
                   mode="torchvision") > 0.5
  assert not np.array_equal(tv[0], masks[0].astype(bool))   # the 6x7 px object loses or gains pixels


def test_bad_mode_is_named():
  with pytest.raises(ValueError, match="mode"):
    paste_masks(np.ones((1, 28, 28)), np.array([[0, 0, 4, 4]]), (8, 8), mode="nearest")
