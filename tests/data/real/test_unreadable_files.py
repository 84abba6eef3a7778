"""A truncated image in a real dataset's folder: the error names the file, the dataset, the split and the
example, and says what to do — from the loader, from a training iterator (where grain's worker threads
run the loading) and from the evaluation iterator's set-up."""

import io

import numpy as np
import pytest
from PIL import Image

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data
from dense_jax.data.real import _common


def _ade20k(root, fakes, split_dir, count):
  for k in range(count):
    fakes.jpeg(root / "ADEChallengeData2016" / "images" / split_dir / f"ADE_{k:08d}.jpg",
               fakes.image(12, 12, seed=k))
    fakes.png(root / "ADEChallengeData2016" / "annotations" / split_dir / f"ADE_{k:08d}.png",
              np.full((12, 12), 1 + k, np.uint8))


def _truncate(path, keep=0.5):
  data_bytes = path.read_bytes()
  path.write_bytes(data_bytes[:int(len(data_bytes) * keep)])
  return path


@pytest.mark.parametrize("fmt,reader", [("JPEG", _common.read_rgb), ("PNG", _common.read_rgb),
                                        ("PNG", _common.read_label_png)])
def test_readers_name_the_file(tmp_path, fmt, reader):
  path = tmp_path / f"x.{fmt.lower()}"
  array = np.random.default_rng(0).integers(0, 256, (32, 32, 3) if reader is _common.read_rgb else (32, 32),
                                             dtype=np.uint8)
  Image.fromarray(array).save(path, format=fmt)
  assert reader(path).shape[:2] == (32, 32)
  _truncate(path)
  with pytest.raises(_common.UnreadableFileError, match=rf"cannot decode {path} \(OSError: .*truncated"):
    reader(path)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  with pytest.raises(_common.UnreadableFileError, match=r"cannot decode \d+ bytes of image data"):
    reader(buffer.getvalue()[:200])


def test_truncated_training_image_names_file_dataset_and_remedy(tmp_path, fakes):
  _ade20k(tmp_path, fakes, "training", 6)
  bad = _truncate(tmp_path / "ADEChallengeData2016" / "images" / "training" / "ADE_00000003.jpg")
  it = data.create_iterator("ade20k", "train", global_batch_size=2, seed=0, train=True, image_size=8,
                            data_dir=str(tmp_path), num_threads=2, process_index=0, process_count=1)
  try:
    with pytest.raises(data.DataFileError) as info:
      for _ in range(6):   # one epoch: every example is read once
        next(it)
  finally:
    it.close()
  message = str(info.value)
  assert f"cannot decode {bad}" in message
  assert "dataset 'ade20k', split 'train', example 3" in message
  assert "damaged or truncated" in message and "re-extract" in message
  assert "dense_jax.data.real.ade20k" in message and "\n" not in message


def test_truncated_label_png_in_the_evaluation_split_fails_when_the_iterator_is_made(tmp_path, fakes):
  # Evaluation reads its first example while it is set up (the padding template): the trainer's checks
  # before compiling therefore see a damaged first validation example.
  _ade20k(tmp_path, fakes, "validation", 2)
  bad = _truncate(tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_00000000.png")
  with pytest.raises(data.DataFileError, match=rf"dataset 'ade20k', split 'validation', example 0: .*cannot "
                                               rf"decode {bad}"):
    data.create_iterator("ade20k", "validation", global_batch_size=2, seed=0, train=False, image_size=8,
                         data_dir=str(tmp_path), process_index=0, process_count=1)


def test_a_missing_file_is_called_missing(tmp_path, fakes):
  _ade20k(tmp_path, fakes, "validation", 2)
  (tmp_path / "ADEChallengeData2016" / "images" / "validation" / "ADE_00000001.jpg").unlink()
  it = data.create_iterator("ade20k", "validation", global_batch_size=1, seed=0, train=False, image_size=8,
                            data_dir=str(tmp_path), process_index=0, process_count=1)
  try:
    with pytest.raises(data.DataFileError, match=r"example 1: .*ADE_00000001.jpg.*The file is missing"):
      list(it)
  finally:
    it.close()


def test_truncated_jpeg_in_the_voc_tar_is_named_while_preparing(tmp_path, fakes):
  import tarfile

  from dense_jax.data.real import voc
  from tests.data.real.test_voc import _write_voc
  _write_voc(tmp_path, fakes, train=["2007_000032", "2007_000005"], val=["2008_000001"])
  _truncate(tmp_path / "stage" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000032.jpg")
  with tarfile.open(tmp_path / voc.TAR_NAME, "w") as tar:
    tar.add(tmp_path / "stage" / "VOCdevkit", arcname="VOCdevkit")
  with pytest.raises(_common.UnreadableFileError,
                     match=r"voc2012: member \.\.\./VOC2012/JPEGImages/2007_000032\.jpg of "
                           r".*VOCtrainval_11-May-2012\.tar cannot be decoded "
                           r".*download VOCtrainval_11-May-2012\.tar again"):
    data.get_source("voc2012", "train", data_dir=str(tmp_path))
