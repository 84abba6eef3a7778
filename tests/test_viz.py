"""dense_jax.viz on hand-made cases: palette, outlines, depth and normals colours, keypoints, centring; the
confusion-matrix figure (row normalisation by hand, a PNG of the right kind written, bad input)."""

import numpy as np
import pytest
from PIL import Image

from dense_jax import viz


def test_palette_is_fixed_and_ignore_is_black():
  p = viz.palette(12)
  assert p.shape == (256, 3) and p.dtype == np.uint8
  np.testing.assert_array_equal(p[1], [70, 130, 230])
  assert not p[255].any() and len({tuple(c) for c in p[:12]}) == 12
  np.testing.assert_array_equal(viz.palette(12), p)   # the same colours in every figure
  np.testing.assert_array_equal(viz.colour_labels(np.array([[1, 255]]), 12), p[[[1, 255]]])


def test_instance_outlines_of_a_square():
  masks = np.zeros((2, 6, 6), np.uint8)
  masks[0, 1:5, 1:5] = 1
  outline = viz.instance_outlines(masks, num_instances=1)
  want = np.zeros((6, 6), bool)
  want[1:5, 1:5] = True
  want[2:4, 2:4] = False
  np.testing.assert_array_equal(outline, want)


def test_depth_colours_black_where_invalid_and_monotone_in_log_depth():
  depth = np.array([[1.0, 2.0, 4.0, 0.0]])
  rgb = viz.depth_colours(depth, cmap="gray")
  assert not rgb[0, 3].any()
  np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
  np.testing.assert_array_equal(rgb[0, 2], [255, 255, 255])
  assert abs(int(rgb[0, 1, 0]) - 127) <= 1     # log 2 is halfway between log 1 and log 4


def test_normals_colours():
  n = np.array([[[1.0, 0, 0], [0, -1.0, 0], [0, 0, 0]]])   # right, up (y down), invalid
  rgb = viz.normals_colours(n)
  np.testing.assert_array_equal(rgb[0, 0], [255, 127, 127])
  np.testing.assert_array_equal(rgb[0, 1], [127, 255, 127])
  assert not rgb[0, 2].any()


def test_keypoints_cross_and_square():
  image = np.zeros((7, 7, 3), np.uint8)
  out = viz.draw_keypoints(image, np.array([[[1.5, 1.5, 2], [5.5, 5.5, 1], [3.5, 3.5, 0]]]))
  assert tuple(out[1, 1]) == (255, 255, 0) and tuple(out[0, 0]) == (255, 255, 0) and not out[0, 1].any()
  assert tuple(out[4, 5]) == (255, 0, 0) and not out[5, 5].any()   # a square outline: the centre empty
  assert not out[3, 3].any() and not image.any()


def test_place_centred_and_grid():
  small = np.full((2, 2, 3), 200, np.uint8)
  canvas = viz.place_centred(small, (4, 6))
  assert canvas.shape == (4, 6, 3) and canvas[1:3, 2:4].min() == 200 and canvas.sum() == 200 * 12
  g = viz.grid([[canvas, canvas], [canvas, canvas]])
  assert g.shape == (8, 12, 3)
  assert viz.to_uint8(np.array([0.0, 0.5, 2.0])).tolist() == [0, 127, 255]


def test_normalize_rows_by_hand():
  c = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
  expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
  np.testing.assert_array_equal(viz.normalize_rows(c), expected)
  # the input is not modified and stays integer
  assert c.dtype.kind == "i" and c[0, 0] == 3


@pytest.mark.parametrize("annotate", [None, False])
def test_png_written(tmp_path, annotate):
  c = np.array([[50, 5, 0], [3, 40, 7], [0, 0, 0]])
  path = viz.plot_confusion_matrix(c, tmp_path / "sub" / "cm.png", class_names=["bg", "disc", "square"],
                                     title="test", annotate=annotate)
  assert path == tmp_path / "sub" / "cm.png"
  with Image.open(path) as im:
    assert im.format == "PNG"
    w, h = im.size
    assert w > 100 and h > 100
    pixels = np.asarray(im.convert("RGB"))
  assert pixels.std() > 10  # something was drawn, not a blank canvas


def test_figure_grows_with_classes(tmp_path):
  small = viz.plot_confusion_matrix(np.eye(2, dtype=int), tmp_path / "a.png")
  large = viz.plot_confusion_matrix(np.eye(30, dtype=int), tmp_path / "b.png")
  with Image.open(small) as a, Image.open(large) as b:
    assert b.size[0] > a.size[0] and b.size[1] > a.size[1]


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="confusion"):
    viz.normalize_rows(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="confusion"):
    viz.normalize_rows(np.array([[1, -1], [0, 1]]))
  with pytest.raises(ValueError, match="class_names"):
    viz.plot_confusion_matrix(np.eye(3, dtype=int), tmp_path / "c.png", class_names=["a", "b"])
