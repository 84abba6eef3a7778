"""SceneParse150 from fake files in the ADEChallengeData2016 layout: 0 -> 255, k -> k - 1."""

import numpy as np
import pytest

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import sources


def _write(root, fakes, split_dir, stems):
  images = {}
  for k, stem in enumerate(stems):
    h, w = 6 + k, 9 + k
    images[stem] = fakes.image(h, w, seed=k)
    fakes.jpeg(root / "ADEChallengeData2016" / "images" / split_dir / f"{stem}.jpg", images[stem])
    label = np.zeros((h, w), np.uint8)
    label[1:, :3] = 1      # wall
    label[2:, 3:5] = 150   # flag
    label[0, -1] = 13      # person
    fakes.png(root / "ADEChallengeData2016" / "annotations" / split_dir / f"{stem}.png", label)
  return images


def test_train_and_validation(tmp_path, fakes):
  images = _write(tmp_path, fakes, "training", ["ADE_train_00000002", "ADE_train_00000001"])
  _write(tmp_path, fakes, "validation", ["ADE_val_00000001"])
  train = sources.get_source("ade20k", "train", data_dir=str(tmp_path))
  assert len(train) == 2 and len(sources.get_source("ade20k", "validation", data_dir=str(tmp_path))) == 1
  example = train[0]  # sorted: ADE_train_00000001
  assert example["image"].shape == images["ADE_train_00000001"].shape
  assert np.abs(example["image"].astype(int) - images["ADE_train_00000001"]).mean() < 2.0
  semantic = example["semantic"]
  assert semantic.dtype == np.int32 and semantic.shape == (7, 10)
  assert semantic[0, 0] == 255 and semantic[1, 0] == 0 and semantic[2, 3] == 149 and semantic[0, -1] == 12
  info = sources.dataset_info("ade20k")
  assert info.class_names[semantic[1, 0]] == "wall" and info.class_names[semantic[2, 3]] == "flag"
  assert info.class_names[semantic[0, -1]] == "person"


def test_info_has_150_distinct_classes():
  info = sources.dataset_info("ade20k")
  assert info.num_classes == len(info.class_names) == len(set(info.class_names)) == 150


def test_missing_folder_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "ADEChallengeData2016" / "images" / "training")):
    sources.get_source("ade20k", "train", data_dir=str(tmp_path))


def test_default_data_dir_from_environment(tmp_path, fakes, monkeypatch):
  _write(tmp_path / "ade20k", fakes, "validation", ["ADE_val_00000001"])
  monkeypatch.setenv("DENSE_JAX_DATA_DIR", str(tmp_path))
  assert len(sources.get_source("ade20k", "validation")) == 1
