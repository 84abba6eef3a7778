"""Registry of random-access data sources, the contract between datasets and the input pipeline.

A *source* is what `get_source(name, split, data_dir=...)` returns: an object with `__len__` and
`__getitem__(index) -> dict[str, np.ndarray]` (grain's RandomAccessDataSource protocol). Each example
is a dict with the standard keys below; a dataset provides the keys it has (listed in its
`DatasetInfo.keys`) and nothing else.

  image        uint8   (H, W, 3)        RGB
  semantic     int32   (H, W)           class id, 255 = ignore
  depth        float32 (H, W)           metres (or scene units), 0 = invalid
  normals      float32 (H, W, 3)        unit (x right, y down, z towards the camera), 0 = invalid
  intrinsics   float32 (3, 3)           camera K in pixels for `depth`/`normals`: (u, v, 1) ~ K P for a
                                        camera-frame point P (x right, y down, z forward; depth = P_z),
                                        (u, v) continuous with pixel i spanning [i, i + 1) (centre i + 0.5)
  masks        uint8   (N, H, W)        instance masks, padded to N = max instances
  boxes        float32 (N, 4)           (y0, x0, y1, x1) in pixels, half-open, padded with 0
  classes      int32   (N,)             instance class id, 0 for padding
  num_instances int32  ()               number of valid rows in masks/boxes/classes/keypoints
  keypoints    float32 (N, K, 3)        (x, y, visibility) in pixels; visibility 0 = absent, 1 = occluded, 2 = visible
  panoptic     int32   (H, W)           segment id per pixel, 0 = void
  segment_classes int32 (S,)            class of each segment id (index = id), padded
  segment_is_thing uint8 (S,)           1 if the segment is a thing instance
  image_id     int32   ()               the dataset's own id of the image (COCO's), optional

`image_id` is a per-example scalar: augmentations pass it through untouched, batching stacks it to (B,),
the evaluation padding gets 0. The pipeline brings it along with the instance keys, and the detection
tasks write it into their results files, which then name the dataset's own images (a COCO results JSON
read by pycocotools against the official annotation file); a dataset without it (dense_shapes) has its
images numbered 1, 2, ... in split order there.

`original_size` int32 (2,) (h, w) is not a source key but one the pipeline adds: to evaluation examples
that have an `image_id`, the source image's size before `augment.eval_transform` resized it to the
evaluated size (`augment.eval_resized_size`); batches stack it to (B, 2), the padding gets (0, 0). The
detection tasks' results files map their boxes, keypoints and masks back to those pixels by it
(`check_original_sizes` checks a batch's). Training batches and datasets without `image_id`
(dense_shapes) do not have it.

A source may also offer `with_keys(keys) -> source` returning a view that reads only those keys; the
pipeline calls it when asked for a subset of keys (optional: others are filtered after reading).

Sources are registered by name (e.g. 'dense_shapes/small_64', 'voc2012') in a `NamedRegistry`
(`dense_jax._registry`, the models' and tasks' mechanism): a factory `factory(split, data_dir) -> source`
plus a `DatasetInfo` describing classes and available keys. A name is taken once: registering the same
info with a factory of the same qualified name again is harmless, anything else under a taken name is a
ValueError. Each real loader in `dense_jax.data.real` registers itself at the end of its module; the
first lookup (`available`, `dataset_info`, `get_source`) imports every module of that package.
Names 'tfds:<name>[:<version>]' that are not registered are looked up in `dense_jax.data.tfds_catalog`
(prepared TFDS catalog datasets read with `tfds.data_source`; `tfds_catalog.available()` lists the
mapped ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dense_jax._registry import NamedRegistry, same_callable


def check_original_sizes(sizes, real) -> np.ndarray:
  """A batch's `original_size` (B, 2) (h, w) ints as int64, checked against `real (B,)` bool (the examples
  that are not padding): each real example's size >= 1 (the padding's (0, 0) is allowed). The one check of
  the key for every reader (the COCO results JSON, the panoptic files)."""
  sizes, real = np.asarray(sizes), np.asarray(real, bool)
  what = f"({real.shape[0]}, 2) (h, w) source image sizes of ints"
  if sizes.shape != (real.shape[0], 2) or not np.issubdtype(sizes.dtype, np.integer):
    raise ValueError(f"batch['original_size']: expected {what}, got shape {sizes.shape} dtype {sizes.dtype}")
  if np.any(sizes[real] < 1):
    raise ValueError(f"batch['original_size']: expected sizes >= 1 for the real examples, got "
                     f"{sizes[real].tolist()}")
  return sizes.astype(np.int64)


class Source(Protocol):
  def __len__(self) -> int: ...
  def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a metric need to know about a dataset."""
  name: str
  num_classes: int                 # semantic classes including background/class 0
  class_names: tuple[str, ...]
  keys: tuple[str, ...]            # which of the standard keys the examples carry
  splits: tuple[str, ...]
  ignore_label: int = 255
  thing_classes: tuple[int, ...] = ()   # semantic ids that are countable instances
  num_keypoints: int = 0
  description: str = ""            # where the files come from and where to put them
  # How a horizontal flip renumbers keypoint slots: row c is the permutation for instances of class c
  # (new slot k takes old slot perm[k]); a single row applies to every class; () = no renumbering.
  keypoint_flip_perm: tuple[tuple[int, ...], ...] = ()
  image_size: tuple[int, int] | None = None   # (H, W) when every example has it, else None
  # Per-keypoint OKS sigmas of the keypoint AP (COCO's per-keypoint σ); () = COCO's 17 when K = 17.
  oks_sigmas: tuple[float, ...] = ()
  # The thing classes whose instances carry keypoint slots (COCO: person; dense_shapes: squares and
  # triangles): Keypoint R-CNN detects these as its one class, as COCO's person-keypoint annotations hold
  # persons only; () = every thing class.
  keypoint_classes: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Entry:
  info: DatasetInfo
  factory: Callable[[str, str | None], Source]

  def __repr__(self) -> str:
    return f"a source of factory {getattr(self.factory, '__qualname__', self.factory)!r}"


def _same_entry(previous: _Entry, new: _Entry) -> bool:
  return previous.info == new.info and same_callable(previous.factory, new.factory)


def _tfds_entry(name) -> _Entry | None:
  if not (isinstance(name, str) and name.startswith("tfds:")):
    return None
  from dense_jax.data import tfds_catalog  # pylint: disable=g-import-not-at-top
  return _Entry(*tfds_catalog.entry_factory(name))


_REGISTRY = NamedRegistry("dataset", "dense_jax.data.real", same=_same_entry, fallback=_tfds_entry,
                          hint=" (or a TFDS catalog dataset 'tfds:<name>[:<version>]', see "
                               "dense_jax.data.tfds_catalog)")


def register_source(info: DatasetInfo, factory: Callable[[str, str | None], Source]) -> None:
  """Registers `factory(split, data_dir)` under `info.name`; ValueError if another source has the name."""
  _REGISTRY.register(info.name, _Entry(info, factory))


def available() -> list[str]:
  """Sorted names of every registered dataset (`tfds:` names: `tfds_catalog.available()`)."""
  return _REGISTRY.available()


def dataset_info(name: str) -> DatasetInfo:
  """The `DatasetInfo` of dataset `name`; ValueError naming the known ones for an unknown name."""
  return _REGISTRY.get(name).info


def get_source(name: str, split: str, data_dir: str | None = None) -> Source:
  """The random-access source of `split` of dataset `name`; clear errors for unknown names and splits."""
  entry = _REGISTRY.get(name)
  if split not in entry.info.splits:
    raise ValueError(f"split: expected one of {list(entry.info.splits)} for dataset {name!r}, got {split!r}")
  return entry.factory(split, data_dir)
