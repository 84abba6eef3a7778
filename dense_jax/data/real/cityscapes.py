"""Cityscapes fine semantic segmentation ('cityscapes'), 19 train classes, through the TFDS catalog builder.

Where to get the files (registration required; download them yourself):
  https://www.cityscapes-dataset.com/downloads/  ->  leftImg8bit_trainvaltest.zip (11 GB),
                                                     gtFine_trainvaltest.zip (241 MB)

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/cityscapes`, else `~/dense_jax_data/cityscapes`):
  leftImg8bit_trainvaltest.zip   as downloaded, not extracted (leftImg8bit/{train,val,test}/<city>/*.png)
  gtFine_trainvaltest.zip        as downloaded (gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png)
  tfds/                          written on first use: the zips extracted under tfds/downloads and the
                                 prepared TFDS dataset `cityscapes/semantic_segmentation` (array_record)

The first `get_source` runs the catalog builder `tfds.builder('cityscapes/semantic_segmentation')` with
this directory as its manual directory (no network); later calls read the prepared dataset.
Splits: train (2975 images), validation (500); test labels are not public and it is not offered.

Labels (`semantic`, int32): the `labelIds` of the gtFine PNGs mapped to the 19 standard train ids of
cityscapesScripts (`LABEL_TO_TRAIN_ID`: road 7 -> 0, ..., bicycle 33 -> 18); every other id (void,
parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate) -> 255.
Bad input: a zip that cannot be extracted (truncated or damaged) raises UnreadableFileError naming it
while preparing; a label of another size than its image, or with values that are no labelId of
cityscapesScripts' labels.py (0..33, and 255 = license plate's -1 in uint8), raises BadLabelError
naming the example (its image id) when it is read.
"""

from __future__ import annotations

import zipfile

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import extractor

from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo, register_source

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# labelId -> trainId for the 19 evaluated classes (cityscapesScripts/helpers/labels.py).
LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                     25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
ZIPS = {"leftImg8bit_trainvaltest.zip": "the official leftImg8bit_trainvaltest.zip (not extracted)",
        "gtFine_trainvaltest.zip": "the official gtFine_trainvaltest.zip (not extracted)"}
BUILDER = "cityscapes/semantic_segmentation"
_TABLE = _common.lookup_table(LABEL_TO_TRAIN_ID)
_LABEL_IDS = tuple(range(34)) + (255,)   # labels.py's ids; license plate's -1 is 255 in the uint8 PNGs

INFO = DatasetInfo(
    name="cityscapes", num_classes=19, class_names=CLASS_NAMES, keys=("image", "semantic"),
    splits=("train", "validation"), thing_classes=tuple(range(11, 19)),
    description=("Cityscapes gtFine, 19 train ids, 2975 train / 500 val at 1024x2048. Put "
                 "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (cityscapes-dataset.com) in "
                 "$DENSE_JAX_DATA_DIR/cityscapes."))


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
  """Cityscapes labelIds (any integer array) -> int32 train ids 0..18, 255 elsewhere."""
  label_ids = np.asarray(label_ids)
  inside = (label_ids >= 0) & (label_ids < _TABLE.size)
  return np.where(inside, _TABLE[np.clip(label_ids, 0, _TABLE.size - 1)], 255).astype(np.int32)


class CityscapesSource:
  """Random access to a split: {'image': uint8 (1024, 2048, 3), 'semantic': int32 (1024, 2048)}."""

  def __init__(self, split: str, data_dir=None):
    root = _common.resolve_data_dir("cityscapes", data_dir)
    self._files = _common.Files("cityscapes", split, __name__)
    self._prepared = root / "tfds"
    builder = tfds.builder(BUILDER, data_dir=str(self._prepared), file_format="array_record")
    if not builder.is_prepared():
      zips = [_common.require(root / name, what, "cityscapes", __name__) for name, what in ZIPS.items()]
      try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(root), try_download_gcs=False))
      except (extractor.ExtractError, zipfile.BadZipFile) as e:
        damaged = [z for z in zips if str(z) in str(e)] or zips
        raise self._files.unreadable(
            " / ".join(map(str, damaged)), None, e,
            f"the zip is truncated or damaged: download it again from cityscapes-dataset.com (as it is, not "
            f"extracted) and rerun (see {__name__})") from e
    self._data = builder.as_data_source(split=split)

  def __len__(self) -> int:
    return len(self._data)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    example = self._data[index]
    image, label = np.asarray(example["image_left"], np.uint8), np.asarray(example["segmentation_label"])[..., 0]
    name = example.get("image_id", index)
    name = name.decode() if isinstance(name, bytes) else name
    self._files.check_label(label, image.shape, _LABEL_IDS, f"the gtFine labelIds of {name} prepared in "
                            f"{self._prepared}", f"example {index}", "labelIds",
                            f"the prepared dataset does not match the official gtFine: delete {self._prepared} "
                            f"and rerun with the official zips (see {__name__})")
    return {"image": image, "semantic": to_train_ids(label)}


make_source = CityscapesSource

register_source(INFO, make_source)
