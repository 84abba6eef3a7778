"""Confusion-matrix figure: row normalisation by hand, a PNG of the right kind written, bad input."""

import numpy as np
import pytest
from PIL import Image

from dense_jax.metrics import plots


def test_normalize_rows_by_hand():
  c = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
  expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
  np.testing.assert_array_equal(plots.normalize_rows(c), expected)
  # the input is not modified and stays integer
  assert c.dtype.kind == "i" and c[0, 0] == 3


@pytest.mark.parametrize("annotate", [None, False])
def test_png_written(tmp_path, annotate):
  c = np.array([[50, 5, 0], [3, 40, 7], [0, 0, 0]])
  path = plots.plot_confusion_matrix(c, tmp_path / "sub" / "cm.png", class_names=["bg", "disc", "square"],
                                     title="test", annotate=annotate)
  assert path == tmp_path / "sub" / "cm.png"
  with Image.open(path) as im:
    assert im.format == "PNG"
    w, h = im.size
    assert w > 100 and h > 100
    pixels = np.asarray(im.convert("RGB"))
  assert pixels.std() > 10  # something was drawn, not a blank canvas


def test_figure_grows_with_classes(tmp_path):
  small = plots.plot_confusion_matrix(np.eye(2, dtype=int), tmp_path / "a.png")
  large = plots.plot_confusion_matrix(np.eye(30, dtype=int), tmp_path / "b.png")
  with Image.open(small) as a, Image.open(large) as b:
    assert b.size[0] > a.size[0] and b.size[1] > a.size[1]


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="confusion"):
    plots.normalize_rows(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="confusion"):
    plots.normalize_rows(np.array([[1, -1], [0, 1]]))
  with pytest.raises(ValueError, match="class_names"):
    plots.plot_confusion_matrix(np.eye(3, dtype=int), tmp_path / "c.png", class_names=["a", "b"])
