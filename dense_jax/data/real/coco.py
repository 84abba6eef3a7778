"""COCO 2017 ('coco2017': instances + person keypoints + panoptic; 'coco2017_instances': no panoptic).

Where to get the files (download them yourself): https://cocodataset.org/#download
  train2017.zip, val2017.zip, annotations_trainval2017.zip, panoptic_annotations_trainval2017.zip

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/coco2017`, else `~/dense_jax_data/coco2017`):
  train2017/000000000009.jpg ...   val2017/000000000139.jpg ...
  annotations/instances_{train,val}2017.json
  annotations/person_keypoints_{train,val}2017.json
  annotations/panoptic_{train,val}2017.json             ('coco2017' only)
  annotations/panoptic_{train,val}2017/<image>.png      ('coco2017' only: unzip the panoptic_*2017.zip
                                                          found inside annotations/ where it lies)
The TFDS catalog's `coco` builders download the zips themselves, so they cannot run offline; this source
reads the files directly (the json files are parsed when the source is made: ~20 s and a few GB for
train; masks are decoded with pycocotools per example).

Class ids (`CATEGORIES`): COCO's category ids are sparse (things 1..90, 80 used; panoptic stuff 92..200,
53 used). We number them contiguously in id order: 0 = background, things 1..80, stuff 81..133, so an
instance's `classes` entry equals its pixels' `semantic` id; `CONTIGUOUS[coco_id]` gives the mapping.

Splits: train = train2017 (118287 images), validation = val2017 (5000), ordered by image id; images
without annotations are kept (num_instances = 0).

Instances (from instances_*.json): the non-crowd annotations of the image in file order, padded to
`max_instances` (default 100; COCO has at most 93 per image): `masks` uint8 (N, H, W) decoded from the
polygons or RLE, `boxes` float32 (N, 4) = (y, x, y + h, x + w) from the annotation's bbox, `classes`
int32 (N,) in 1..80 (0 = padding), `num_instances`. An image with more instances keeps the
`max_instances` largest (by annotation area); the source counts such images in `num_truncated` and
warns. Crowd regions are not instances.
`image_id` int32 (): the image's COCO id (the json's `id`, e.g. 139 for val2017/000000000139.jpg), so a
results file written from these examples names COCO's own images (`dense_jax.tasks.instances`).
Keypoints: `keypoints` float32 (N, 17, 3) = (x, y, visibility) in pixels, visibility 0 = not labelled,
1 = labelled but occluded, 2 = visible (COCO's own convention); rows of instances without keypoints
(every non-person) are 0. `KEYPOINT_NAMES`; `KEYPOINT_FLIP` is the index permutation a horizontal flip
applies.
Panoptic ('coco2017'): the PNG's segment ids (id = R + 256 G + 256^2 B) become `panoptic` int32 (H, W)
with values 1..S in segments_info order and 0 = void; `segment_classes` int32 (max_segments,) and
`segment_is_thing` uint8 give each id's class (index = id; entry 0 is void). Crowd segments are void
in `panoptic` (the PQ evaluation ignores them) but keep their class in `semantic`.
Semantic: 'coco2017' from the panoptic PNG (133 classes, unlabelled pixels -> 255, so id 0 is unused);
'coco2017_instances' paints the instance masks, largest first, on background 0 (81 classes) and marks
crowd pixels not covered by an instance 255.

Bad input (what pycocotools and COCO's evaluation do is not always a rule: they read a malformed
segmentation past its end, or turn it into an empty mask): a segmentation that is not polygons of an
even number (>= 6) of finite coordinates or an RLE whose `size` is the image's and whose counts cover it,
polygons or a bbox entirely outside the image, a bbox that is not 4 finite numbers with w, h >= 0, a
keypoints list that is not 17 (x, y, v >= 0) triples, an image of another size than the JSON says, an
unknown category_id, a truncated JSON: BadLabelError / UnreadableFileError naming the file, the image
and the annotation. A non-crowd annotation inside the image whose mask is empty (a sub-pixel object) or
whose bbox has zero width or height is not an instance (as mmdetection skips zero-size boxes), counted in
`num_dropped` with a warning. Panoptic: see `_panoptic`.
"""

from __future__ import annotations

import collections
import logging
import math

import numpy as np
from pycocotools import mask as mask_utils

from dense_jax.data.panoptic_format import rgb_to_id  # noqa: F401  (coco.rgb_to_id: tfds_catalog)
from dense_jax.data.real import _common, _panoptic
from dense_jax.data.sources import DatasetInfo, register_source

THING_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"),
    (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"),
    (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"),
    (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"),
    (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"),
    (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"),
    (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"),
    (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"),
    (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"))
STUFF_CATEGORIES = (
    (92, "banner"), (93, "blanket"), (95, "bridge"), (100, "cardboard"), (107, "counter"), (109, "curtain"),
    (112, "door-stuff"), (118, "floor-wood"), (119, "flower"), (122, "fruit"), (125, "gravel"),
    (128, "house"), (130, "light"), (133, "mirror-stuff"), (138, "net"), (141, "pillow"), (144, "platform"),
    (145, "playingfield"), (147, "railroad"), (148, "river"), (149, "road"), (151, "roof"), (154, "sand"),
    (155, "sea"), (156, "shelf"), (159, "snow"), (161, "stairs"), (166, "tent"), (168, "towel"),
    (171, "wall-brick"), (175, "wall-stone"), (176, "wall-tile"), (177, "wall-wood"), (178, "water-other"),
    (180, "window-blind"), (181, "window-other"), (184, "tree-merged"), (185, "fence-merged"),
    (186, "ceiling-merged"), (187, "sky-other-merged"), (188, "cabinet-merged"), (189, "table-merged"),
    (190, "floor-other-merged"), (191, "pavement-merged"), (192, "mountain-merged"), (193, "grass-merged"),
    (194, "dirt-merged"), (195, "paper-merged"), (196, "food-other-merged"), (197, "building-other-merged"),
    (198, "rock-merged"), (199, "wall-other-merged"), (200, "rug-merged"))
CATEGORIES = THING_CATEGORIES + STUFF_CATEGORIES
CONTIGUOUS = {coco_id: k + 1 for k, (coco_id, _) in enumerate(CATEGORIES)}  # 0 = background
CLASS_NAMES = ("background",) + tuple(name for _, name in CATEGORIES)
NUM_THINGS = len(THING_CATEGORIES)
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle")
KEYPOINT_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
PERSON = 1   # the contiguous class id of COCO's person (category 1), the class with keypoints
_SUBSETS = {"train": "train2017", "validation": "val2017"}
_LOG = logging.getLogger(__name__)

_INSTANCE_KEYS = ("image", "semantic", "masks", "boxes", "classes", "num_instances", "keypoints",
                  "image_id")
INFO = DatasetInfo(
    name="coco2017", num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES,
    keys=_INSTANCE_KEYS + ("panoptic", "segment_classes", "segment_is_thing"), splits=("train", "validation"),
    thing_classes=tuple(range(1, NUM_THINGS + 1)), num_keypoints=17, keypoint_flip_perm=(KEYPOINT_FLIP,),
    keypoint_classes=(PERSON,),
    description=("COCO 2017 instances, person keypoints and panoptic (80 things + 53 stuff), 118287 train / "
                 "5000 val. Put train2017/, val2017/ and annotations/ (cocodataset.org) in "
                 "$DENSE_JAX_DATA_DIR/coco2017."))
INSTANCES_INFO = DatasetInfo(
    name="coco2017_instances", num_classes=NUM_THINGS + 1, class_names=CLASS_NAMES[:NUM_THINGS + 1],
    keys=_INSTANCE_KEYS, splits=("train", "validation"), thing_classes=tuple(range(1, NUM_THINGS + 1)),
    num_keypoints=17, keypoint_flip_perm=(KEYPOINT_FLIP,), keypoint_classes=(PERSON,),
    description=("COCO 2017 instances and person keypoints; semantic = background + 80 things from the "
                 "instance masks. Put train2017/, val2017/ and annotations/ in $DENSE_JAX_DATA_DIR/coco2017."))


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
  """A COCO `segmentation` (polygons, uncompressed or compressed RLE) -> uint8 (height, width) mask.
  Raises ValueError saying what is wrong with a malformed one (pycocotools would read past its end,
  return garbage or a mask of another size)."""
  if isinstance(segmentation, list):
    if not segmentation:
      return np.zeros((height, width), np.uint8)
    for k, polygon in enumerate(segmentation):
      if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
          or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon)):
        got = (f"{len(polygon)} values" if isinstance(polygon, list) else type(polygon).__name__)
        raise ValueError(f"polygon {k}: expected an even number (>= 6) of finite x, y coordinates, got {got}"
                         f" {str(polygon)[:80]}")
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))).astype(np.uint8)
  if not isinstance(segmentation, dict) or "size" not in segmentation or "counts" not in segmentation:
    raise ValueError(f"expected a list of polygons or an RLE dict with 'size' and 'counts', got "
                     f"{str(segmentation)[:80]}")
  size, counts = list(segmentation["size"]), segmentation["counts"]
  if size != [height, width]:
    raise ValueError(f"RLE size: expected the image's [height, width] {[height, width]}, got {size}")
  if isinstance(counts, list):
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
      raise ValueError(f"RLE counts: expected non-negative ints summing to height * width = {height * width}, "
                       f"got {len(counts)} counts summing to {sum(c for c in counts if isinstance(c, (int, float)))}")
    rle = mask_utils.frPyObjects(segmentation, height, width)
  elif isinstance(counts, (str, bytes)):
    counts = counts.encode("ascii", "replace") if isinstance(counts, str) else counts
    total = _compressed_rle_total(counts)
    if total != height * width:
      raise ValueError(f"compressed RLE counts: expected runs summing to height * width = {height * width}, "
                       f"got {'undecodable counts' if total is None else total}")
    rle = {"size": size, "counts": counts}
  else:
    raise ValueError(f"RLE counts: expected a list of ints or a compressed string, got {type(counts).__name__}")
  return mask_utils.decode(rle).astype(np.uint8)


def _compressed_rle_total(counts: bytes) -> int | None:
  """The sum of the runs of a compressed RLE string (pycocotools' rleFrString), None if malformed."""
  runs, p = [], 0
  while p < len(counts):
    x, k, more = 0, 0, True
    while more:
      if p == len(counts) or not 48 <= counts[p] < 48 + 64:
        return None
      c = counts[p] - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p, k = p + 1, k + 1
      if not more and c & 0x10:
        x |= -1 << (5 * k)
    if len(runs) > 2:
      x += runs[-2]
    if x < 0:
      return None
    runs.append(x)
  return sum(runs)


class PanopticLabels(_panoptic.PanopticPngSource):
  """The panoptic keys of 'coco2017' (and, subclassed, 'coco2017_panoptic') from the panoptic PNGs."""

  def __init__(self, name: str, max_segments: int, split: str, json_file, module: str = __name__):
    self.name = name
    super().__init__(max_segments, split, json_file, module)

  def class_of(self, category_id: int) -> int:
    if category_id not in CONTIGUOUS:
      raise ValueError(f"category_id expected one of COCO 2017's ids (coco.CATEGORIES), got {category_id}")
    return CONTIGUOUS[category_id]

  def is_thing(self, cls: int) -> bool:
    return cls <= NUM_THINGS


class CocoSource:
  """Random access to COCO 2017 examples with the keys listed in the module docstring."""

  def __init__(self, split: str, data_dir=None, *, panoptic: bool = True, max_instances: int = 100,
               max_segments: int = 256):
    if max_instances < 1 or max_segments < 2:
      raise ValueError(f"max_instances >= 1 and max_segments >= 2 expected, got {max_instances}, {max_segments}")
    root, sub = _common.resolve_data_dir("coco2017", data_dir), _SUBSETS[split]
    name = "coco2017" if panoptic else "coco2017_instances"
    self._files = files = _common.Files(name, split, __name__)
    what = "the extracted annotations_trainval2017.zip"

    def require(rel, what):
      return _common.require(root / rel, what, "coco2017", __name__)

    self._image_dir = require(sub, f"the extracted {sub}.zip")
    self._json = require(f"annotations/instances_{sub}.json", what)
    self._keypoints_json = require(f"annotations/person_keypoints_{sub}.json", what)
    instances = files.load_json(self._json, ("images", "annotations"))
    keypoints = files.load_json(self._keypoints_json, ("annotations",))
    self._images = sorted(instances["images"], key=lambda image: image["id"])
    self._annotations = collections.defaultdict(list)
    for annotation in instances["annotations"]:
      if annotation.get("category_id") not in CONTIGUOUS:
        raise files.bad_label(self._json, f"image id {annotation.get('image_id')}, annotation id "
                              f"{annotation.get('id')}", "category_id one of COCO 2017's ids (coco.CATEGORIES)",
                              annotation.get("category_id"))
      self._annotations[annotation["image_id"]].append(annotation)
    self._keypoints = {a["id"]: a["keypoints"] for a in keypoints["annotations"] if "keypoints" in a}
    self._panoptic = self._panoptic_dir = None
    if panoptic:
      what = "the extracted panoptic_annotations_trainval2017.zip, with its inner panoptic_*2017.zip unzipped"
      self._panoptic_dir = require(f"annotations/panoptic_{sub}", what)
      panoptic_path = require(f"annotations/panoptic_{sub}.json", what)
      self._panoptic = {a["image_id"]: a for a in files.load_json(panoptic_path, ("annotations",))["annotations"]}
      self._panoptic_labels = PanopticLabels(name, max_segments, split, panoptic_path)
    self.max_instances, self.max_segments = max_instances, max_segments
    self.num_truncated = 0  # examples that had more instances or segments than the padding holds
    self.num_dropped = 0    # annotations that are no instance: empty mask or zero-size bbox

  @staticmethod
  def _category(coco_id: int) -> int:
    return CONTIGUOUS[coco_id]   # checked when the JSON is read

  def _truncated(self, what: str, image_id: int, count: int, limit: int, kept: str) -> None:
    self.num_truncated += 1
    _LOG.warning("coco2017: image %d has %d %s, more than the %d padded rows; keeping the %s "
                 "(%d truncated examples so far in this process)", image_id, count, what, limit, kept,
                 self.num_truncated)

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    image_info = self._images[index]
    h, w, image_id = image_info["height"], image_info["width"], image_info["id"]
    example = {"image": self._files.read(_common.read_rgb, self._image_dir / image_info["file_name"],
                                               f"image id {image_id}")}
    if example["image"].shape[:2] != (h, w):
      raise self._files.bad_label(self._image_dir / image_info["file_name"], f"image id {image_id}",
                                  f"the size {(h, w)} that {self._json} gives", example["image"].shape[:2])
    things, crowds = [], []
    for annotation in self._annotations.get(image_id, []):
      mask = self._mask(annotation, h, w, image_id)
      if mask is not None:
        (crowds if annotation.get("iscrowd", 0) else things).append((annotation, mask))
    every_thing = things
    if len(things) > self.max_instances:
      self._truncated("instances", image_id, len(things), self.max_instances, "largest")
      keep = sorted(range(len(things)), key=lambda j: -_area(*things[j]))[:self.max_instances]
      things = [things[j] for j in sorted(keep)]
    example.update(self._instances(things, h, w, image_id))
    example["image_id"] = np.asarray(image_id, np.int32)   # COCO's id (for results files), not the index
    if self._panoptic is not None:
      before = self._panoptic_labels.num_truncated
      example.update(self._panoptic_labels.annotation_labels(self._panoptic.get(image_id), self._panoptic_dir,
                                                             image_id, (h, w)))
      self.num_truncated += self._panoptic_labels.num_truncated - before
    else:
      example["semantic"] = self._semantic_from_instances(every_thing, crowds, h, w)
    return example

  def _mask(self, annotation: dict, h: int, w: int, image_id: int) -> np.ndarray | None:
    """The annotation's uint8 mask, None if it is no instance (module docstring); BadLabelError if it
    cannot be right."""
    example = f"image id {image_id}, annotation id {annotation.get('id')}"
    bbox = annotation.get("bbox")
    if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox)
        or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
      raise self._files.bad_label(self._json, example, "bbox [x, y, w, h] of finite numbers with w, h >= 0",
                                  str(bbox)[:80])
    x, y, box_w, box_h = bbox
    if x > w or y > h or x + box_w < 0 or y + box_h < 0:
      raise self._files.bad_label(self._json, example, f"a bbox that meets the {w} x {h} image", bbox)
    try:
      mask = decode_segmentation(annotation.get("segmentation"), h, w)
    except ValueError as e:
      raise self._files.bad_label(self._json, example, "a well-formed segmentation", str(e)) from None
    polygons = annotation.get("segmentation")
    if isinstance(polygons, list) and polygons:
      xs, ys = np.concatenate([p[0::2] for p in polygons]), np.concatenate([p[1::2] for p in polygons])
      if xs.max() <= 0 or ys.max() <= 0 or xs.min() >= w or ys.min() >= h:
        raise self._files.bad_label(
            self._json, example, f"polygons that meet the {w} x {h} image",
            f"x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}]")
    if annotation.get("iscrowd", 0):
      return mask
    if not mask.any() or box_w == 0 or box_h == 0:
      self.num_dropped += 1
      _LOG.warning("%s: %s in %s has %s; it is not an instance (%d dropped so far in this process)",
                   self._files.dataset, example, self._json,
                   "an empty mask" if not mask.any() else f"a zero-size bbox {bbox}", self.num_dropped)
      return None
    return mask

  def _instances(self, things: list[tuple[dict, np.ndarray]], h: int, w: int, image_id: int) -> dict[str, np.ndarray]:
    n, k = self.max_instances, len(KEYPOINT_NAMES)
    out = {"masks": np.zeros((n, h, w), np.uint8), "boxes": np.zeros((n, 4), np.float32),
           "classes": np.zeros((n,), np.int32), "num_instances": np.asarray(len(things), np.int32),
           "keypoints": np.zeros((n, k, 3), np.float32)}
    for row, (annotation, mask) in enumerate(things):
      out["masks"][row] = mask
      x, y, box_w, box_h = annotation["bbox"]
      out["boxes"][row] = (y, x, y + box_h, x + box_w)
      out["classes"][row] = self._category(annotation["category_id"])
      if annotation["id"] in self._keypoints:
        keypoints = self._keypoints[annotation["id"]]
        try:
          keypoints = np.asarray(keypoints, np.float64)
        except (TypeError, ValueError):
          keypoints = np.zeros((0,))
        if (keypoints.shape != (3 * k,) or not np.isfinite(keypoints).all()
            or not np.isin(keypoints[2::3], (0, 1, 2)).all()):
          raise self._files.bad_label(
              self._keypoints_json, f"image id {image_id}, annotation id {annotation['id']}",
              f"keypoints: {k} (x, y, v) triples of finite numbers with v in 0, 1, 2",
              str(self._keypoints[annotation["id"]])[:120])
        out["keypoints"][row] = keypoints.reshape(k, 3)
    return out

  def _semantic_from_instances(self, things, crowds, h: int, w: int) -> np.ndarray:
    semantic = np.zeros((h, w), np.int32)
    crowd = np.zeros((h, w), bool)
    for _, mask in crowds:
      crowd |= mask.astype(bool)
    for annotation, mask in sorted(things, key=lambda am: -_area(*am)):  # small objects end on top
      semantic[mask.astype(bool)] = self._category(annotation["category_id"])
    semantic[crowd & (semantic == 0)] = 255
    return semantic


def _area(annotation: dict, mask: np.ndarray) -> float:
  """The annotation's `area` in pixels; the mask's pixel count where the file has none (hand-made files)."""
  area = annotation.get("area")
  return float(area) if isinstance(area, (int, float)) else float(mask.sum())


def make_source(split: str, data_dir=None) -> CocoSource:
  return CocoSource(split, data_dir, panoptic=True)


def make_instances_source(split: str, data_dir=None) -> CocoSource:
  return CocoSource(split, data_dir, panoptic=False)

register_source(INFO, make_source)
register_source(INSTANCES_INFO, make_instances_source)
