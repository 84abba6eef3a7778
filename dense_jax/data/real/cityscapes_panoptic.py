"""Cityscapes fine panoptic ('cityscapes_panoptic'): 19 classes (11 stuff, 8 things), COCO panoptic format.

Where to get the files (registration required; download them yourself):
  https://www.cityscapes-dataset.com/downloads/  ->  leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip
The panoptic PNGs and JSON are made from gtFine by cityscapesScripts (pip install cityscapesscripts):
  python -m cityscapesscripts.preparation.createPanopticImgs --dataset-folder <dir>/gtFine
(with or without --use-train-id: categories are matched by name, so either numbering works).

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/cityscapes`, else `~/dense_jax_data/cityscapes`,
shared with 'cityscapes'), extracted:
  leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/cityscapes_panoptic_{train,val}.json            (or ..._{train,val}_trainId.json)
  gtFine/cityscapes_panoptic_{train,val}/<city>_<seq>_<frame>_gtFine_panoptic.png   (or ..._trainId/)

Splits: train (2975 images), validation (500), ordered by image id (`<city>_<seq>_<frame>`).

Labels (see `dense_jax.data.real._panoptic`): classes are the 19 train ids of 'cityscapes' (road 0 ...
bicycle 18; things person 11 ... bicycle 18). `panoptic` renumbers the segments 1..S-1 in segments_info
order, 0 = void (the classes that are not evaluated and unlabelled pixels); `segment_classes`,
`segment_is_thing` have length `max_segments` (default 256); `semantic` is 255 where void. Crowd
segments (groups of people or cars labelled without an instance id) are void in `panoptic` and keep
their class in `semantic`.
Bad input: see `_panoptic` (as panopticapi where it has a rule, else BadLabelError); an image of another
size than the JSON says, or a truncated JSON, raises naming the file.
"""

from __future__ import annotations

import numpy as np

from dense_jax.data.real import _common, _panoptic, cityscapes
from dense_jax.data.sources import DatasetInfo, register_source

_SUBSETS = {"train": "train", "validation": "val"}
KEYS = ("image", "semantic", "panoptic", "segment_classes", "segment_is_thing")
THING_CLASSES = tuple(range(11, 19))
_TRAIN_ID_OF_NAME = {name: k for k, name in enumerate(cityscapes.CLASS_NAMES)}

INFO = DatasetInfo(
    name="cityscapes_panoptic", num_classes=19, class_names=cityscapes.CLASS_NAMES, keys=KEYS,
    splits=("train", "validation"), thing_classes=THING_CLASSES, image_size=(1024, 2048),
    description=("Cityscapes gtFine panoptic, 19 classes (8 things), 2975 train / 500 val at 1024x2048. Put "
                 "leftImg8bit/ and gtFine/ with cityscapesScripts' panoptic files in "
                 "$DENSE_JAX_DATA_DIR/cityscapes."))


class CityscapesPanopticSource(_panoptic.PanopticPngSource):
  """Random access to a split with the keys `KEYS` (module docstring)."""

  name = "cityscapes_panoptic"

  def __init__(self, split: str, data_dir=None, *, max_segments: int = 256):
    root, sub = _common.resolve_data_dir("cityscapes", data_dir), _SUBSETS[split]
    self._image_dir = _common.require(root / "leftImg8bit" / sub, "the extracted leftImg8bit_trainvaltest.zip",
                                      "cityscapes_panoptic", __name__)
    stem = root / "gtFine" / f"cityscapes_panoptic_{sub}"
    train_id_stem = root / "gtFine" / f"cityscapes_panoptic_{sub}_trainId"   # made with --use-train-id
    if not stem.with_suffix(".json").exists() and train_id_stem.with_suffix(".json").exists():
      stem = train_id_stem
    what = "the output of cityscapesScripts' createPanopticImgs run on gtFine"
    json_path = _common.require(stem.with_suffix(".json"), what, "cityscapes_panoptic", __name__)
    self._png_dir = _common.require(stem, what, "cityscapes_panoptic", __name__)
    super().__init__(max_segments, split, json_path, __name__)
    data = self._files.load_json(json_path, ("images", "annotations"))
    self._class_of_category = {}
    for category in data.get("categories", []):
      if category["name"] not in _TRAIN_ID_OF_NAME:
        raise self._files.bad_label(json_path, None, f"categories among the 19 evaluated classes "
                                    f"{cityscapes.CLASS_NAMES}", repr(category["name"]),
                                    "rerun cityscapesScripts' createPanopticImgs on the official gtFine")
      self._class_of_category[category["id"]] = _TRAIN_ID_OF_NAME[category["name"]]
    if not self._class_of_category:  # no categories listed: the script's default labelIds
      self._class_of_category = dict(cityscapes.LABEL_TO_TRAIN_ID)
    self._images = sorted(data["images"], key=lambda image: str(image["id"]))
    self._annotations = {a["image_id"]: a for a in data["annotations"]}

  def class_of(self, category_id: int) -> int:
    if category_id not in self._class_of_category:
      raise ValueError(f"cityscapes_panoptic: category_id expected one of {sorted(self._class_of_category)}, "
                       f"got {category_id}")
    return self._class_of_category[category_id]

  def is_thing(self, cls: int) -> bool:
    return cls in THING_CLASSES

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    info = self._images[index]
    city = info["file_name"].split("_")[0]
    example = {"image": self._files.read(_common.read_rgb, self._image_dir / city / info["file_name"],
                                               f"image id {info['id']}")}
    h, w = example["image"].shape[:2]
    if (info.get("height"), info.get("width")) not in ((h, w), (None, None)):
      raise self._files.bad_label(self._image_dir / city / info["file_name"], f"image id {info['id']}",
                                  f"the size {(info['height'], info['width'])} that {self._json_file} gives",
                                  (h, w))
    example.update(self.annotation_labels(self._annotations.get(info["id"]), self._png_dir, info["id"], (h, w)))
    return example


make_source = CityscapesPanopticSource

register_source(INFO, make_source)
