"""Oxford-IIIT Pet from fake files in the official layout: trimap 1 -> pet, 2 -> background, 3 -> 255."""

import numpy as np
import pytest

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import sources


def _write(root, fakes):
  images = {}
  for k, name in enumerate(["Abyssinian_1", "beagle_12", "Bombay_3"]):
    images[name] = fakes.image(5 + k, 7, seed=k)
    fakes.jpeg(root / "images" / f"{name}.jpg", images[name])
    trimap = np.full((5 + k, 7), 2, np.uint8)
    trimap[1:4, 2:6] = 3
    trimap[2:3, 3:5] = 1
    fakes.png(root / "annotations" / "trimaps" / f"{name}.png", trimap)
  (root / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\nbeagle_12 13 2 1\n")
  (root / "annotations" / "test.txt").write_text("# comment line\nBombay_3 8 1 3\n")
  return images


def test_trimap_mapping_and_splits(tmp_path, fakes):
  images = _write(tmp_path, fakes)
  train = sources.get_source("oxford_iiit_pet", "train", data_dir=str(tmp_path))
  test = sources.get_source("oxford_iiit_pet", "test", data_dir=str(tmp_path))
  assert len(train) == 2 and len(test) == 1
  example = train[1]  # beagle_12, list order
  assert example["image"].shape == images["beagle_12"].shape
  assert np.abs(example["image"].astype(int) - images["beagle_12"]).mean() < 2.0
  expected = np.zeros((6, 7), np.int32)
  expected[1:4, 2:6] = 255
  expected[2:3, 3:5] = 1
  assert example["semantic"].dtype == np.int32
  np.testing.assert_array_equal(example["semantic"], expected)
  assert test[0]["image"].shape == (7, 7, 3)


def test_grey_image_is_converted_to_rgb(tmp_path, fakes):
  _write(tmp_path, fakes)
  fakes.jpeg(tmp_path / "images" / "Abyssinian_1.jpg", np.full((5, 7), 90, np.uint8))  # mode L
  image = sources.get_source("oxford_iiit_pet", "train", data_dir=str(tmp_path))[0]["image"]
  assert image.shape == (5, 7, 3) and np.abs(image.astype(int) - 90).max() <= 1


def test_missing_annotations_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "annotations" / "trainval.txt")):
    sources.get_source("oxford_iiit_pet", "train", data_dir=str(tmp_path))
