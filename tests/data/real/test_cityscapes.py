"""Cityscapes through the TFDS catalog builder: labelId -> trainId mapping, mocked and on fake zips."""

import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import sources
from dense_jax.data.real import cityscapes

# The official table, written out independently of the module: labelId -> trainId.
OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def _placeholder_zips(root):
  for name in cityscapes.ZIPS:
    (root / name).write_bytes(b"")  # only their presence is checked while TFDS is mocked


def test_label_ids_map_to_train_ids(tmp_path):
  _placeholder_zips(tmp_path)
  label = np.array([[7, 8, 26, 33, 0, 1], [6, 9, 14, 29, 30, 255]], np.uint8)[..., None]
  image = np.arange(2 * 6 * 3, dtype=np.uint8).reshape(2, 6, 3)
  fake = [{"image_id": "x", "image_left": image, "segmentation_label": label}]
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: fake):
    source = sources.get_source("cityscapes", "train", data_dir=str(tmp_path))
    example = source[0]
  np.testing.assert_array_equal(example["image"], image)
  assert example["semantic"].dtype == np.int32
  np.testing.assert_array_equal(example["semantic"],
                                [[0, 1, 13, 18, 255, 255], [255, 255, 255, 255, 255, 255]])


def test_mocked_catalog_examples(tmp_path):
  """Random examples shaped by the real catalog builder's features: our keys and dtypes come out."""
  _placeholder_zips(tmp_path)
  with tfds.testing.mock_data(num_examples=2):
    source = sources.get_source("cityscapes", "validation", data_dir=str(tmp_path))
    assert len(source) == 2
    # The mock's labels are random bytes; real labelIds are 0..33 (others are refused, see test_bad_input).
    source._data = [dict(source._data[i], segmentation_label=source._data[i]["segmentation_label"] % 34)
                    for i in range(2)]
    example = source[1]
    raw = source._data[1]["segmentation_label"][..., 0]
  assert example["image"].shape == (1024, 2048, 3) and example["image"].dtype == np.uint8
  assert example["semantic"].shape == (1024, 2048)
  expected = np.vectorize(lambda v: OFFICIAL.get(int(v), 255))(raw)
  np.testing.assert_array_equal(example["semantic"], expected)


def test_catalog_builder_on_fake_zips(tmp_path, fakes):
  """The unmocked catalog builder prepares from zips in the official layout, offline."""
  labels = {}
  for zip_name, top, suffix in [("leftImg8bit_trainvaltest.zip", "leftImg8bit", "leftImg8bit"),
                                ("gtFine_trainvaltest.zip", "gtFine", "gtFine_labelIds")]:
    with zipfile.ZipFile(tmp_path / zip_name, "w") as archive:
      for split, n in [("train", 2), ("val", 1), ("test", 1)]:
        for k in range(n):
          image_id = f"{split}city_{k:06d}_000019"
          stem = f"{top}/{split}/{split}city/{image_id}_{suffix}.png"
          if top == "leftImg8bit":
            array = fakes.image(4, 6, seed=k)
          else:
            array = labels[image_id] = np.array([[7, 24, 26, 0, 4, 32]] * 4, np.uint8) + k
          fakes.png(tmp_path / "stage" / stem, array)
          archive.write(tmp_path / "stage" / stem, stem)
  train = sources.get_source("cityscapes", "train", data_dir=str(tmp_path))
  assert len(train) == 2
  semantics = sorted(train[i]["semantic"][0].tolist() for i in range(2))
  assert semantics == [[0, 11, 13, 255, 255, 17], [1, 12, 14, 255, 255, 18]]  # ids +0 and +1
  assert len(sources.get_source("cityscapes", "validation", data_dir=str(tmp_path))) == 1


def test_missing_zip_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "leftImg8bit_trainvaltest.zip")):
    sources.get_source("cityscapes", "train", data_dir=str(tmp_path))


def test_info_and_table():
  info = sources.dataset_info("cityscapes")
  assert info.num_classes == len(info.class_names) == 19 and info.class_names[13] == "car"
  assert cityscapes.LABEL_TO_TRAIN_ID == OFFICIAL
  np.testing.assert_array_equal(cityscapes.to_train_ids(np.array([-1, 34, 1000, 7])), [255, 255, 255, 0])
