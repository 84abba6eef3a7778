"""ADE20K as the MIT Scene Parsing benchmark, SceneParse150 ('ade20k'), read from the extracted files.

Where to get the files (download them yourself):
  http://sceneparsing.csail.mit.edu/  ->  ADEChallengeData2016.zip (923 MB)

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/ade20k`, else `~/dense_jax_data/ade20k`):
  ADEChallengeData2016/images/training/ADE_train_00000001.jpg ...      (20210 images)
  ADEChallengeData2016/images/validation/ADE_val_00000001.jpg ...      (2000 images)
  ADEChallengeData2016/annotations/{training,validation}/<same stem>.png
i.e. `unzip ADEChallengeData2016.zip -d <data_dir>`. The TFDS catalog's `scene_parse150` downloads the
zip itself, so it cannot run offline; this source reads the files directly (nothing to prepare).

Splits: train = images/training, validation = images/validation, in sorted file-name order.
Labels (`semantic`, int32): the annotation PNG holds 0 = "other/unlabelled" and 1..150 = the classes of
objectInfo150; we shift to 0..149 (`CLASS_NAMES[k]` is PNG value k + 1) and map 0 to the ignore label
255, as the benchmark's evaluation ignores it (mmsegmentation's `reduce_zero_label`).
Bad input: an annotation PNG of another size than its image, with values above 150 (the benchmark's
evaluation would drop them from its histogram unnoticed) or not single-channel raises BadLabelError
naming the file; a damaged image or PNG raises UnreadableFileError.
"""

from __future__ import annotations

import numpy as np

from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo, register_source

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column",
    "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
ROOT = "ADEChallengeData2016"
_SUBDIR = {"train": "training", "validation": "validation"}
_TABLE = _common.lookup_table({k: k - 1 for k in range(1, 151)})  # 0 -> 255
_VALID = range(151)

INFO = DatasetInfo(
    name="ade20k", num_classes=150, class_names=CLASS_NAMES, keys=("image", "semantic"),
    splits=("train", "validation"),
    description=("SceneParse150 (ADE20K challenge 2016), 20210 train / 2000 val, 150 classes. Unzip "
                 "ADEChallengeData2016.zip (sceneparsing.csail.mit.edu) into $DENSE_JAX_DATA_DIR/ade20k."))


class Ade20kSource:
  """Random access to a split: {'image': uint8 (H, W, 3), 'semantic': int32 (H, W)}."""

  def __init__(self, split: str, data_dir=None):
    root = _common.resolve_data_dir("ade20k", data_dir)
    self._files = _common.Files("ade20k", split, __name__)
    what = "the extracted ADEChallengeData2016.zip"
    self._images = _common.require(root / ROOT / "images" / _SUBDIR[split], what, "ade20k", __name__)
    self._labels = _common.require(root / ROOT / "annotations" / _SUBDIR[split], what, "ade20k", __name__)
    self._stems = sorted(p.stem for p in self._labels.glob("*.png"))
    if not self._stems:
      raise _common.MissingDataError(f"ade20k: no annotation PNGs in {self._labels}. Put there: {what}.")

  def __len__(self) -> int:
    return len(self._stems)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    stem = self._stems[index]
    image = self._files.read(_common.read_rgb, self._images / f"{stem}.jpg", f"example {stem}")
    label = self._files.read(_common.read_label_png, self._labels / f"{stem}.png", f"example {stem}")
    self._files.check_label(label, image.shape, _VALID, self._labels / f"{stem}.png", f"example {stem}",
                            "objectInfo150 values (0 = other)")
    return {"image": image, "semantic": _TABLE[label]}


make_source = Ade20kSource

register_source(INFO, make_source)
