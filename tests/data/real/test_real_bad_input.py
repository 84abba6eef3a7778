"""Bad input to the real-dataset loaders, from real fake files: labels that cannot be right are refused
(BadLabelError) or handled as the dataset's official tools do, damaged files are named
(UnreadableFileError); every message names the dataset, the split, the file and the example. Through
the input pipeline such a file is a DataFileError, and the trainer reports it in one `ERROR:` line with
exit status 2."""

import json
import logging
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io
from pycocotools import mask as mask_utils

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data
from dense_jax.data import panoptic_format, sources
from dense_jax.data.real import _common
from tests.data.real import (
  test_ade20k,
  test_cityscapes_panoptic,
  test_coco,
  test_coco_panoptic,
  test_nyu_depth_v2,
  test_oxford_iiit_pet,
  test_unreadable_files,
)
from tests.data.real.test_voc import _write_voc

BadLabel, Unreadable = _common.BadLabelError, _common.UnreadableFileError


def _truncate(path, keep=0.5):
  path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])
  return path


def _edit_json(path, edit):
  content = json.loads(path.read_text())
  edit(content)
  path.write_text(json.dumps(content))


# ------------------------------------------------------------------------------------------------ ADE20K
def _ade20k_label(root, split_dir, stem):
  return root / "ADEChallengeData2016" / "annotations" / split_dir / f"{stem}.png"


@pytest.mark.parametrize("label,match", [
    (np.full((5, 9), 1, np.uint8), r"expected a label map of its image's size \(6, 9\), got shape \(5, 9\)"),
    (np.full((6, 9), 151, np.uint8),
     r"expected objectInfo150 values \(0 = other\) in 0\.\.150, got 1 other value\(s\) \[151\]"),
    (np.full((6, 9, 3), 1, np.uint8), r"expected a single-channel label PNG \(mode P/L/I\), got mode 'RGB'"),
])
def test_ade20k_refuses_labels_that_cannot_be_right(tmp_path, fakes, label, match):
  test_ade20k._write(tmp_path, fakes, "training", ["ADE_train_00000001"])
  path = fakes.png(_ade20k_label(tmp_path, "training", "ADE_train_00000001"), label)
  with pytest.raises(BadLabel, match=match) as info:
    sources.get_source("ade20k", "train", data_dir=str(tmp_path))[0]
  assert str(info.value).startswith(f"ade20k (train split), {path}, example ADE_train_00000001: expected")


def test_ade20k_message_names_dataset_split_file_example_and_remedy(tmp_path, fakes):
  test_ade20k._write(tmp_path, fakes, "validation", ["ADE_val_00000001"])
  path = fakes.png(_ade20k_label(tmp_path, "validation", "ADE_val_00000001"), np.full((6, 9), 200, np.uint8))
  with pytest.raises(BadLabel) as info:
    sources.get_source("ade20k", "validation", data_dir=str(tmp_path))[0]
  message = str(info.value)
  assert message.startswith(f"ade20k (validation split), {path}, example ADE_val_00000001: expected")
  assert "got 1 other value(s) [200]" in message and "put the original back" in message
  assert "dense_jax.data.real.ade20k" in message


def test_a_bad_label_through_the_pipeline_is_a_data_file_error(tmp_path, fakes):
  test_unreadable_files._ade20k(tmp_path, fakes, "training", 4)
  path = fakes.png(_ade20k_label(tmp_path, "training", "ADE_00000002"), np.full((12, 12), 180, np.uint8))
  it = data.create_iterator("ade20k", "train", global_batch_size=2, seed=0, train=True, image_size=8,
                            data_dir=str(tmp_path), num_threads=1, process_index=0, process_count=1)
  try:
    with pytest.raises(data.DataFileError) as info:
      for _ in range(2):
        next(it)
  finally:
    it.close()
  message = str(info.value)
  assert message.startswith("dataset 'ade20k', split 'train', example 2: ade20k (train split), ")
  assert str(path) in message and "[180]" in message and "not the dataset's own" in message


# --------------------------------------------------------------------------------------- Oxford-IIIT Pet
@pytest.mark.parametrize("trimap,match", [
    (np.full((6, 7), 4, np.uint8), r"expected trimap values .* in 1\.\.3, got 1 other value\(s\) \[4\]"),
    (np.full((6, 8), 2, np.uint8), r"expected a label map of its image's size \(6, 7\), got shape \(6, 8\)"),
])
def test_oxford_iiit_pet_refuses_bad_trimaps(tmp_path, fakes, trimap, match):
  test_oxford_iiit_pet._write(tmp_path, fakes)
  path = fakes.png(tmp_path / "annotations" / "trimaps" / "beagle_12.png", trimap)
  with pytest.raises(BadLabel, match=rf"oxford_iiit_pet \(train split\), {path}, example beagle_12: {match}"):
    sources.get_source("oxford_iiit_pet", "train", data_dir=str(tmp_path))[1]


# -------------------------------------------------------------------------------------------------- VOC
def _voc_png(tmp_path, fakes, label):
  """The fake tar with 2007_000005's label PNG (9 x 12 image) replaced by `label`."""
  _write_voc(tmp_path, fakes, train=["2007_000005"], val=["2008_000001"])
  fakes.png(tmp_path / "stage" / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000005.png", label,
            palette=True)
  _retar(tmp_path)


def _retar(tmp_path):
  import tarfile  # pylint: disable=g-import-not-at-top

  from dense_jax.data.real import voc  # pylint: disable=g-import-not-at-top
  with tarfile.open(tmp_path / voc.TAR_NAME, "w") as tar:
    tar.add(tmp_path / "stage" / "VOCdevkit", arcname="VOCdevkit")


@pytest.mark.parametrize("label,match", [
    (np.zeros((9, 11), np.uint8), r"expected a label map of its image's size \(9, 12\), got shape \(9, 11\)"),
    (np.full((9, 12), 21, np.uint8), r"expected VOC class ids .* in 0\.\.20, 255, got 1 other value\(s\) \[21\]"),
])
def test_voc_refuses_bad_label_pngs_while_preparing(tmp_path, fakes, label, match):
  _voc_png(tmp_path, fakes, label)
  with pytest.raises(BadLabel, match=rf"voc2012 \(train split\), member \.\.\./VOC2012/SegmentationClass/"
                                     rf"2007_000005\.png of .*, image id 2007_000005: {match}.*download "):
    sources.get_source("voc2012", "train", data_dir=str(tmp_path))


def _sbd(tmp_path, fakes, segmentation=None):
  from dense_jax.data.real import voc  # pylint: disable=g-import-not-at-top
  images, _ = _write_voc(tmp_path, fakes, train=["a1"], val=["v1"], unlabeled=["s1"])
  sbd = tmp_path / voc.SBD_DIR
  (sbd / "cls").mkdir(parents=True)
  (sbd / "train.txt").write_text("s1\n")
  (sbd / "val.txt").write_text("")
  h, w = images["s1"].shape[:2]
  seg = np.zeros((h, w), np.uint8) if segmentation is None else segmentation(h, w)
  path = sbd / "cls" / "s1.mat"
  scipy.io.savemat(path, {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": 7}})
  return path


def test_voc_sbd_names_a_truncated_mat(tmp_path, fakes):
  path = _truncate(_sbd(tmp_path, fakes))
  with pytest.raises(Unreadable, match=rf"voc2012_sbd \(train split\), image id s1: cannot decode {path} "
                                       rf".*extract SBD's benchmark\.tgz again"):
    sources.get_source("voc2012_sbd", "train", data_dir=str(tmp_path))


def test_voc_sbd_refuses_class_ids_above_20(tmp_path, fakes):
  path = _sbd(tmp_path, fakes, lambda h, w: np.full((h, w), 30, np.uint8))
  with pytest.raises(BadLabel, match=rf"{path}, image id s1: expected SBD class ids .* in 0\.\.20, got 1 other "
                                     rf"value\(s\) \[30\]"):
    sources.get_source("voc2012_sbd", "train", data_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------------- COCO
def _coco(tmp_path, fakes, edit_person=None, *, panoptic=False, keypoints=None):
  """test_coco's files; `edit_person(annotation)` changes the person of image 1 (annotation id 10)."""
  test_coco._write(tmp_path, fakes)
  annotations = tmp_path / "annotations"
  if edit_person is not None:
    _edit_json(annotations / "instances_val2017.json",
               lambda d: edit_person(next(a for a in d["annotations"] if a["id"] == 10)))
  if keypoints is not None:
    _edit_json(annotations / "person_keypoints_val2017.json",
               lambda d: next(a for a in d["annotations"] if a["id"] == 10).update(keypoints=keypoints))
  if not panoptic:
    (annotations / "panoptic_val2017.json").unlink()
  return sources.get_source("coco2017" if panoptic else "coco2017_instances", "validation", data_dir=str(tmp_path))


def _set(**fields):
  return lambda annotation: annotation.update(fields)


H, W = test_coco.H, test_coco.W
_RLE = mask_utils.encode(np.asfortranarray(np.ones((H, W), np.uint8)))["counts"].decode()


@pytest.mark.parametrize("edit,match", [
    (_set(segmentation=[[2, 3, 10, 3, 10, 13, 2]]), r"polygon 0: expected an even number \(>= 6\) of finite x, "
                                                    r"y coordinates, got 7 values"),
    (_set(segmentation=[[2, 3, 10, 3]]), r"polygon 0: expected an even number \(>= 6\).*got 4 values"),
    (_set(segmentation=[[2, 3, 10, float("nan"), 10, 13]]), r"polygon 0: expected .* finite"),
    (_set(segmentation="2 3 10 3"), r"expected a list of polygons or an RLE dict"),
    (_set(segmentation=[[100, 100, 120, 100, 120, 120]]), r"expected polygons that meet the 20 x 16 image, got x "
                                                          r"in \[100, 120\], y in \[100, 120\]"),
    (_set(segmentation={"size": [H, W + 1], "counts": [H * (W + 1)]}),
     r"RLE size: expected the image's \[height, width\] \[16, 20\], got \[16, 21\]"),
    (_set(segmentation={"size": [H, W], "counts": [10, 10]}), r"RLE counts: expected non-negative ints summing "
                                                              r"to height \* width = 320, got 2 counts summing to 20"),
    (_set(segmentation={"size": [H, W], "counts": _RLE[:-1]}), r"compressed RLE counts: expected runs summing to "
                                                               r"height \* width = 320"),
    (_set(segmentation={"size": [H, W], "counts": "!!garbage"}), r"compressed RLE counts: .*undecodable counts"),
    (_set(bbox=[2, 3, -8, 10]), r"expected bbox \[x, y, w, h\] of finite numbers with w, h >= 0, got \[2, 3, -8, 10\]"),
    (_set(bbox=[2, 3, 8]), r"expected bbox \[x, y, w, h\]"),
    (_set(bbox=[50, 3, 8, 10]), r"expected a bbox that meets the 20 x 16 image, got \[50, 3, 8, 10\]"),
])
def test_coco_refuses_annotations_that_cannot_be_right(tmp_path, fakes, edit, match):
  source = _coco(tmp_path, fakes, edit)
  with pytest.raises(BadLabel, match=rf"coco2017_instances \(validation split\), .*instances_val2017\.json, "
                                     rf"image id 1, annotation id 10: .*{match}"):
    source[0]


def test_coco_refuses_a_crowd_rle_of_another_size(tmp_path, fakes):
  def edit(content):
    crowd = next(a for a in content["annotations"] if a["id"] == 12)
    crowd["segmentation"] = {"size": [H // 2, W], "counts": [H // 2 * W]}
  test_coco._write(tmp_path, fakes)
  _edit_json(tmp_path / "annotations" / "instances_val2017.json", edit)
  with pytest.raises(BadLabel, match=r"annotation id 12: .*RLE size: expected the image's \[height, width\] "
                                     r"\[16, 20\], got \[8, 20\]"):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))[0]


@pytest.mark.parametrize("keypoints,got", [([1.0] * 50, "50"), ([1.0, 1.0, 3.0] * 17, "v in 0, 1, 2")])
def test_coco_refuses_bad_keypoints(tmp_path, fakes, keypoints, got):
  source = _coco(tmp_path, fakes, keypoints=keypoints)
  with pytest.raises(BadLabel, match=r"person_keypoints_val2017\.json, image id 1, annotation id 10: expected "
                                     r"keypoints: 17 \(x, y, v\) triples"):
    source[0]


def test_coco_drops_empty_masks_and_zero_size_boxes_with_a_warning(tmp_path, fakes, caplog):
  # A sub-pixel polygon inside the image rasterizes to nothing; a bbox of width 0 is no box.
  source = _coco(tmp_path, fakes, _set(segmentation=[[5.1, 5.1, 5.2, 5.1, 5.2, 5.2]]))
  with caplog.at_level(logging.WARNING):
    ex = source[0]
  assert ex["num_instances"] == 1 and ex["classes"][0] == test_coco.DOG and ex["masks"][0].any()
  assert source.num_dropped == 1 and "annotation id 10" in caplog.text and "an empty mask" in caplog.text
  source = _coco(tmp_path / "b", fakes, _set(bbox=[2, 3, 0, 10]))
  assert source[0]["num_instances"] == 1 and source.num_dropped == 1


def test_coco_without_area_orders_instances_by_mask_pixels(tmp_path, fakes):
  # Hand-made files often leave `area` out; the semantic map's small-on-top order then uses the mask.
  with_area = _coco(tmp_path / "a", fakes)[0]
  without = _coco(tmp_path / "b", fakes, lambda annotation: annotation.pop("area"))[0]
  for key in ("masks", "boxes", "classes", "num_instances"):
    np.testing.assert_array_equal(without[key], with_area[key])
  assert without["semantic"].shape == with_area["semantic"].shape


def test_coco_refuses_an_image_of_another_size_than_the_json(tmp_path, fakes):
  source = _coco(tmp_path, fakes)
  path = fakes.jpeg(tmp_path / "val2017" / "000000000001.jpg", fakes.image(H, W + 2, seed=0))
  with pytest.raises(BadLabel, match=rf"{path}, image id 1: expected the size \(16, 20\) that "
                                     rf".*instances_val2017\.json gives, got \(16, 22\)"):
    source[0]


@pytest.mark.parametrize("name", ["instances_val2017.json", "person_keypoints_val2017.json"])
def test_coco_names_a_truncated_json(tmp_path, fakes, name):
  test_coco._write(tmp_path, fakes)
  path = _truncate(tmp_path / "annotations" / name)
  with pytest.raises(Unreadable, match=rf"coco2017_instances \(validation split\): cannot decode {path} "
                                       rf"\(JSONDecodeError: .*put the original back"):
    sources.get_source("coco2017_instances", "validation", data_dir=str(tmp_path))


def test_coco_unknown_category_names_the_file_and_annotation(tmp_path, fakes):
  with pytest.raises(BadLabel, match=r"instances_val2017\.json, image id 1, annotation id 10: expected "
                                     r"category_id one of COCO 2017's ids .*got 12"):
    _coco(tmp_path, fakes, _set(category_id=12))


def _coco_panoptic_png(tmp_path, ids):
  panoptic_format.write_png(tmp_path / "annotations" / "panoptic_val2017" / "000000000001.png", ids)


def test_coco2017_refuses_panoptic_ids_the_json_does_not_list(tmp_path, fakes):
  ids = test_coco._write(tmp_path, fakes)
  ids[0, 0] = 77
  _coco_panoptic_png(tmp_path, ids)
  with pytest.raises(BadLabel, match=r"coco2017 \(validation split\), .*000000000001\.png, image id 1: expected "
                                     r"only the segment ids .*got 1 unlisted id\(s\) \[77\]"):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))[0]


def test_coco2017_refuses_a_panoptic_png_of_another_size(tmp_path, fakes):
  ids = test_coco._write(tmp_path, fakes)
  _coco_panoptic_png(tmp_path, ids[:-1])
  with pytest.raises(BadLabel, match=r"000000000001\.png, image id 1: expected a panoptic PNG of its image's "
                                     r"size \(16, 20\), got shape \(15, 20\)"):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))[0]


def test_coco2017_names_a_truncated_panoptic_png(tmp_path, fakes):
  test_coco._write(tmp_path, fakes)
  path = _truncate(tmp_path / "annotations" / "panoptic_val2017" / "000000000001.png")
  with pytest.raises(Unreadable, match=rf"coco2017 \(validation split\), image id 1: cannot decode {path}"):
    sources.get_source("coco2017", "validation", data_dir=str(tmp_path))[0]


# ---------------------------------------------------------------------------------------- COCO panoptic
def _coco_panoptic(tmp_path, fakes):
  test_coco_panoptic._write(tmp_path, fakes)
  return tmp_path / "annotations" / "panoptic_val2017.json", tmp_path / "annotations" / "panoptic_val2017"


def test_coco_panoptic_names_a_truncated_json(tmp_path, fakes):
  json_path, _ = _coco_panoptic(tmp_path, fakes)
  _truncate(json_path)
  with pytest.raises(Unreadable, match=rf"coco2017_panoptic \(validation split\): cannot decode {json_path} "
                                       rf"\(JSONDecodeError"):
    sources.get_source("coco2017_panoptic", "validation", data_dir=str(tmp_path))


def test_coco_panoptic_names_a_truncated_png(tmp_path, fakes):
  _, png_dir = _coco_panoptic(tmp_path, fakes)
  path = _truncate(png_dir / "000000000002.png")
  with pytest.raises(Unreadable, match=rf"coco2017_panoptic \(validation split\), image id 2: cannot "
                                       rf"decode {path} \(OSError"):
    sources.get_source("coco2017_panoptic", "validation", data_dir=str(tmp_path))[0]


def test_coco_panoptic_refuses_a_grey_png_and_a_png_of_another_size(tmp_path, fakes):
  _, png_dir = _coco_panoptic(tmp_path, fakes)
  source = sources.get_source("coco2017_panoptic", "validation", data_dir=str(tmp_path))
  fakes.png(png_dir / "000000000002.png", np.zeros((test_coco_panoptic.H, test_coco_panoptic.W), np.uint8))
  with pytest.raises(BadLabel, match=r"image id 2: expected an RGB panoptic PNG, got .*mode 'L'"):
    source[0]
  panoptic_format.write_png(png_dir / "000000000002.png", np.zeros((3, 3), np.int64))
  with pytest.raises(BadLabel, match=r"image id 2: expected a panoptic PNG of its image's size \(12, 10\), "
                                     r"got shape \(3, 3\)"):
    source[0]


def test_coco_panoptic_refuses_a_segment_id_listed_twice(tmp_path, fakes):
  test_coco_panoptic._write(tmp_path, fakes, segments=[{"id": 261, "category_id": 1}, {"id": 9, "category_id": 1},
                                                      {"id": 261, "category_id": 18},
                                                      {"id": 70000, "category_id": 187}])
  with pytest.raises(BadLabel, match=r"panoptic_val2017\.json, image id 2: expected each segment id once in "
                                     r"segments_info, got ids listed more than once: \[261\]"):
    sources.get_source("coco2017_panoptic", "validation", data_dir=str(tmp_path))[0]


# ----------------------------------------------------------------------------------- Cityscapes panoptic
def test_cityscapes_panoptic_names_a_truncated_json(tmp_path, fakes):
  test_cityscapes_panoptic._write(tmp_path, fakes)
  path = _truncate(tmp_path / "gtFine" / "cityscapes_panoptic_val.json")
  with pytest.raises(Unreadable, match=rf"cityscapes_panoptic \(validation split\): cannot decode {path}"):
    sources.get_source("cityscapes_panoptic", "validation", data_dir=str(tmp_path))


def test_cityscapes_panoptic_refuses_an_image_of_another_size_than_the_json(tmp_path, fakes):
  test_cityscapes_panoptic._write(tmp_path, fakes)
  _edit_json(tmp_path / "gtFine" / "cityscapes_panoptic_val.json", lambda d: d["images"][0].update(height=16))
  with pytest.raises(BadLabel, match=r"_leftImg8bit\.png, image id frankfurt_000000_000294: expected the size "
                                     r"\(16, 12\) that .* gives, got \(8, 12\)"):
    sources.get_source("cityscapes_panoptic", "validation", data_dir=str(tmp_path))[0]


def test_cityscapes_panoptic_refuses_an_unknown_category_name(tmp_path, fakes):
  test_cityscapes_panoptic._write(tmp_path, fakes)
  _edit_json(tmp_path / "gtFine" / "cityscapes_panoptic_val.json",
             lambda d: d["categories"].append({"id": 4, "name": "static", "isthing": 0}))
  with pytest.raises(BadLabel, match=r"cityscapes_panoptic_val\.json: expected categories among the 19 evaluated "
                                     r"classes .*got 'static'; rerun cityscapesScripts' createPanopticImgs"):
    sources.get_source("cityscapes_panoptic", "validation", data_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------- Cityscapes
def _cityscapes_zips(root, fakes, label=None, label_shape=(4, 6)):
  for zip_name, top, suffix in [("leftImg8bit_trainvaltest.zip", "leftImg8bit", "leftImg8bit"),
                                ("gtFine_trainvaltest.zip", "gtFine", "gtFine_labelIds")]:
    with zipfile.ZipFile(root / zip_name, "w") as archive:
      for split in ("train", "val", "test"):
        stem = f"{top}/{split}/{split}city/{split}city_000000_000019_{suffix}.png"
        if top == "leftImg8bit":
          array = fakes.image(4, 6, seed=0)
        else:
          array = np.full(label_shape, 7, np.uint8) if label is None else label
        fakes.png(root / "stage" / stem, array)
        archive.write(root / "stage" / stem, stem)


def test_cityscapes_names_a_truncated_zip(tmp_path, fakes):
  _cityscapes_zips(tmp_path, fakes)
  path = _truncate(tmp_path / "gtFine_trainvaltest.zip")
  with pytest.raises(Unreadable, match=rf"cityscapes \(train split\): cannot decode {path} .*download it "
                                       rf"again from cityscapes-dataset\.com"):
    sources.get_source("cityscapes", "train", data_dir=str(tmp_path))


def test_cityscapes_refuses_values_that_are_no_label_id(tmp_path, fakes):
  _cityscapes_zips(tmp_path, fakes, label=np.array([[7, 8, 40, 0, 255, 33]] * 4, np.uint8))
  source = sources.get_source("cityscapes", "train", data_dir=str(tmp_path))
  with pytest.raises(BadLabel, match=r"cityscapes \(train split\), the gtFine labelIds of traincity_000000_000019 "
                                     r"prepared in .*tfds, example 0: expected labelIds in 0\.\.33, 255, got 1 other "
                                     r"value\(s\) \[40\]; the prepared dataset does not match"):
    source[0]


# ------------------------------------------------------------------------------------------------- NYU
def _nyu_arrays(root, **replace):
  """Rewrites the fake labelled .mat with some arrays replaced (MATLAB's reversed axes, see test_nyu)."""
  path = root / "nyu_depth_v2_labeled.mat"
  with h5py.File(path, "r") as f:
    arrays = {k: f[k][()] for k in f}
  arrays.update(replace)
  with h5py.File(path, "w") as f:
    for k, v in arrays.items():
      if v is not None:
        f[k] = v
  return path


def test_nyu_names_a_truncated_labelled_mat(tmp_path):
  test_nyu_depth_v2._write(tmp_path)
  path = _truncate(tmp_path / "nyu_depth_v2_labeled.mat")
  with pytest.raises(Unreadable, match=rf"nyu_depth_v2 \(train split\): cannot decode {path} \(OSError"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))


def test_nyu_names_a_truncated_splits_mat(tmp_path):
  test_nyu_depth_v2._write(tmp_path)
  path = _truncate(tmp_path / "splits.mat")
  with pytest.raises(Unreadable, match=rf"nyu_depth_v2 \(test split\): cannot decode {path}"):
    sources.get_source("nyu_depth_v2", "test", data_dir=str(tmp_path))


@pytest.mark.parametrize("value,got", [(np.nan, "nan"), (-1.0, "-1.0"), (np.inf, "inf")])
def test_nyu_refuses_depths_that_cannot_be_right(tmp_path, value, got):
  _, depths, _ = test_nyu_depth_v2._write(tmp_path)
  depths[2, 1, 3] = value
  path = _nyu_arrays(tmp_path, depths=depths.transpose(0, 2, 1))
  with pytest.raises(BadLabel, match=rf"{path}, frame 3 \(example 1\): expected finite depths >= 0 \(metres\), "
                                     rf"got 1 pixels such as \[{got}\]"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))[1]


def test_nyu_refuses_raw_labels_past_the_class_mapping(tmp_path):
  _, _, labels = test_nyu_depth_v2._write(tmp_path)
  labels[2, 0, 0] = 1000
  path = _nyu_arrays(tmp_path, labels=labels.transpose(0, 2, 1))
  with pytest.raises(BadLabel, match=rf"{path}, frame 3 \(example 1\): expected raw class ids \(0 = unlabelled\) "
                                     rf"in 0\.\.894, got 1 other value\(s\) \[1000\]"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))[1]


def test_nyu_refuses_inconsistent_or_missing_arrays(tmp_path):
  _, depths, _ = test_nyu_depth_v2._write(tmp_path)
  _nyu_arrays(tmp_path, depths=depths[:, :, :-1].transpose(0, 2, 1))
  with pytest.raises(BadLabel, match=r"expected images \(N, 3, W, H\), depths and labels \(N, W, H\)"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))
  _nyu_arrays(tmp_path, depths=None)
  with pytest.raises(BadLabel, match=r"expected the arrays images, depths and labels, got only \['images', "
                                     r"'labels'\]"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))


def test_nyu_refuses_a_class_mapping_outside_0_to_40(tmp_path):
  test_nyu_depth_v2._write(tmp_path)
  path = tmp_path / "classMapping40.mat"
  scipy.io.savemat(path, {"mapClass": np.full((1, 894), 41.0)})
  with pytest.raises(BadLabel, match=rf"{path}: expected mapClass values in 0\.\.40 \(0 = unlabelled\), got 894 "
                                     rf"values in 41\.\.41"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))


# -------------------------------------------------------------------------------------- the trainer CLI
@pytest.mark.slow
def test_trainer_reports_a_bad_training_label_in_one_error_line_with_exit_2(tmp_path, fakes):
  from tests.train.conftest import REPO_ROOT, tiny_config, write_config_file  # pylint: disable=g-import-not-at-top
  root = tmp_path / "ade20k"
  for split_dir, count in (("training", 8), ("validation", 1)):
    for k in range(count):
      fakes.jpeg(root / "ADEChallengeData2016" / "images" / split_dir / f"ADE_{k:08d}.jpg",
                 fakes.image(16, 16, seed=k))
      fakes.png(_ade20k_label(root, split_dir, f"ADE_{k:08d}"), np.full((16, 16), 1 + k, np.uint8))
  bad = fakes.png(_ade20k_label(root, "training", "ADE_00000005"), np.full((16, 12), 3, np.uint8))
  config = tiny_config(**{"dataset.name": "ade20k", "dataset.data_dir": str(root), "dataset.image_size": 16,
                          "total_steps": 2, "eval_every": 2, "checkpoint_every": 2, "num_figures": 0})
  config_file = write_config_file(tmp_path, config)
  proc = subprocess.run([sys.executable, "-m", "dense_jax.train", f"--config={config_file}",
                         f"--workdir={tmp_path}/run"], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert f"ade20k (train split), {bad}, example ADE_00000005: expected a label map of its image's size" in errors[0]
  assert "dataset 'ade20k', split 'train', example 5" in errors[0]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
