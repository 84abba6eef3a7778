"""PASCAL VOC 2012 semantic segmentation ('voc2012') and its SBD-augmented train set ('voc2012_sbd').

Where to get the files (download them yourself; nothing is fetched here):
  VOC 2012  http://host.robots.ox.ac.uk/pascal/VOC/voc2012/  ->  VOCtrainval_11-May-2012.tar (1.9 GB)
  SBD       http://home.bharathh.info/pubs/codes/SBD/download.html  ->  benchmark.tgz (1.4 GB)

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/voc2012`, else `~/dense_jax_data/voc2012`;
both names share it so the tar is stored once):
  VOCtrainval_11-May-2012.tar            the official tar, as downloaded (an extracted
                                          VOCdevkit/VOC2012/ folder is read instead when present)
  benchmark_RELEASE/dataset/cls/*.mat    only for 'voc2012_sbd': `tar xzf benchmark.tgz -C <data_dir>`
  benchmark_RELEASE/dataset/train.txt, val.txt
  tfds/                                   written on first use: the prepared TFDS dataset (array_record)

The first `get_source` prepares the TFDS dataset `voc2012_segmentation` (this module's builder) from the
files above, a few minutes on one core; later calls read it. On a multi-host run prepare it once
beforehand (one process calling `get_source`), since concurrent preparation races.

Splits: 'voc2012' train = the 1464 images of ImageSets/Segmentation/train.txt, validation = the 1449 of
val.txt. 'voc2012_sbd' train = 'train_aug', the 10582 images of (VOC train | SBD train | SBD val) - VOC
val; validation = the same 1449 VOC val images. For train_aug images that have a VOC label PNG that label
is used (it is finer and marks object boundaries), the others take SBD's `GTcls.Segmentation`, which has
no boundary band. Examples come in the sorted order of the image ids.

Labels (`semantic`, int32): the palette index of SegmentationClass/<id>.png, 0 = background,
1..20 = the classes of `CLASS_NAMES` in order; 255 (the white boundary band and 'difficult' regions) is
kept as the ignore label.
Bad input, found while preparing (VOCevalseg would silently drop ids outside its histogram): a label
PNG or SBD .mat of another size than its image, with ids outside 0..20 and 255 (SBD: 0..20), or not a
single-channel PNG, raises BadLabelError; a damaged JPEG, PNG or .mat UnreadableFileError; each names
the file (the tar member) and the image id.
"""

from __future__ import annotations

import functools
import io
import tarfile

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from dense_jax import paths
from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo, register_source

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor")
TAR_NAME = "VOCtrainval_11-May-2012.tar"
EXTRACTED_DIR = "VOCdevkit/VOC2012"
SBD_DIR = "benchmark_RELEASE/dataset"
_DOC = "dense_jax.data.real.voc"
_INSTRUCTIONS = __doc__

_COMMON = dict(num_classes=21, class_names=CLASS_NAMES, keys=("image", "semantic"),
               splits=("train", "validation"), thing_classes=tuple(range(1, 21)))
INFO = DatasetInfo(name="voc2012", **_COMMON, description=(
    f"PASCAL VOC 2012 segmentation, 1464 train / 1449 val. Put {TAR_NAME} (from "
    "host.robots.ox.ac.uk/pascal/VOC/voc2012) in $DENSE_JAX_DATA_DIR/voc2012."))
SBD_INFO = DatasetInfo(name="voc2012_sbd", **_COMMON, description=(
    f"VOC 2012 with the SBD-augmented train set (train_aug, 10582 images) and VOC val. Put {TAR_NAME} "
    "and the extracted benchmark_RELEASE/ of SBD's benchmark.tgz in $DENSE_JAX_DATA_DIR/voc2012."))


class _VocFiles:
  """Reads VOC2012 files by relative path ('JPEGImages/x.jpg') from the tar, or from an extracted folder."""

  def __init__(self, root: paths.Path):
    self._dir = root / EXTRACTED_DIR
    self._tar = self._members = None
    if not self._dir.is_dir():
      self._path = _common.require(root / TAR_NAME, f"the official {TAR_NAME}", "voc2012", _DOC)
      # A remote tar is read through a file object (random access: epath's files seek).
      self._tar = (tarfile.open(fileobj=self._path.open("rb")) if paths.is_remote(self._path)
                   else tarfile.open(self._path))
      # Member names look like 'VOCdevkit/VOC2012/JPEGImages/2007_000027.jpg'; index them by the part
      # after 'VOC2012/' so reads are random access (the tar is not compressed).
      self._members = {m.name.split("VOC2012/", 1)[1]: m for m in self._tar.getmembers()
                       if m.isfile() and "VOC2012/" in m.name}

  def where(self, rel: str) -> str:
    """Where file `rel` is read from, for error messages."""
    return str(self._dir / rel) if self._tar is None else f"member .../VOC2012/{rel} of {self._path}"

  def exists(self, rel: str) -> bool:
    return (self._dir / rel).is_file() if self._tar is None else rel in self._members

  def read(self, rel: str) -> bytes:
    if self._tar is None:
      return _common.require(self._dir / rel, "the extracted VOC2012 files", "voc2012", _DOC).read_bytes()
    if rel not in self._members:
      raise _common.MissingDataError(f"voc2012: {self._path} has no member .../VOC2012/{rel}; is it the "
                                     f"official {TAR_NAME}?")
    return self._tar.extractfile(self._members[rel]).read()

  def ids(self, split: str) -> list[str]:
    return self.read(f"ImageSets/Segmentation/{split}.txt").decode().split()


def _read_ids(path: paths.Path) -> set[str]:
  return set(_common.require(path, "the SBD image list (extract benchmark.tgz)", "voc2012_sbd",
                             _DOC).read_text().split())


class Voc2012Segmentation(tfds.core.GeneratorBasedBuilder):
  """VOC 2012 segmentation from the official tar in the manual directory (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="segmentation", description="VOC 2012 train (1464) and val (1449)."),
      tfds.core.BuilderConfig(name="train_aug", description=(
          "train = VOC train + SBD train + SBD val - VOC val (10582); validation = VOC val (1449).")),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image_id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            # Class index per pixel, 255 = boundary / ignore; stored as a grey PNG, not the palette one.
            "segmentation": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        }),
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        metadata=tfds.core.MetadataDict(class_names=list(CLASS_NAMES), ignore_label=255),
        disable_shuffling=True,  # keep the sorted id order: reproducible evaluation, findable examples
    )

  def _split_generators(self, dl_manager):
    root = paths.as_path(dl_manager.manual_dir)
    files = _VocFiles(root)
    train, val = files.ids("train"), files.ids("val")
    if self.builder_config.name == "train_aug":
      sbd = _read_ids(root / SBD_DIR / "train.txt") | _read_ids(root / SBD_DIR / "val.txt")
      train = (set(train) | sbd) - set(val)
    return {"train": self._generate_examples(root, sorted(train), "train"),
            "validation": self._generate_examples(root, sorted(val), "validation")}

  def _generate_examples(self, root: paths.Path, ids: list[str], split: str):
    files = _VocFiles(root)
    name = "voc2012_sbd" if self.builder_config.name == "train_aug" else "voc2012"
    checks = _common.Files(name, split, _DOC)
    for image_id in ids:
      jpeg = files.read(f"JPEGImages/{image_id}.jpg")
      # Keep the original bytes unless it is not plain RGB, but decode it all once here: a truncated
      # JPEG is then named now, not by TensorFlow's decoder at training time.
      rgb = _decoded(files, f"JPEGImages/{image_id}.jpg", _common.read_rgb)
      with Image.open(io.BytesIO(jpeg)) as im:
        image = jpeg if im.mode == "RGB" else rgb
      example = f"image id {image_id}"
      if files.exists(f"SegmentationClass/{image_id}.png"):
        rel = f"SegmentationClass/{image_id}.png"
        label = checks.read(lambda _, rel=rel: _decoded(files, rel, _common.read_label_png), files.where(rel), example,
                            _REDOWNLOAD)
        checks.check_label(label, rgb.shape, _VALID, files.where(rel), example,
                           "VOC class ids (0..20, 255 = boundary / difficult)", _REDOWNLOAD)
      else:
        mat_path = _common.require(root / SBD_DIR / "cls" / f"{image_id}.mat", "SBD's cls/*.mat files",
                                   "voc2012_sbd", _DOC)
        try:
          label = np.asarray(scipy.io.loadmat(io.BytesIO(mat_path.read_bytes()), squeeze_me=True,
                                              struct_as_record=False)["GTcls"].Segmentation)
        except (ValueError, TypeError, OSError, EOFError, KeyError, AttributeError) as e:
          raise checks.unreadable(mat_path, example, e, "extract SBD's benchmark.tgz again and rerun: the "
                                  f"preparation starts over (see {_DOC})") from e
        checks.check_label(label, rgb.shape, range(21), mat_path, example, "SBD class ids (GTcls.Segmentation)",
                           "extract SBD's benchmark.tgz again and rerun: the preparation starts over")
      yield image_id, {"image_id": image_id, "image": image,
                       "segmentation": np.asarray(label, np.uint8)[..., None]}


_VALID = tuple(range(21)) + (255,)
_REDOWNLOAD = (f"download {TAR_NAME} again (or re-extract it) and rerun: the preparation starts over "
               f"(see {_DOC})")


def _decoded(files: _VocFiles, rel: str, reader):
  """`reader(bytes of rel)`, or UnreadableFileError naming the file and what to do."""
  try:
    return reader(files.read(rel))
  except _common.BadLabelError:
    raise
  except _common.UnreadableFileError as e:
    raise _common.UnreadableFileError(
        f"voc2012: {files.where(rel)} cannot be decoded ({e.__cause__ or e}): the file is damaged or "
        f"truncated; download {TAR_NAME} again (or re-extract it) and rerun: the preparation starts "
        f"over (see {_DOC})") from e


class VocSource:
  """Random access to a prepared split: {'image': uint8 (H, W, 3), 'semantic': int32 (H, W)}."""

  def __init__(self, split: str, data_dir=None, *, config: str = "segmentation"):
    root = _common.resolve_data_dir("voc2012", data_dir)
    builder = Voc2012Segmentation(config=config, data_dir=str(root / "tfds"), file_format="array_record")
    if not builder.is_prepared():
      if not (root / EXTRACTED_DIR).is_dir():
        _common.require(root / TAR_NAME, f"the official {TAR_NAME}", "voc2012", _DOC)
      if config == "train_aug":
        _common.require(root / SBD_DIR / "cls", "the extracted SBD benchmark.tgz (benchmark_RELEASE/)",
                        "voc2012_sbd", _DOC)
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(root), try_download_gcs=False))
    self._data = builder.as_data_source(split=split)

  def __len__(self) -> int:
    return len(self._data)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    example = self._data[index]
    return {"image": np.asarray(example["image"], np.uint8),
            "semantic": np.asarray(example["segmentation"][..., 0], np.int32)}


make_source = functools.partial(VocSource, config="segmentation")
make_sbd_source = functools.partial(VocSource, config="train_aug")

register_source(INFO, make_source)
register_source(SBD_INFO, make_sbd_source)
