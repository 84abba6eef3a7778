"""COCO 2017 from fake json + images + panoptic PNG: masks, boxes, classes, keypoints, panoptic, semantic."""

import functools
import json
import logging

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data as data_lib
from dense_jax.data import sources
from dense_jax.data.real import coco

H, W = 16, 20
PERSON, DOG, SKY = 1, 17, 81 + 39  # contiguous: things in id order (dog the 17th), then stuff (sky the 40th)
KEYPOINTS = np.arange(51, dtype=float).reshape(17, 3)
KEYPOINTS[:, 2] = np.arange(17) % 3  # visibility 0, 1, 2


def _rect(y0, x0, y1, x1):
  mask = np.zeros((H, W), np.uint8)
  mask[y0:y1, x0:x1] = 1
  return mask


def _write(root, fakes, ids=(1, 2, 3)):
  """Images 1 (person, dog, a crowd), 2 (a person as compressed RLE) and 3 (nothing), in val2017, with
  COCO ids `ids` (increasing, so the split's order stays 1, 2, 3)."""
  coco_id = dict(zip((1, 2, 3), ids))
  for image in (2, 1, 3):
    fakes.jpeg(root / "val2017" / f"{coco_id[image]:012d}.jpg", fakes.image(H, W, seed=image))
  images = [{"id": coco_id[i], "file_name": f"{coco_id[i]:012d}.jpg", "height": H, "width": W} for i in (2, 3, 1)]
  crowd_uncompressed = {"size": [H, W], "counts": _uncompressed_counts(_rect(12, 0, 16, 20))}
  rle = mask_utils.encode(np.asfortranarray(_rect(1, 1, 5, 4)))
  rle["counts"] = rle["counts"].decode("ascii")  # as stored in json
  person = {"id": 10, "image_id": coco_id[1], "category_id": 1, "iscrowd": 0, "area": 80.0, "bbox": [2, 3, 8, 10],
            "segmentation": [[2, 3, 10, 3, 10, 13, 2, 13]]}  # x 2..10, y 3..13
  dog = {"id": 11, "image_id": coco_id[1], "category_id": 18, "iscrowd": 0, "area": 16.0, "bbox": [12, 4, 4, 4],
         "segmentation": [[12, 4, 16, 4, 16, 8, 12, 8]]}
  crowd_ann = {"id": 12, "image_id": coco_id[1], "category_id": 1, "iscrowd": 1, "area": 80.0, "bbox": [0, 12, 20, 4],
               "segmentation": crowd_uncompressed}
  person2 = {"id": 13, "image_id": coco_id[2], "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [1, 1, 3, 4],
             "segmentation": rle}
  categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
  annotations = root / "annotations"
  annotations.mkdir()
  (annotations / "instances_val2017.json").write_text(json.dumps(
      {"images": images, "annotations": [person, dog, crowd_ann, person2], "categories": categories}))
  keypointed = [dict(person, keypoints=KEYPOINTS.ravel().tolist(), num_keypoints=11),
                dict(person2, keypoints=[0] * 51, num_keypoints=0)]
  (annotations / "person_keypoints_val2017.json").write_text(json.dumps(
      {"images": images, "annotations": keypointed, "categories": categories[:1]}))
  # Panoptic PNG of image 1: person id 261 (R=5, G=1), dog 300, sky 70000 (B=1), crowd 9, void 0.
  ids = np.zeros((H, W), np.int64)
  ids[0:3] = 70000
  ids[3:13, 2:10] = 261
  ids[4:8, 12:16] = 300
  ids[13:16] = 9
  rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
  fakes.png(annotations / "panoptic_val2017" / f"{coco_id[1]:012d}.png", rgb)
  segments = [{"id": 261, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 18, "iscrowd": 0},
              {"id": 70000, "category_id": 187, "iscrowd": 0}, {"id": 9, "category_id": 1, "iscrowd": 1}]
  (annotations / "panoptic_val2017.json").write_text(json.dumps({"annotations": [
      {"image_id": coco_id[1], "file_name": f"{coco_id[1]:012d}.png", "segments_info": segments}]}))
  return ids


def _uncompressed_counts(mask):
  """COCO's uncompressed RLE: run lengths of the column-major flattening, starting with zeros."""
  flat = mask.ravel(order="F")
  changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
  return np.diff(np.concatenate([[0], changes])).tolist()


def test_category_table():
  assert len(coco.THING_CATEGORIES) == 80 and len(coco.STUFF_CATEGORIES) == 53
  assert coco.CLASS_NAMES[PERSON] == "person" and coco.CLASS_NAMES[DOG] == "dog"
  assert coco.CLASS_NAMES[SKY] == "sky-other-merged" and coco.CONTIGUOUS[187] == SKY
  assert coco.CONTIGUOUS[90] == 80 and coco.CONTIGUOUS[92] == 81
  flip = np.array(coco.KEYPOINT_FLIP)
  assert [coco.KEYPOINT_NAMES[i].replace("left", "right") for i in range(1, 17, 2)] == \
      [coco.KEYPOINT_NAMES[flip[i]] for i in range(1, 17, 2)]
  for info in (coco.INFO, coco.INSTANCES_INFO):   # a flip swaps left and right; persons carry the keypoints
    assert info.keypoint_flip_perm == (coco.KEYPOINT_FLIP,) and info.keypoint_classes == (PERSON,) == (coco.PERSON,)


def test_instances_keypoints_and_panoptic(tmp_path, fakes):
  _write(tmp_path, fakes)
  source = sources.get_source("coco2017", "validation", data_dir=str(tmp_path))
  assert len(source) == 3
  ex = source[0]  # image id 1
  assert set(ex) == set(sources.dataset_info("coco2017").keys)
  assert ex["masks"].shape == (100, H, W) and ex["masks"].dtype == np.uint8
  assert ex["num_instances"] == 2 and ex["num_instances"].dtype == np.int32
  assert ex["image_id"].shape == () and ex["image_id"].dtype == np.int32 and ex["image_id"] == 1
  np.testing.assert_array_equal(ex["masks"][0], _rect(3, 2, 13, 10))
  np.testing.assert_array_equal(ex["masks"][1], _rect(4, 12, 8, 16))
  assert not ex["masks"][2:].any()
  np.testing.assert_array_equal(ex["classes"][:3], [PERSON, DOG, 0])  # the crowd is not an instance
  np.testing.assert_allclose(ex["boxes"][:2], [[3, 2, 13, 10], [4, 12, 8, 16]])
  assert ex["keypoints"].shape == (100, 17, 3)
  np.testing.assert_array_equal(ex["keypoints"][0], KEYPOINTS)
  assert not ex["keypoints"][1].any()
  # Panoptic: segments renumbered 1..3 in segments_info order, crowd void; semantic keeps the crowd class.
  panoptic = ex["panoptic"]
  assert panoptic.dtype == np.int32
  assert (panoptic[3:13, 2:10] == 1).all() and (panoptic[4:8, 12:16] == 2).all() and (panoptic[0:3] == 3).all()
  assert (panoptic[13:16] == 0).all() and panoptic[8, 18] == 0
  np.testing.assert_array_equal(ex["segment_classes"][:5], [0, PERSON, DOG, SKY, 0])
  np.testing.assert_array_equal(ex["segment_is_thing"][:5], [0, 1, 1, 0, 0])
  semantic = ex["semantic"]
  assert semantic[0, 0] == SKY and semantic[5, 5] == PERSON and semantic[5, 13] == DOG
  assert semantic[14, 0] == PERSON and semantic[8, 18] == 255
  # Image 2: a compressed-RLE person with all-zero keypoints; image 3 has nothing (no panoptic entry).
  ex2 = source[1]
  np.testing.assert_array_equal(ex2["masks"][0], _rect(1, 1, 5, 4))
  assert ex2["num_instances"] == 1 and not ex2["keypoints"].any()
  ex3 = source[2]
  assert ex3["num_instances"] == 0 and (ex3["semantic"] == 255).all() and not ex3["panoptic"].any()


def test_semantic_from_instances(tmp_path, fakes):
  _write(tmp_path, fakes)
  (tmp_path / "annotations" / "panoptic_val2017.json").unlink()  # not needed without panoptic
  source = sources.get_source("coco2017_instances", "validation", data_dir=str(tmp_path))
  ex = source[0]
  assert set(ex) == set(sources.dataset_info("coco2017_instances").keys)
  expected = np.zeros((H, W), np.int32)
  expected[3:13, 2:10] = PERSON
  expected[4:8, 12:16] = DOG
  expected[12:16] = np.where(expected[12:16] == 0, 255, expected[12:16])  # crowd pixels not under an instance
  np.testing.assert_array_equal(ex["semantic"], expected)


COCO_IDS = (139, 285, 632)   # val2017's first three ids: not the split's positions 1, 2, 3


def _validation_batches(data_dir, keys, train=False, batch_size=2):
  """Every batch of coco2017_instances' validation split in `data_dir`, evaluated (or trained) at 12 x 12."""
  it = data_lib.create_iterator("coco2017_instances", "validation", global_batch_size=batch_size, seed=0,
                                train=train, image_size=(12, 12), data_dir=str(data_dir), keys=keys,
                                process_index=0, process_count=1, num_threads=1, num_epochs=1)
  try:
    return list(it)
  finally:
    it.close()


def test_image_ids_are_coco_ids_through_the_pipeline(tmp_path, fakes):
  """The loader gives each example its COCO id; the pipeline brings `image_id` along with the instance
  keys (evaluation: in order, padding 0; training: augmentation leaves it alone), not with others."""
  _write(tmp_path, fakes, ids=COCO_IDS)
  (tmp_path / "annotations" / "panoptic_val2017.json").unlink()
  source = sources.get_source("coco2017_instances", "validation", data_dir=str(tmp_path))
  assert [int(source[i]["image_id"]) for i in range(3)] == list(COCO_IDS)
  assert source[0]["num_instances"] == 2 and source[1]["num_instances"] == 1   # the annotations follow the ids

  batches = functools.partial(_validation_batches, tmp_path)

  first, last = batches(("image", "masks", "boxes", "classes"))
  assert first["image_id"].dtype == np.int32 and first["image_id"].shape == (2,)
  np.testing.assert_array_equal(first["image_id"], COCO_IDS[:2])
  np.testing.assert_array_equal(last["image_id"], [COCO_IDS[2], 0])   # the padding's id is 0 ...
  np.testing.assert_array_equal(last["batch_mask"], [1, 0])            # ... and it is no example
  assert "image_id" in batches(("image", "keypoints"))[0]
  assert "image_id" not in batches(("image", "semantic"))[0]           # no instance keys, no id
  (train,) = batches(("image", "masks", "boxes", "classes"), train=True, batch_size=3)
  assert sorted(train["image_id"].tolist()) == list(COCO_IDS)
  for i, image_id in enumerate(train["image_id"]):   # each id still with its own example's labels
    assert train["num_instances"][i] <= source[COCO_IDS.index(int(image_id))]["num_instances"]


def test_evaluation_batches_carry_the_original_size(tmp_path, fakes):
  """Evaluation batches of examples with an `image_id` carry `original_size` (B, 2) int32: the source
  image's (h, w) before the resize to `image_size` (padding 0, 0); training batches and batches without
  the id do not."""
  _write(tmp_path, fakes, ids=COCO_IDS)
  (tmp_path / "annotations" / "panoptic_val2017.json").unlink()
  source = sources.get_source("coco2017_instances", "validation", data_dir=str(tmp_path))

  batches = functools.partial(_validation_batches, tmp_path)

  first, last = batches(("image", "masks", "boxes", "classes"))
  assert first["image"].shape == (2, 12, 12, 3)   # f = min(12 / 16, 12 / 20) = 0.6 -> 10 x 12, padded
  assert first["original_size"].dtype == np.int32 and first["original_size"].shape == (2, 2)
  sizes = [source[i]["image"].shape[:2] for i in range(3)]
  assert sizes == [(H, W)] * 3
  np.testing.assert_array_equal(first["original_size"], sizes[:2])
  np.testing.assert_array_equal(last["original_size"], [sizes[2], (0, 0)])   # the padding's is 0, 0
  assert "original_size" not in batches(("image", "semantic"))[0]            # no image_id, no size
  (train,) = batches(("image", "masks", "boxes", "classes"), train=True, batch_size=3)
  assert "original_size" not in train and "image_id" in train


def test_truncation_keeps_largest_and_counts(tmp_path, fakes, caplog):
  _write(tmp_path, fakes)
  source = coco.CocoSource("validation", str(tmp_path), max_instances=1, max_segments=2)
  with caplog.at_level(logging.WARNING):
    ex = source[0]
  assert ex["num_instances"] == 1 and ex["classes"][0] == PERSON and ex["masks"].shape == (1, H, W)
  np.testing.assert_array_equal(ex["segment_classes"], [0, PERSON])
  assert (ex["panoptic"][4:8, 12:16] == 0).all()  # segments past the padding are void
  assert source.num_truncated == 2 and "more than the 1 padded rows" in caplog.text


def test_errors(tmp_path, fakes):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "val2017")):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))
  _write(tmp_path, fakes)
  (tmp_path / "annotations" / "panoptic_val2017.json").unlink()
  with pytest.raises(FileNotFoundError, match="panoptic_val2017.json"):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))
  path = tmp_path / "annotations" / "instances_val2017.json"
  data = json.loads(path.read_text())
  data["annotations"][0]["category_id"] = 12  # not a COCO 2017 category
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="got 12"):
    sources.get_source("coco2017_instances", "validation", data_dir=str(tmp_path))
