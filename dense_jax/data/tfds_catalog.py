"""TFDS catalog datasets as sources: `config.dataset.name = 'tfds:<name>[:<version>]'`.

Usage (the dataset must already be prepared, as ArrayRecord, in the TFDS data dir):

    python -m dense_jax.train --config experiments/<experiment>.py --workdir runs/pets \
        --config.dataset.name=tfds:oxford_iiit_pet \
        --config.dataset.data_dir=gs://bucket/tensorflow_datasets --config.dataset.image_size=256

    get_source('tfds:coco/2017_panoptic:1.1.0', 'validation', data_dir='~/tensorflow_datasets')

`data_dir` is passed to TFDS as it is (a local folder or `gs://...`, which TFDS reads through
etils.epath); None = TFDS's default ($TFDS_DATA_DIR, else ~/tensorflow_datasets). Examples are read with
`tfds.data_source(...)` (ArrayRecord, random access), so the grain pipeline, its sharding and resuming
work as for every other source. Nothing is downloaded or prepared here: a dataset that is not prepared
raises `NotPreparedError` (a `DataFileError`, so the trainer exits with status 2 before compiling)
naming the dataset and the folder searched, and saying how to prepare it:

    tfds build oxford_iiit_pet --data_dir=<dir> --file_format=array_record
    # or: tfds.builder('oxford_iiit_pet', data_dir=<dir>, file_format='array_record').download_and_prepare()

A name that is not in the TFDS catalog, or one that is but is not mapped here, raises a ValueError
(`SUPPORTED` lists the mapped ones). Each dataset's features become the standard keys of
`dense_jax.data.sources` (its `DatasetInfo` says which; `image_size` is None: sizes vary or are large):

  name (our splits <- TFDS split)   mapping (TFDS builder code read: tensorflow_datasets/...)
  coco/2017_panoptic                object_detection/coco.py: image (jpeg), image/id, panoptic_image (png),
   train <- train,                  panoptic_objects {id, area, bbox, label (ClassLabel 133), is_crowd}.
   validation <- validation         ids = R + 256 G + 256^2 B (`coco.rgb_to_id`); the label index ->
                                    the category named so in the prepared files (`coco.CATEGORIES`) ->
                                    `coco.CONTIGUOUS` (things 1..80, stuff 81..133, as 'coco2017_panoptic');
                                    semantic / panoptic / segment_classes / segment_is_thing by
                                    `real._panoptic.panoptic_labels` (crowd: void in panoptic, its class
                                    in semantic). Instances = the non-crowd thing segments in file order
                                    (masks = ids == segment id, boxes = the mask's half-open extent,
                                    classes 1..80; the MAX_INSTANCES largest kept if more, with a
                                    warning). image_id = image/id (COCO's id).
  cityscapes/semantic_segmentation  datasets/cityscapes/cityscapes_dataset_builder.py: image_left,
   train, validation (test has no   segmentation_label (labelIds, (H, W, 1)) -> the 19 train ids, 255
   public labels: not offered)      elsewhere (`real.cityscapes.to_train_ids`, as 'cityscapes').
  scene_parse150                    datasets/scene_parse150/scene_parse150_dataset_builder.py: image,
   train <- train,                  annotation = the Places Challenge 2017 *instance* masks
   validation <- test (ADE's val)   (annotations_instance/*.png): R = category 1..100 of
                                    instanceInfo100 (`INSTANCE_CATEGORIES`), G = instance id, 0 = none.
                                    semantic: the category's index in 'ade20k''s 150 classes
                                    (`ade20k.CLASS_NAMES`), 255 elsewhere, so the stuff classes (wall,
                                    sky, floor, ...) and ADE's "other" are ignored: these files do not
                                    label them (the full 150-class benchmark: the 'ade20k' source).
                                    Instances: one per non-zero G, class = its R's class.
  nyu_depth_v2                      datasets/nyu_depth_v2/nyu_depth_v2_dataset_builder.py: image
   train <- train (47584 frames),   (480, 640, 3), depth float16 metres -> float32, non-finite or <= 0
   validation <- validation (654)   -> 0 (invalid). No semantic labels (num_classes 0): FastDepth's
                                    release, not the 1449 labelled frames of 'nyu_depth_v2'.
  oxford_iiit_pet                   datasets/oxford_iiit_pet/oxford_iiit_pet_dataset_builder.py: image,
   train <- train (trainval),       segmentation_mask (the trimap, (H, W, 1)): 1 pet -> 1,
   validation <- test               2 background -> 0, 3 border -> 255 (ignored), as 'oxford_iiit_pet'.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Callable

import numpy as np

from dense_jax.data import sources
from dense_jax.data.pipeline import DataFileError
from dense_jax.data.real import _common, _panoptic, ade20k, cityscapes, coco, coco_panoptic, oxford_iiit_pet

PREFIX = "tfds:"
MAX_INSTANCES = 100
MAX_SEGMENTS = 256
_LOG = logging.getLogger(__name__)
_PANOPTIC_FILES = _common.Files("tfds:coco/2017_panoptic", "prepared", __name__)

# Category ids 1..100 of the Places Challenge 2017 instance masks (instanceInfo100_train.txt of
# github.com/CSAILVision/placeschallenge), by name; all are among ADE20K's 150 scene-parsing classes.
INSTANCE_CATEGORIES = (
    "bed", "windowpane", "cabinet", "person", "door", "table", "curtain", "chair", "car", "painting", "sofa",
    "shelf", "mirror", "armchair", "seat", "fence", "desk", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "box", "column", "signboard", "chest of drawers", "counter", "sink", "fireplace",
    "refrigerator", "stairs", "case", "pool table", "pillow", "screen door", "bookcase", "coffee table",
    "toilet", "flower", "book", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "arcade machine", "bus", "towel", "light", "truck", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "apparel", "pole", "bannister", "ottoman",
    "bottle", "van", "ship", "fountain", "washer", "plaything", "stool", "barrel", "basket", "bag",
    "minibike", "oven", "ball", "food", "step", "trade name", "microwave", "pot", "animal", "bicycle",
    "dishwasher", "screen", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "plate", "monitor", "bulletin board", "radiator", "glass", "clock", "flag")
_ADE_TABLE = np.full((256,), 255, np.int32)   # R channel -> 'ade20k' class id, 255 elsewhere
_ADE_TABLE[1:len(INSTANCE_CATEGORIES) + 1] = [ade20k.CLASS_NAMES.index(n) for n in INSTANCE_CATEGORIES]
_INSTANCE_KEYS = ("masks", "boxes", "classes", "num_instances")


class NotPreparedError(DataFileError):
  """A supported TFDS dataset is not prepared (as ArrayRecord) in the data dir searched."""


# ------------------------------------------------------------------------------------------------
# Feature mappings: `mapping(record, keys) -> example` (record: tfds.data_source's numpy dict; keys: the
# keys wanted, the others may be skipped), or a class `mapping(features)` giving one (module-level, so a
# source pickles for grain's worker processes).
# ------------------------------------------------------------------------------------------------
def instances_from_ids(ids: np.ndarray, segments: list[tuple[int, int]], max_instances: int,
                       what: str) -> dict[str, np.ndarray]:
  """masks/boxes/classes/num_instances of `segments` [(id in `ids`, class)], skipping those not drawn;
  the `max_instances` largest (in order) when more, with a warning naming `what`."""
  h, w = ids.shape
  seg_ids = np.asarray([s for s, _ in segments], np.int64)
  masks = ids[None] == seg_ids[:, None, None] if segments else np.zeros((0, h, w), bool)
  areas = masks.sum((1, 2))
  keep = np.flatnonzero(areas > 0)
  if keep.size > max_instances:
    _LOG.warning("%s: %d instances, more than the %d padded rows; keeping the largest", what, keep.size,
                 max_instances)
    keep = np.sort(keep[np.argsort(-areas[keep], kind="stable")[:max_instances]])
  out = {"masks": np.zeros((max_instances, h, w), np.uint8), "boxes": np.zeros((max_instances, 4), np.float32),
         "classes": np.zeros((max_instances,), np.int32), "num_instances": np.asarray(keep.size, np.int32)}
  for row, j in enumerate(keep):
    ys, xs = np.flatnonzero(masks[j].any(1)), np.flatnonzero(masks[j].any(0))
    out["masks"][row] = masks[j]
    out["boxes"][row] = (ys[0], xs[0], ys[-1] + 1, xs[-1] + 1)
    out["classes"][row] = segments[j][1]
  return out


class _CocoPanoptic:
  """coco/2017_panoptic (module docstring)."""

  def __init__(self, features):
    names = list(features["panoptic_objects"]["label"].names)
    by_name = {name: coco_id for coco_id, name in coco.CATEGORIES}
    if len(names) != len(coco.CATEGORIES):
      raise ValueError(f"tfds:coco/2017_panoptic: expected {len(coco.CATEGORIES)} panoptic labels, the "
                       f"prepared files have {len(names)}")
    if all(name.isdigit() for name in names):   # files without label names: TFDS's order = id order
      self._coco_id = np.asarray([coco_id for coco_id, _ in coco.CATEGORIES])
    else:
      unknown = [n for n in names if n not in by_name]
      if unknown:
        raise ValueError(f"tfds:coco/2017_panoptic: label names {unknown[:5]} are not COCO 2017 panoptic "
                         f"categories (coco.CATEGORIES)")
      self._coco_id = np.asarray([by_name[n] for n in names])

  def __call__(self, record, keys):
    image_id = int(record["image/id"])
    ids = coco.rgb_to_id(record["panoptic_image"])
    objects = record["panoptic_objects"]
    segments = [{"id": int(i), "category_id": int(self._coco_id[label]), "iscrowd": int(bool(crowd))}
                for i, label, crowd in zip(objects["id"], objects["label"], objects["is_crowd"])]
    out = {"image": np.asarray(record["image"], np.uint8), "image_id": np.asarray(image_id, np.int32)}
    if ids.shape != out["image"].shape[:2]:
      raise ValueError(f"tfds:coco/2017_panoptic image {image_id}: panoptic_image is {ids.shape}, the image "
                       f"{out['image'].shape[:2]}")
    if keys & {"semantic", "panoptic", "segment_classes", "segment_is_thing"}:
      labels, dropped = _panoptic.panoptic_labels(
          ids, segments, coco.CONTIGUOUS.__getitem__, lambda cls: cls <= coco.NUM_THINGS, MAX_SEGMENTS,
          _PANOPTIC_FILES, "its panoptic_image", "its panoptic_objects", f"image id {image_id}")
      if dropped:
        _LOG.warning("tfds:coco/2017_panoptic: image %d has %d more segments than the %d padded ids; they "
                     "are void", image_id, dropped, MAX_SEGMENTS - 1)
      out.update(labels)
    if keys & set(_INSTANCE_KEYS):
      things = [(s["id"], coco.CONTIGUOUS[s["category_id"]]) for s in segments
                if not s["iscrowd"] and coco.CONTIGUOUS[s["category_id"]] <= coco.NUM_THINGS]
      out.update(instances_from_ids(ids, things, MAX_INSTANCES, f"tfds:coco/2017_panoptic image {image_id}"))
    return out


def _scene_parse150(record, keys):
  annotation = np.asarray(record["annotation"])
  category, instance = annotation[..., 0], annotation[..., 1]
  out = {"image": np.asarray(record["image"], np.uint8), "semantic": _ADE_TABLE[category]}
  if keys & set(_INSTANCE_KEYS):
    present, first = np.unique(instance.ravel(), return_index=True)   # the devkit's class: first pixel's R
    classes = _ADE_TABLE[category.ravel()[first]]
    present, classes = present[present > 0], classes[present > 0]
    out.update(instances_from_ids(instance, [(int(g), int(c)) for g, c in zip(present, classes) if c != 255],
                                  MAX_INSTANCES, "tfds:scene_parse150"))
  return out


def _cityscapes(record, keys):
  del keys
  return {"image": np.asarray(record["image_left"], np.uint8),
          "semantic": cityscapes.to_train_ids(record["segmentation_label"][..., 0])}


def _nyu_depth_v2(record, keys):
  del keys
  depth = np.asarray(record["depth"], np.float32)
  return {"image": np.asarray(record["image"], np.uint8),
          "depth": np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)}


def _oxford_iiit_pet(record, keys):
  del keys
  table = oxford_iiit_pet._TABLE   # pylint: disable=protected-access  (the 'oxford_iiit_pet' trimap mapping)
  return {"image": np.asarray(record["image"], np.uint8), "semantic": table[record["segmentation_mask"][..., 0]]}


# ------------------------------------------------------------------------------------------------
# The supported datasets.
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spec:
  builder: str                     # TFDS name/config, no version
  info: sources.DatasetInfo
  splits: dict                     # our split -> TFDS split
  mapping: Callable                # (record, keys) -> example, or a class: mapping(features) gives one
  prepare_hint: str = ""


def _info(base: sources.DatasetInfo, builder: str, keys, splits, note: str, **kw) -> sources.DatasetInfo:
  return dataclasses.replace(base, name=PREFIX + builder, keys=tuple(keys), splits=tuple(splits), image_size=None,
                             description=f"TFDS catalog `{builder}` (dense_jax.data.tfds_catalog): {note}", **kw)


_TV = {"train": "train", "validation": "validation"}
SUPPORTED: dict[str, Spec] = {s.builder: s for s in (
    Spec("coco/2017_panoptic", _info(
        coco_panoptic.INFO, "coco/2017_panoptic",
        coco_panoptic.KEYS[:2] + _INSTANCE_KEYS + ("image_id",) + coco_panoptic.KEYS[2:], _TV,
        "COCO 2017 panoptic, 133 classes in coco2017's numbering, instances from the thing segments."),
         _TV, _CocoPanoptic),
    Spec("cityscapes/semantic_segmentation", _info(
        cityscapes.INFO, "cityscapes/semantic_segmentation", ("image", "semantic"), _TV,
        "Cityscapes gtFine, 19 train ids."), _TV, _cityscapes,
         prepare_hint=(" Cityscapes needs its zips downloaded by hand (cityscapes-dataset.com): add "
                       "--manual_dir=<folder with leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip> "
                       "(or download_config=tfds.download.DownloadConfig(manual_dir=...)); the 'cityscapes' "
                       "source prepares the same files into <its data dir>/tfds.")),
    Spec("scene_parse150", _info(
        ade20k.INFO, "scene_parse150", ("image", "semantic") + _INSTANCE_KEYS, _TV,
        "ADE20K Places-2017 instance masks: 100 thing classes of ade20k's 150, stuff ignored.",
        thing_classes=tuple(sorted(int(c) for c in _ADE_TABLE[1:len(INSTANCE_CATEGORIES) + 1]))),
         {"train": "train", "validation": "test"}, _scene_parse150),
    Spec("nyu_depth_v2", sources.DatasetInfo(
        name=PREFIX + "nyu_depth_v2", num_classes=0, class_names=(), keys=("image", "depth"), splits=tuple(_TV),
        description="TFDS catalog `nyu_depth_v2` (dense_jax.data.tfds_catalog): FastDepth's NYU v2, depth (m)."),
         _TV, _nyu_depth_v2),
    Spec("oxford_iiit_pet", _info(
        oxford_iiit_pet.INFO, "oxford_iiit_pet", ("image", "semantic"), _TV,
        "Oxford-IIIT Pet trimaps: background 0, pet 1, border 255."),
         {"train": "train", "validation": "test"}, _oxford_iiit_pet),
)}


def available() -> list[str]:
  """The supported names (each also takes ':<version>')."""
  return [PREFIX + name for name in SUPPORTED]


def parse(name: str) -> tuple[Spec, str]:
  """`'tfds:<name>[:<version>]'` -> (its Spec, the TFDS name with version); ValueError if not supported."""
  if not name.startswith(PREFIX):
    raise ValueError(f"dataset: expected a name starting with {PREFIX!r}, got {name!r}")
  tfds_name = name[len(PREFIX):]
  base, _, version = tfds_name.partition(":")
  if version and not re.fullmatch(r"\d+\.\d+\.\d+", version):
    raise ValueError(f"dataset {name!r}: expected 'tfds:<name>[:<major>.<minor>.<patch>]', got version "
                     f"{version!r}")
  if base in SUPPORTED:
    return SUPPORTED[base], tfds_name
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    tfds.builder_cls(base.split("/")[0])
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"dataset {name!r}: {base.split('/')[0]!r} is not in the TFDS catalog (tfds.list_builders()); "
                     f"the TFDS datasets mapped here: {available()}") from None
  raise ValueError(f"dataset {name!r}: {base!r} is in the TFDS catalog but its features are not mapped to "
                   f"dense_jax's keys; supported: {available()} (each also as '<name>:<version>'; other "
                   f"datasets: dense_jax.data.available())")


@functools.cache
def dataset_info(name: str) -> sources.DatasetInfo:
  spec, _ = parse(name)
  return dataclasses.replace(spec.info, name=name)


def _data_dir(data_dir) -> str | None:
  if data_dir is None:
    return None
  data_dir = os.fspath(data_dir)
  return os.path.expanduser(data_dir) if data_dir.startswith("~") else data_dir


def prepared_builder(name: str, data_dir=None):
  """The TFDS builder of `name`, checked to be prepared as ArrayRecord in `data_dir` (NotPreparedError)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  spec, tfds_name = parse(name)
  data_dir = _data_dir(data_dir)
  searched = data_dir or f"{tfds.core.constants.get_default_data_dir()} (TFDS's default: $TFDS_DATA_DIR, else " \
                         "~/tensorflow_datasets)"
  shown = data_dir or "<dir>"
  how = (f"Prepare it first: `tfds build {tfds_name} --data_dir={shown} --file_format=array_record`, or in "
         f"Python tfds.builder({tfds_name!r}, data_dir={shown!r}, file_format='array_record')"
         f".download_and_prepare(); or pass --config.dataset.data_dir=<the TFDS data dir that has it>."
         + spec.prepare_hint)
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception as e:   # pylint: disable=broad-except  (e.g. a version neither on disk nor in the code)
    raise NotPreparedError(f"dataset {name!r}: TFDS cannot open {tfds_name!r} in {searched} ({e}). {how}") from e
  if not builder.is_prepared():
    raise NotPreparedError(f"dataset {name!r}: {tfds_name!r} is not prepared in {searched} (no "
                           f"{builder.data_dir}/dataset_info.json). {how}")
  file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
  if file_format != "array_record":
    raise NotPreparedError(f"dataset {name!r}: {builder.data_dir} is prepared as {file_format}, but random access "
                           f"(tfds.data_source) needs array_record. {how}")
  return builder


class TfdsCatalogSource:
  """Random access to one split of a supported TFDS dataset, mapped to the standard keys (module docstring).

  `with_keys(keys)` gives a view that returns only `keys` and skips building the others (the instance
  masks of a semantic-only run, say); the pipeline uses it for `create_iterator(keys=...)`.
  """

  def __init__(self, name: str, split: str, data_dir=None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.name, self.split = name, split
    self.info = dataset_info(name)
    spec, tfds_name = parse(name)
    if split not in spec.splits:
      raise ValueError(f"split: expected one of {list(spec.splits)} for dataset {name!r}, got {split!r}")
    builder = prepared_builder(name, data_dir)
    self._data = tfds.data_source(tfds_name, split=spec.splits[split], data_dir=_data_dir(data_dir),
                                  download=False)
    self._map = spec.mapping(builder.info.features) if isinstance(spec.mapping, type) else spec.mapping
    self.keys = self.info.keys

  def with_keys(self, keys) -> TfdsCatalogSource:
    unknown = sorted(set(keys) - set(self.info.keys))
    if unknown:
      raise ValueError(f"keys: expected a subset of {list(self.info.keys)} for {self.name!r}, got {unknown}")
    view = object.__new__(TfdsCatalogSource)
    view.__dict__.update(self.__dict__, keys=tuple(keys))
    return view

  def __len__(self) -> int:
    return len(self._data)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    example = self._map(self._data[int(index)], set(self.keys))
    return {k: example[k] for k in self.keys}

  def __repr__(self) -> str:
    return f"TfdsCatalogSource({self.name!r}, {self.split!r}, n={len(self)}, keys={self.keys})"


def entry_factory(name: str) -> tuple[sources.DatasetInfo, Callable]:
  """(info, factory(split, data_dir)) of a 'tfds:' name: the source registry's fallback
  (`dense_jax.data.sources`) for 'tfds:' names that are not registered."""
  return dataset_info(name), functools.partial(TfdsCatalogSource, name)
