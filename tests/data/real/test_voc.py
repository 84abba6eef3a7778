"""VOC 2012 (+ SBD train_aug) from a fake official tar: the TFDS builder, class labels, ignore band."""

import pathlib
import pickle
import tarfile

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import sources
from dense_jax.data.real import voc


def _label(h, w, cls):
  """Background, one object of class `cls` and the 255 boundary band around it, as in VOC."""
  label = np.zeros((h, w), np.uint8)
  label[2:h - 2, 3:w - 2] = 255
  label[3:h - 3, 4:w - 3] = cls
  return label


def _write_voc(root: pathlib.Path, fakes, train, val, unlabeled=()):
  """The official tar layout: VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}."""
  stage = root / "stage"
  base = stage / "VOCdevkit" / "VOC2012"
  images, labels = {}, {}
  for k, image_id in enumerate(list(train) + list(val) + list(unlabeled)):
    h, w = 9 + k, 12 + 2 * k  # distinct, non-square sizes catch transposes
    images[image_id] = fakes.image(h, w, seed=k)
    fakes.jpeg(base / "JPEGImages" / f"{image_id}.jpg", images[image_id])
    if image_id not in unlabeled:
      labels[image_id] = _label(h, w, cls=k % 20 + 1)
      fakes.png(base / "SegmentationClass" / f"{image_id}.png", labels[image_id], palette=True)
  (base / "ImageSets" / "Segmentation").mkdir(parents=True)
  (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(train) + "\n")
  (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(val) + "\n")
  with tarfile.open(root / voc.TAR_NAME, "w") as tar:
    tar.add(stage / "VOCdevkit", arcname="VOCdevkit")
  return images, labels


def _check(source, ids, images, labels):
  assert len(source) == len(ids)
  for index, image_id in enumerate(ids):
    example = source[index]
    assert set(example) == {"image", "semantic"}
    assert example["image"].dtype == np.uint8 and example["semantic"].dtype == np.int32
    assert example["image"].shape == images[image_id].shape
    assert np.abs(example["image"].astype(int) - images[image_id]).mean() < 2.0  # JPEG, quality 100
    np.testing.assert_array_equal(example["semantic"], labels[image_id])


def test_voc2012_from_tar(tmp_path, fakes):
  images, labels = _write_voc(tmp_path, fakes, train=["2007_000032", "2007_000005"], val=["2008_000001"])
  train = sources.get_source("voc2012", "train", data_dir=str(tmp_path))
  _check(train, ["2007_000005", "2007_000032"], images, labels)  # sorted id order
  assert 255 in train[0]["semantic"] and set(np.unique(train[0]["semantic"])) == {0, 255, 2}
  _check(sources.get_source("voc2012", "validation", data_dir=str(tmp_path)), ["2008_000001"], images, labels)
  _check(pickle.loads(pickle.dumps(train)), ["2007_000005", "2007_000032"], images, labels)  # grain workers
  # The prepared dataset is also a plain TFDS dataset, with the class names in its metadata.
  builder = tfds.builder("voc2012_segmentation/segmentation", data_dir=str(tmp_path / "tfds"))
  assert builder.info.metadata["class_names"][15] == "person"
  assert len(tfds.data_source("voc2012_segmentation/segmentation", split="train",
                              data_dir=str(tmp_path / "tfds"))) == 2
  # Once prepared, the TFDS dataset under tfds/ is read without the tar.
  (tmp_path / voc.TAR_NAME).unlink()
  _check(sources.get_source("voc2012", "train", data_dir=str(tmp_path)), ["2007_000005", "2007_000032"],
         images, labels)


def test_voc2012_sbd_train_aug(tmp_path, fakes):
  images, labels = _write_voc(tmp_path, fakes, train=["a1", "a2"], val=["v1"], unlabeled=["s1", "s2"])
  sbd = tmp_path / voc.SBD_DIR
  (sbd / "cls").mkdir(parents=True)
  (sbd / "train.txt").write_text("a2\ns1\nv1\n")  # v1 is VOC val: excluded from train_aug
  (sbd / "val.txt").write_text("s2\n")
  for image_id in ["a2", "s1", "s2", "v1"]:
    h, w = images[image_id].shape[:2]
    seg = np.full((h, w), 7, np.uint8)
    seg[: h // 2] = 0
    if image_id in ("s1", "s2"):
      labels[image_id] = seg
    scipy.io.savemat(sbd / "cls" / f"{image_id}.mat",
                     {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": 7}})
  train = sources.get_source("voc2012_sbd", "train", data_dir=str(tmp_path))
  # a2 has both a VOC PNG and an SBD .mat: the VOC label (with its 255 band) wins.
  _check(train, ["a1", "a2", "s1", "s2"], images, labels)
  _check(sources.get_source("voc2012_sbd", "validation", data_dir=str(tmp_path)), ["v1"], images, labels)


def test_missing_tar_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / voc.TAR_NAME)):
    sources.get_source("voc2012", "train", data_dir=str(tmp_path))


def test_missing_sbd_names_the_path(tmp_path, fakes):
  _write_voc(tmp_path, fakes, train=["a1"], val=["v1"])
  with pytest.raises(FileNotFoundError, match="benchmark_RELEASE"):
    sources.get_source("voc2012_sbd", "train", data_dir=str(tmp_path))


def test_info():
  info = sources.dataset_info("voc2012")
  assert info.num_classes == len(info.class_names) == 21
  assert info.class_names[15] == "person" and info.ignore_label == 255
  assert sources.dataset_info("voc2012_sbd").splits == ("train", "validation")
