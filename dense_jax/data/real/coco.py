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
"""

from __future__ import annotations

import collections
import json
import logging

import numpy as np
from pycocotools import mask as mask_utils

from dense_jax import paths
from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo

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
  """A COCO `segmentation` (polygons, uncompressed or compressed RLE) -> uint8 (height, width) mask."""
  if isinstance(segmentation, list):
    if not segmentation:
      return np.zeros((height, width), np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
  elif isinstance(segmentation.get("counts"), list):
    rle = mask_utils.frPyObjects(segmentation, height, width)
  else:
    rle = segmentation
  return mask_utils.decode(rle).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
  """COCO panoptic PNG colours -> segment ids: id = R + 256 G + 256^2 B."""
  rgb = rgb.astype(np.int32)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _load_json(path) -> dict:
  with paths.as_path(path).open() as f:
    return json.load(f)


class CocoSource:
  """Random access to COCO 2017 examples with the keys listed in the module docstring."""

  def __init__(self, split: str, data_dir=None, *, panoptic: bool = True, max_instances: int = 100,
               max_segments: int = 256):
    if max_instances < 1 or max_segments < 2:
      raise ValueError(f"max_instances >= 1 and max_segments >= 2 expected, got {max_instances}, {max_segments}")
    root, sub = _common.resolve_data_dir("coco2017", data_dir), _SUBSETS[split]
    what = "the extracted annotations_trainval2017.zip"

    def require(rel, what):
      return _common.require(root / rel, what, "coco2017", __name__)

    self._image_dir = require(sub, f"the extracted {sub}.zip")
    instances = _load_json(require(f"annotations/instances_{sub}.json", what))
    keypoints = _load_json(require(f"annotations/person_keypoints_{sub}.json", what))
    self._images = sorted(instances["images"], key=lambda image: image["id"])
    self._annotations = collections.defaultdict(list)
    for annotation in instances["annotations"]:
      self._category(annotation["category_id"])
      self._annotations[annotation["image_id"]].append(annotation)
    self._keypoints = {a["id"]: a["keypoints"] for a in keypoints["annotations"] if "keypoints" in a}
    self._panoptic = self._panoptic_dir = None
    if panoptic:
      what = "the extracted panoptic_annotations_trainval2017.zip, with its inner panoptic_*2017.zip unzipped"
      self._panoptic_dir = require(f"annotations/panoptic_{sub}", what)
      panoptic_json = _load_json(require(f"annotations/panoptic_{sub}.json", what))
      self._panoptic = {a["image_id"]: a for a in panoptic_json["annotations"]}
    self.max_instances, self.max_segments = max_instances, max_segments
    self.num_truncated = 0  # examples that had more instances or segments than the padding holds

  @staticmethod
  def _category(coco_id: int) -> int:
    if coco_id not in CONTIGUOUS:
      raise ValueError(f"coco2017: category_id expected one of COCO 2017's ids (see CATEGORIES), got {coco_id}")
    return CONTIGUOUS[coco_id]

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
    example = {"image": _common.read_rgb(self._image_dir / image_info["file_name"])}
    if example["image"].shape[:2] != (h, w):
      raise ValueError(f"coco2017: {image_info['file_name']} is {example['image'].shape[:2]}, json says {(h, w)}")
    annotations = self._annotations.get(image_id, [])
    things = [a for a in annotations if not a.get("iscrowd", 0)]
    if len(things) > self.max_instances:
      self._truncated("instances", image_id, len(things), self.max_instances, "largest")
      keep = sorted(range(len(things)), key=lambda j: -things[j]["area"])[:self.max_instances]
      things = [things[j] for j in sorted(keep)]
    example.update(self._instances(things, h, w))
    example["image_id"] = np.asarray(image_id, np.int32)   # COCO's id (for results files), not the index
    if self._panoptic is not None:
      example.update(self._panoptic_labels(self._panoptic.get(image_id), h, w, image_id))
    else:
      example["semantic"] = self._semantic_from_instances(annotations, h, w)
    return example

  def _instances(self, things: list[dict], h: int, w: int) -> dict[str, np.ndarray]:
    n = self.max_instances
    out = {"masks": np.zeros((n, h, w), np.uint8), "boxes": np.zeros((n, 4), np.float32),
           "classes": np.zeros((n,), np.int32), "num_instances": np.asarray(len(things), np.int32),
           "keypoints": np.zeros((n, len(KEYPOINT_NAMES), 3), np.float32)}
    for row, annotation in enumerate(things):
      out["masks"][row] = decode_segmentation(annotation["segmentation"], h, w)
      x, y, box_w, box_h = annotation["bbox"]
      out["boxes"][row] = (y, x, y + box_h, x + box_w)
      out["classes"][row] = self._category(annotation["category_id"])
      if annotation["id"] in self._keypoints:
        out["keypoints"][row] = np.reshape(self._keypoints[annotation["id"]], (len(KEYPOINT_NAMES), 3))
    return out

  def _panoptic_labels(self, annotation: dict | None, h: int, w: int, image_id: int) -> dict[str, np.ndarray]:
    semantic, panoptic = np.full((h, w), 255, np.int32), np.zeros((h, w), np.int32)
    classes, is_thing = np.zeros((self.max_segments,), np.int32), np.zeros((self.max_segments,), np.uint8)
    if annotation is not None:
      ids = rgb_to_id(_common.read_rgb(self._panoptic_dir / annotation["file_name"]))
      # Relabel through the distinct ids present: one pass over the pixels instead of one per segment.
      present, inverse = np.unique(ids, return_inverse=True)
      semantic_of, panoptic_of = np.full(present.shape, 255, np.int32), np.zeros(present.shape, np.int32)
      segments = annotation["segments_info"]
      counted = [s for s in segments if not s.get("iscrowd", 0)]
      if len(counted) > self.max_segments - 1:
        self._truncated("panoptic segments", image_id, len(counted), self.max_segments - 1,
                        "first, the rest void")
      next_id = 1
      for segment in segments:
        cls = self._category(segment["category_id"])
        slot = np.searchsorted(present, segment["id"])
        if slot == present.size or present[slot] != segment["id"]:
          continue  # listed but not drawn
        semantic_of[slot] = cls
        if not segment.get("iscrowd", 0) and next_id < self.max_segments:
          panoptic_of[slot], classes[next_id], is_thing[next_id] = next_id, cls, cls <= NUM_THINGS
          next_id += 1
      inverse = inverse.reshape(h, w)
      semantic, panoptic = semantic_of[inverse], panoptic_of[inverse]
    return {"semantic": semantic, "panoptic": panoptic, "segment_classes": classes,
            "segment_is_thing": is_thing}

  def _semantic_from_instances(self, annotations: list[dict], h: int, w: int) -> np.ndarray:
    semantic = np.zeros((h, w), np.int32)
    crowd = np.zeros((h, w), bool)
    for annotation in sorted(annotations, key=lambda a: -a["area"]):  # small objects end on top
      mask = decode_segmentation(annotation["segmentation"], h, w).astype(bool)
      if annotation.get("iscrowd", 0):
        crowd |= mask
      else:
        semantic[mask] = self._category(annotation["category_id"])
    semantic[crowd & (semantic == 0)] = 255
    return semantic


def make_source(split: str, data_dir=None) -> CocoSource:
  return CocoSource(split, data_dir, panoptic=True)


def make_instances_source(split: str, data_dir=None) -> CocoSource:
  return CocoSource(split, data_dir, panoptic=False)
