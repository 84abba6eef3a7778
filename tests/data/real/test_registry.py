"""Every real dataset is reachable by name, with a consistent DatasetInfo and clear errors."""

import pytest

import dense_jax.data.real  # registers the real datasets
from dense_jax.data import sources

NAMES = ["voc2012", "voc2012_sbd", "cityscapes", "coco2017", "coco2017_instances", "nyu_depth_v2", "ade20k",
         "oxford_iiit_pet", "coco2017_panoptic", "cityscapes_panoptic"]
STANDARD_KEYS = {"image", "semantic", "depth", "normals", "masks", "boxes", "classes", "num_instances",
                 "keypoints", "panoptic", "segment_classes", "segment_is_thing", "image_id"}


@pytest.mark.parametrize("name", NAMES)
def test_info_is_consistent(name):
  info = sources.dataset_info(name)
  assert name in sources.available() and info.name == name
  assert info.num_classes == len(info.class_names) and info.ignore_label == 255
  assert "image" in info.keys and set(info.keys) <= STANDARD_KEYS
  assert all(0 <= c < info.num_classes for c in info.thing_classes)
  assert "$DENSE_JAX_DATA_DIR" in info.description
  assert ("keypoints" in info.keys) == (info.num_keypoints > 0)


@pytest.mark.parametrize("name", NAMES)
def test_missing_files_name_the_directory(name, tmp_path):
  with pytest.raises(dense_jax.data.real.MissingDataError, match=str(tmp_path)):
    sources.get_source(name, sources.dataset_info(name).splits[0], data_dir=str(tmp_path / "empty"))


def test_unknown_split():
  with pytest.raises(ValueError, match="split: expected one of"):
    sources.get_source("ade20k", "val")
