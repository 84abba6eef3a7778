"""COCO 2017 panoptic alone, from fake images, panoptic PNGs and JSON: ids, classes, crowd, errors."""

import json
import logging

import numpy as np
import pytest

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import panoptic_format, sources
from dense_jax.data.real import coco, coco_panoptic

H, W = 12, 10
PERSON, DOG, SKY = 1, 17, 81 + 39   # contiguous: things in id order (dog the 17th), then stuff (sky the 40th)


def _write(root, fakes, segments=None, extra_id=None):
  """val2017 images 5, 2 and 7; panoptic PNGs for 2 and 5 (7 has no annotation entry)."""
  for image_id in (5, 2, 7):
    fakes.jpeg(root / "val2017" / f"{image_id:012d}.jpg", fakes.image(H, W, seed=image_id))
  ids = np.zeros((H, W), np.int64)
  ids[:3] = 70000                     # sky (B channel used)
  ids[4:9, 2:6] = 261                 # person
  ids[10:] = 9                        # a crowd of persons
  if extra_id is not None:
    ids[0, 0] = extra_id
  png_dir = root / "annotations" / "panoptic_val2017"
  png_dir.mkdir(parents=True)
  panoptic_format.write_png(png_dir / "000000000002.png", ids)
  panoptic_format.write_png(png_dir / "000000000005.png", np.full((H, W), 4))
  segments = segments or [{"id": 261, "category_id": 1, "iscrowd": 0}, {"id": 9, "category_id": 1, "iscrowd": 1},
                          {"id": 300, "category_id": 18, "iscrowd": 0},     # listed, not drawn
                          {"id": 70000, "category_id": 187, "iscrowd": 0}]
  data = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in (5, 7, 2)],
          "annotations": [{"image_id": 2, "file_name": "000000000002.png", "segments_info": segments},
                          {"image_id": 5, "file_name": "000000000005.png",
                           "segments_info": [{"id": 4, "category_id": 18}]}],
          "categories": [{"id": 1, "name": "person", "isthing": 1}]}
  (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
  return ids


def test_labels(tmp_path, fakes):
  ids = _write(tmp_path, fakes)
  source = sources.get_source("coco2017_panoptic", "validation", data_dir=str(tmp_path))
  assert len(source) == 3
  ex = source[0]                      # image 2 (ordered by id)
  assert set(ex) == set(coco_panoptic.KEYS) == set(sources.dataset_info("coco2017_panoptic").keys)
  np.testing.assert_allclose(ex["image"], fakes.image(H, W, seed=2), atol=4)   # JPEG
  expected = np.select([ids == 261, ids == 70000], [1, 2], 0)     # segments_info order, crowd and undrawn skipped
  assert ex["panoptic"].dtype == np.int32
  np.testing.assert_array_equal(ex["panoptic"], expected)
  np.testing.assert_array_equal(ex["segment_classes"][:4], [0, PERSON, SKY, 0])
  np.testing.assert_array_equal(ex["segment_is_thing"][:4], [0, 1, 0, 0])
  assert ex["segment_classes"].shape == (256,) and ex["segment_is_thing"].dtype == np.uint8
  expected_semantic = np.select([ids == 261, ids == 9, ids == 70000], [PERSON, PERSON, SKY], 255)
  np.testing.assert_array_equal(ex["semantic"], expected_semantic)   # the crowd keeps its class here
  ex5 = source[1]
  assert (ex5["panoptic"] == 1).all() and ex5["segment_classes"][1] == DOG and (ex5["semantic"] == DOG).all()
  ex7 = source[2]                     # no annotation entry: all void
  assert not ex7["panoptic"].any() and (ex7["semantic"] == 255).all()


def test_same_panoptic_labels_as_coco2017(tmp_path, fakes):
  """The full 'coco2017' source reads the same panoptic files into the same arrays."""
  _write(tmp_path, fakes)
  empty = {"images": json.loads((tmp_path / "annotations" / "panoptic_val2017.json").read_text())["images"],
           "annotations": [], "categories": []}
  for name in ("instances_val2017.json", "person_keypoints_val2017.json"):
    (tmp_path / "annotations" / name).write_text(json.dumps(empty))
  ours = coco_panoptic.CocoPanopticSource("validation", str(tmp_path))
  theirs = coco.CocoSource("validation", str(tmp_path))
  for i in range(3):
    for key in coco_panoptic.KEYS:
      np.testing.assert_array_equal(ours[i][key], theirs[i][key], err_msg=f"{key} of example {i}")


def test_truncation_counts(tmp_path, fakes, caplog):
  _write(tmp_path, fakes)
  source = coco_panoptic.CocoPanopticSource("validation", str(tmp_path), max_segments=2)
  with caplog.at_level(logging.WARNING):
    ex = source[0]
  np.testing.assert_array_equal(ex["segment_classes"], [0, PERSON])
  assert (ex["panoptic"][:3] == 0).all() and source.num_truncated == 1 and "1 more segments" in caplog.text


def test_bad_files(tmp_path, fakes):
  _write(tmp_path / "a", fakes, extra_id=77)
  with pytest.raises(ValueError, match=r"000000000002\.png, image id 2: expected only the segment ids its "
                                       r"segments_info in .*panoptic_val2017\.json lists "
                                       r".*got 1 unlisted id\(s\) \[77\]"):
    coco_panoptic.CocoPanopticSource("validation", str(tmp_path / "a"))[0]
  _write(tmp_path / "b", fakes, segments=[{"id": 261, "category_id": 91}, {"id": 9, "category_id": 1},
                                          {"id": 70000, "category_id": 187}])   # 91: no COCO 2017 category
  with pytest.raises(ValueError, match=r"panoptic_val2017\.json, image id 2: expected known categories \(segment 261\)"
                                       r".*category_id expected one of COCO 2017's ids.*got 91"):
    coco_panoptic.CocoPanopticSource("validation", str(tmp_path / "b"))[0]
  with pytest.raises(ValueError, match="max_segments"):
    coco_panoptic.CocoPanopticSource("validation", str(tmp_path / "b"), max_segments=1)
