"""COCO 2017 panoptic alone ('coco2017_panoptic'): images + panoptic PNGs, no instance or keypoint files.

Where to get the files (download them yourself): https://cocodataset.org/#download
  train2017.zip, val2017.zip, panoptic_annotations_trainval2017.zip

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/coco2017`, else `~/dense_jax_data/coco2017`,
shared with 'coco2017'):
  train2017/000000000009.jpg ...   val2017/000000000139.jpg ...
  annotations/panoptic_{train,val}2017.json
  annotations/panoptic_{train,val}2017/<image>.png   (unzip the panoptic_*2017.zip found inside
                                                      annotations/ where it lies)

Splits: train = train2017 (118287 images), validation = val2017 (5000), ordered by image id, from the
panoptic JSON's "images"; an image without an annotation entry is all void.

Labels (see `dense_jax.data.real._panoptic`): the PNG's ids (id = R + 256 G + 256^2 B) become `panoptic`
1..S-1 in segments_info order, 0 = void; `segment_classes` / `segment_is_thing` (length `max_segments`,
default 256) give each id's class in the contiguous numbering of 'coco2017' (`coco.CONTIGUOUS`: things
1..80, stuff 81..133, 0 unused); `semantic` the same classes per pixel, 255 where unlabelled. Crowd
segments are void in `panoptic` and keep their class in `semantic`. An image with more segments than fit
keeps the first, voids the rest, and is counted in `num_truncated` with a warning.
Bad input: see `_panoptic` (as panopticapi where it has a rule, else BadLabelError); an image of another
size than the JSON says, or a truncated JSON, raises naming the file.
The same example as 'coco2017' minus its instance and keypoint keys, with a fraction of its start-up
cost (the instances JSON is not parsed).
"""

from __future__ import annotations

import numpy as np

from dense_jax.data.real import _common, coco
from dense_jax.data.sources import DatasetInfo, register_source

_SUBSETS = {"train": "train2017", "validation": "val2017"}
KEYS = ("image", "semantic", "panoptic", "segment_classes", "segment_is_thing")

INFO = DatasetInfo(
    name="coco2017_panoptic", num_classes=len(coco.CLASS_NAMES), class_names=coco.CLASS_NAMES, keys=KEYS,
    splits=("train", "validation"), thing_classes=tuple(range(1, coco.NUM_THINGS + 1)),
    description=("COCO 2017 panoptic (80 things + 53 stuff), 118287 train / 5000 val. Put train2017/, "
                 "val2017/ and annotations/panoptic_* (cocodataset.org) in $DENSE_JAX_DATA_DIR/coco2017."))


class CocoPanopticSource(coco.PanopticLabels):
  """Random access to COCO 2017 panoptic examples with the keys `KEYS` (module docstring)."""

  name = "coco2017_panoptic"

  def __init__(self, split: str, data_dir=None, *, max_segments: int = 256):
    root, sub = _common.resolve_data_dir("coco2017", data_dir), _SUBSETS[split]
    what = "the extracted panoptic_annotations_trainval2017.zip, with its inner panoptic_*2017.zip unzipped"

    def require(rel, what):
      return _common.require(root / rel, what, "coco2017_panoptic", __name__)

    self._image_dir = require(sub, f"the extracted {sub}.zip")
    self._png_dir = require(f"annotations/panoptic_{sub}", what)
    json_path = require(f"annotations/panoptic_{sub}.json", what)
    super().__init__(self.name, max_segments, split, json_path, __name__)
    data = self._files.load_json(json_path, ("images", "annotations"))
    self._images = sorted(data["images"], key=lambda image: image["id"])
    self._annotations = {a["image_id"]: a for a in data["annotations"]}

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    info = self._images[index]
    h, w = info["height"], info["width"]
    example = {"image": self._files.read(_common.read_rgb, self._image_dir / info["file_name"],
                                         f"image id {info['id']}")}
    if example["image"].shape[:2] != (h, w):
      raise self._files.bad_label(self._image_dir / info["file_name"], f"image id {info['id']}",
                                  f"the size {(h, w)} that {self._json_file} gives", example["image"].shape[:2])
    example.update(self.annotation_labels(self._annotations.get(info["id"]), self._png_dir, info["id"], (h, w)))
    return example


make_source = CocoPanopticSource

register_source(INFO, make_source)
