"""Boundary-band and object-size breakdowns of segmentation metrics, on hand-computed cases."""

import functools

import jax
import numpy as np
import pytest

from dense_jax.metrics import breakdown

IGN = breakdown.IGNORE_LABEL


def _split_map():
  """4×6: class 0 in columns 0-2, class 1 in columns 3-5 (a vertical boundary between 2 and 3)."""
  labels = np.zeros((1, 4, 6), np.int32)
  labels[:, :, 3:] = 1
  return labels


@pytest.mark.parametrize("radius, columns", [(0, []), (1, [2, 3]), (2, [1, 2, 3, 4]), (3, [0, 1, 2, 3, 4, 5])])
def test_band_of_a_straight_boundary(radius, columns):
  band = np.asarray(breakdown.boundary_band(_split_map(), radius))
  expected = np.zeros((1, 4, 6), bool)
  expected[:, :, columns] = True
  np.testing.assert_array_equal(band, expected)


def test_band_around_one_pixel_is_its_chebyshev_ball():
  labels = np.zeros((1, 7, 7), np.int32)
  labels[0, 3, 3] = 5
  band = np.asarray(breakdown.boundary_band(labels, 2))[0]
  expected = np.zeros((7, 7), bool)
  expected[1:6, 1:6] = True   # every pixel within distance 2 of (3, 3), the pixel itself included
  np.testing.assert_array_equal(band, expected)


def test_band_ignores_ignore_pixels_and_the_image_border():
  labels = np.zeros((2, 5, 5), np.int32)
  labels[0, 1:3, 1:3] = IGN          # a hole of ignore pixels is no boundary
  labels[1, 0, :] = 4                # a class-4 top row: the boundary is rows 0 and 1 for radius 1
  band = np.asarray(breakdown.boundary_band(labels, 1))
  assert not band[0].any()
  np.testing.assert_array_equal(band[1], np.repeat([[1], [1], [0], [0], [0]], 5, axis=1).astype(bool))


def test_object_area_map_uses_visible_area_and_skips_padding_slots():
  masks = np.zeros((1, 3, 4, 4), np.uint8)
  masks[0, 0, 0, :3] = 1             # instance 0: 3 pixels
  masks[0, 1, 2:, 1:] = 1            # instance 1: 2 x 3 = 6 pixels
  masks[0, 2, 1, :] = 1              # slot 2 is padding (num_instances = 2): must not count
  area = np.asarray(breakdown.object_area_map(masks, np.array([2])))[0]
  expected = np.array([[3, 3, 3, 0], [0, 0, 0, 0], [0, 6, 6, 6], [0, 6, 6, 6]])
  np.testing.assert_array_equal(area, expected)


def _scene():
  """6×6 scene: stuff class 0, a 1-pixel object (class 2) at (1, 1), a 3×3 object (class 3) at
  rows 2-4, cols 2-4 (area 9), one ignore pixel at (5, 0)."""
  labels = np.zeros((1, 6, 6), np.int32)
  masks = np.zeros((1, 2, 6, 6), np.uint8)
  labels[0, 1, 1] = 2
  masks[0, 0, 1, 1] = 1
  labels[0, 2:5, 2:5] = 3
  masks[0, 1, 2:5, 2:5] = 1
  labels[0, 5, 0] = IGN
  return labels, masks


def test_size_regions_and_their_confusions_by_hand():
  labels, masks = _scene()
  predictions = np.zeros((1, 6, 6), np.int32)
  predictions[0, 2:5, 2:5] = 3
  predictions[0, 2, 2] = 1           # one wrong pixel on the large object
  conf = breakdown.breakdown_confusions(labels, predictions, 4, band_radius=1, masks=masks,
                                        num_instances=np.array([2]), small_area=4)
  conf = {k: np.asarray(v) for k, v in conf.items()}
  # small region = the 1-pixel object, predicted background: one (2 -> 0) count.
  expected_small = np.zeros((4, 4), int)
  expected_small[2, 0] = 1
  np.testing.assert_array_equal(conf["small"], expected_small)
  expected_large = np.zeros((4, 4), int)
  expected_large[3, 3], expected_large[3, 1] = 8, 1
  np.testing.assert_array_equal(conf["large"], expected_large)
  # 'all' counts the 35 valid pixels; band + interior partition them.
  assert conf["all"].sum() == 35
  np.testing.assert_array_equal(conf["band"] + conf["interior"], conf["all"])
  metrics = breakdown.breakdown_metrics(conf)
  assert metrics["small/accuracy"] == 0.0
  assert metrics["small/miou"] == 0.0                 # only class 2 present, IoU 0
  assert metrics["large/accuracy"] == pytest.approx(8 / 9)
  assert metrics["large/miou"] == pytest.approx(8 / 9)  # class 3 only: 8 / (9 + 8 - 8)
  assert metrics["small/fraction"] == pytest.approx(1 / 35)
  assert metrics["large/fraction"] == pytest.approx(9 / 35)


def test_band_confusion_of_a_scene_by_hand():
  labels, masks = _scene()
  predictions = np.where(labels == IGN, 0, labels)   # perfect
  predictions[0, 0, 0] = 3                            # one wrong stuff pixel, next to the small object
  conf = breakdown.breakdown_confusions(labels, predictions, 4, band_radius=1)
  band = np.asarray(breakdown.boundary_band(labels, 1))[0]
  # (0, 0) neighbours (1, 1) (class 2): in the band, so its error is a band error.
  assert band[0, 0]
  assert np.asarray(conf["band"])[0, 3] == 1 and np.asarray(conf["interior"])[0, 3] == 0
  # Interior pixels: the 3×3 object's centre (3, 3) and stuff at distance >= 2 from any object.
  interior = (labels[0] != IGN) & ~band
  assert interior[3, 3] and not interior[2, 2]
  assert np.asarray(conf["interior"]).sum() == interior.sum()


def test_region_metrics_average_over_classes_present_in_the_region():
  conf = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]])   # class 0: 3 right, 1 called class 1
  m = breakdown.region_metrics(conf, total_pixels=8)
  assert m["miou"] == pytest.approx(3 / 4)            # class 1 never labelled: not averaged in
  assert m["accuracy"] == pytest.approx(3 / 4)
  assert m["fraction"] == pytest.approx(0.5)
  empty = breakdown.region_metrics(np.zeros((3, 3)))
  assert np.isnan(empty["miou"]) and np.isnan(empty["accuracy"])


def test_smaller_predictions_use_regions_of_the_full_map_cropped():
  labels, masks = _scene()
  predictions = labels[:, 1:5, 1:5].copy()            # a 4×4 centre prediction, all right
  conf = breakdown.breakdown_confusions(labels, predictions, 4, band_radius=1, masks=masks,
                                        num_instances=np.array([2]), small_area=4)
  # The 1-pixel object at (1, 1) is inside the crop (its (0, 0)) and keeps its area of 1.
  assert np.asarray(conf["small"])[2, 2] == 1
  assert np.asarray(conf["all"]).sum() == 16


def test_jit_matches_eager():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, (2, 8, 8)).astype(np.int32)
  predictions = rng.integers(0, 3, (2, 8, 8)).astype(np.int32)
  masks = (rng.random((2, 3, 8, 8)) < 0.2).astype(np.uint8)
  fn = functools.partial(breakdown.breakdown_confusions, num_classes=3, band_radius=2, small_area=5)
  eager = fn(labels, predictions, masks=masks, num_instances=np.array([3, 1]))
  jitted = jax.jit(fn)(labels, predictions, masks=masks, num_instances=np.array([3, 1]))
  for key in eager:
    np.testing.assert_array_equal(np.asarray(eager[key]), np.asarray(jitted[key]))


def test_bad_arguments_name_themselves():
  with pytest.raises(ValueError, match="radius"):
    breakdown.boundary_band(np.zeros((1, 3, 3), np.int32), -1)
  with pytest.raises(ValueError, match="small_area"):
    breakdown.region_masks(np.zeros((1, 3, 3), np.int32), band_radius=1, masks=np.zeros((1, 1, 3, 3)))
  with pytest.raises(ValueError, match="labels"):
    breakdown.boundary_band(np.zeros((3, 3), np.int32), 1)
