"""Cityscapes panoptic from fake cityscapesScripts output: train ids by category name, crowd, layouts."""

import json

import numpy as np
import pytest

import dense_jax.data.real  # registers the real datasets
from dense_jax.data import panoptic_format, sources
from dense_jax.data.real import cityscapes_panoptic

H, W = 8, 12
ROAD, PERSON, CAR = 0, 11, 13        # train ids
NAME = "frankfurt_000000_000294"


def _write(root, fakes, *, train_ids=False, categories=True):
  """One val image: road, a car (labelId 26, instance 1), a crowd of cars, a person; the rest void."""
  image = fakes.image(H, W, seed=3)
  fakes.png(root / "leftImg8bit" / "val" / "frankfurt" / f"{NAME}_leftImg8bit.png", image)
  ids = np.zeros((H, W), np.int64)
  ids[5:] = 1000 if train_ids else 7   # road: labelId 7; with train ids its category is 0, drawn as id 1000
  ids[1:4, 1:5] = 26001
  ids[1:4, 6:9] = 26
  ids[0, 9:] = 24000
  suffix = "_trainId" if train_ids else ""
  png_dir = root / "gtFine" / f"cityscapes_panoptic_val{suffix}"
  png_dir.mkdir(parents=True)
  panoptic_format.write_png(png_dir / f"{NAME}_gtFine_panoptic.png", ids)
  cat = {"road": 0, "person": 11, "car": 13} if train_ids else {"road": 7, "person": 24, "car": 26}
  segments = [{"id": int(ids[6, 0]), "category_id": cat["road"], "iscrowd": 0},
              {"id": 26001, "category_id": cat["car"], "iscrowd": 0},
              {"id": 26, "category_id": cat["car"], "iscrowd": 1},
              {"id": 24000, "category_id": cat["person"], "iscrowd": 0}]
  data = {"images": [{"id": NAME, "file_name": f"{NAME}_leftImg8bit.png", "height": H, "width": W}],
          "annotations": [{"image_id": NAME, "file_name": f"{NAME}_gtFine_panoptic.png", "segments_info": segments}],
          "categories": ([{"id": v, "name": k, "isthing": int(k != "road")} for k, v in cat.items()]
                         if categories else [])}
  (root / "gtFine" / f"cityscapes_panoptic_val{suffix}.json").write_text(json.dumps(data))
  return image, ids


@pytest.mark.parametrize("train_ids, categories", [(False, True), (True, True), (False, False)])
def test_labels(tmp_path, fakes, train_ids, categories):
  image, ids = _write(tmp_path, fakes, train_ids=train_ids, categories=categories)
  source = sources.get_source("cityscapes_panoptic", "validation", data_dir=str(tmp_path))
  assert len(source) == 1
  ex = source[0]
  assert set(ex) == set(sources.dataset_info("cityscapes_panoptic").keys)
  np.testing.assert_array_equal(ex["image"], image)
  road = ids == ids[6, 0]
  np.testing.assert_array_equal(ex["panoptic"], np.select([road, ids == 26001, ids == 24000], [1, 2, 3], 0))
  np.testing.assert_array_equal(ex["segment_classes"][:5], [0, ROAD, CAR, PERSON, 0])
  np.testing.assert_array_equal(ex["segment_is_thing"][:5], [0, 0, 1, 1, 0])
  np.testing.assert_array_equal(
      ex["semantic"], np.select([road, ids == 26001, ids == 26, ids == 24000], [ROAD, CAR, CAR, PERSON], 255))


def test_unknown_category_and_missing_files(tmp_path, fakes):
  _write(tmp_path, fakes)
  path = tmp_path / "gtFine" / "cityscapes_panoptic_val.json"
  data = json.loads(path.read_text())
  data["annotations"][0]["segments_info"][0]["category_id"] = 4     # labelId 4 (static): not evaluated
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="category_id expected one of .*got 4"):
    cityscapes_panoptic.CityscapesPanopticSource("validation", str(tmp_path))[0]
  with pytest.raises(dense_jax.data.real.MissingDataError, match="leftImg8bit/train"):
    cityscapes_panoptic.CityscapesPanopticSource("train", str(tmp_path))
  (tmp_path / "leftImg8bit" / "train").mkdir()   # images there, panoptic files not made yet
  with pytest.raises(dense_jax.data.real.MissingDataError, match="cityscapes_panoptic_train.json.*createPanopticImgs"):
    cityscapes_panoptic.CityscapesPanopticSource("train", str(tmp_path))
