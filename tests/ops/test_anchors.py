"""FPN anchors against torchvision's AnchorGenerator (values and order) and hand-computed cases."""

import numpy as np
import pytest

from dense_jax.ops import anchors as A


def test_base_anchors_hand_values():
  base = A.base_anchors((32,), (0.5, 1.0, 2.0))
  # ratio 0.5: h = 32 sqrt(.5) = 22.63, w = 45.25 -> half sizes 11.3, 22.6 -> rounded 11, 23
  np.testing.assert_array_equal(base, [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])


@pytest.mark.torch
@pytest.mark.parametrize("image_size", [(64, 96), (100, 72), (800, 800)])
def test_equal_to_torchvision_anchor_generator(image_size):
  torch = pytest.importorskip("torch")
  anchor_utils = pytest.importorskip("torchvision.models.detection.anchor_utils")
  image_list = pytest.importorskip("torchvision.models.detection.image_list")
  gen = anchor_utils.AnchorGenerator(tuple((s,) for s in A.FPN_ANCHOR_SIZES), (A.FPN_ASPECT_RATIOS,) * 5)
  feature_sizes = A.fpn_feature_sizes(image_size)
  images = image_list.ImageList(torch.zeros(1, 3, *image_size), [image_size])
  feats = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
  ref = gen(images, feats)[0].numpy()
  ours = A.fpn_anchors(image_size)
  assert ours.dtype == np.float32 and ours.shape == ref.shape
  np.testing.assert_array_equal(ours, ref)
  counts = [len(a) for a in A.fpn_anchors_per_level(image_size)]
  assert counts == [h * w * 3 for h, w in feature_sizes]


def test_feature_sizes_and_odd_stride():
  assert A.fpn_feature_sizes((800, 1088)) == [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)]
  p6 = A.fpn_anchors_per_level((800, 800))[-1].reshape(13, 13, 3, 4)
  assert p6[1, 0, 1, 1] - p6[0, 0, 1, 1] == 61  # 800 // 13, torchvision's integer stride


def test_multiple_sizes_per_level_and_errors():
  per_level = A.fpn_anchors_per_level((32, 32), sizes=((8, 16),), aspect_ratios=(1.0,), feature_sizes=[(2, 2)])
  np.testing.assert_array_equal(per_level[0][:2], [[-4, -4, 4, 4], [-8, -8, 8, 8]])
  np.testing.assert_array_equal(per_level[0][2], [12, -4, 20, 4])  # second cell: x shifted by stride 16
  with pytest.raises(ValueError, match="feature_sizes"):
    A.fpn_anchors((64, 64), feature_sizes=[(16, 16)])
  with pytest.raises(ValueError, match="aspect_ratios"):
    A.base_anchors((32,), (0.0,))
  with pytest.raises(ValueError, match="image_size"):
    A.fpn_anchors((64, 0))
  # Anchors per location = the RPN head's output count (torchvision: num_anchors_per_location()[0]).
  assert A.anchors_per_location() == 3
  assert A.anchors_per_location(((10, 16), (20, 32), (40, 64)), (0.5, 1.0, 2.0)) == 6
  assert A.anchors_per_location((32, 64), ((1.0,), (1.0,))) == 1
  with pytest.raises(ValueError, match="same number of anchors per location"):
    A.anchors_per_location(((8, 16), (32,)), (1.0,))
