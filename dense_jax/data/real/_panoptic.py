"""Shared by the COCO-format panoptic sources: a panoptic PNG's ids + segments_info -> the standard keys.

  panoptic          int32 (H, W)  segments renumbered 1..S-1 in segments_info order, 0 = void
  segment_classes   int32 (S,)    each id's class (index = id; entry 0 and unused entries 0)
  segment_is_thing  uint8 (S,)    1 for thing segments
  semantic          int32 (H, W)  each pixel's class, 255 where void

Crowd segments are void in `panoptic` (training must not treat a crowd as one instance; PQ ignores
them) but keep their class in `semantic`, as `coco2017` does. For the official PQ with its crowd rule,
read the files with `dense_jax.data.panoptic_format.PanopticReader` and score with
`dense_jax.metrics.panoptic.pq_compute`. Segments past the S - 1 that fit are void (the caller counts it).

Bad input, as panopticapi's `pq_compute` treats ground truth where it has a rule: a segment id drawn in
the PNG but absent from segments_info raises BadLabelError (panopticapi: KeyError); a segment listed but
not drawn is skipped (panopticapi accepts it in ground truth). Beyond it, a PNG of another size than its
image, a segment id listed twice, an unknown category_id raise BadLabelError, a damaged PNG
UnreadableFileError, each naming the file and the image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from dense_jax import paths
from dense_jax.data import panoptic_format
from dense_jax.data.real import _common

_LOG = logging.getLogger(__name__)


def panoptic_labels(ids: np.ndarray, segments_info: Sequence[dict], class_of: Callable[[int], int],
                    is_thing: Callable[[int], bool], max_segments: int, files: _common.Files, png, json_file,
                    example: str) -> tuple[dict, int]:
  """-> (the four arrays above, number of non-crowd segments that did not fit).

  ids: int (H, W) from the PNG `png` (id = R + 256 G + 256^2 B); segments_info from `json_file`;
  class_of(category_id) -> class, raising ValueError for an unknown category; is_thing(class) -> bool;
  files and example name the split and the image in errors (BadLabelError, see the module docstring).
  """
  h, w = ids.shape
  classes, things = np.zeros((max_segments,), np.int32), np.zeros((max_segments,), np.uint8)
  present, inverse = np.unique(ids, return_inverse=True)
  semantic_of, panoptic_of = np.full(present.shape, 255, np.int32), np.zeros(present.shape, np.int32)
  listed = [s.get("id") if isinstance(s, dict) else s for s in segments_info]
  if len(set(listed)) != len(listed):
    twice = sorted({i for i in listed if listed.count(i) > 1}, key=str)
    raise files.bad_label(json_file, example, "each segment id once in segments_info",
                          f"ids listed more than once: {twice[:10]}")
  unlisted = [int(v) for v in present if v != 0 and int(v) not in set(listed)]
  if unlisted:
    raise files.bad_label(png, example, f"only the segment ids its segments_info in {json_file} lists "
                          f"(and 0, void)", f"{len(unlisted)} unlisted id(s) {unlisted[:10]}")
  for segment in segments_info:
    try:
      segment["category_id"]
    except (TypeError, KeyError):
      raise files.bad_label(json_file, example, "segments_info entries with 'id' and 'category_id'",
                            repr(segment)[:200]) from None
  next_id, dropped = 1, 0
  for segment in segments_info:
    try:
      cls = class_of(segment["category_id"])
    except ValueError as e:
      raise files.bad_label(json_file, example, f"known categories (segment {segment['id']})", str(e)) from None
    slot = np.searchsorted(present, segment["id"])
    if slot == present.size or present[slot] != segment["id"]:
      continue  # listed but not drawn
    semantic_of[slot] = cls
    if segment.get("iscrowd", 0):
      continue
    if next_id < max_segments:
      panoptic_of[slot], classes[next_id], things[next_id] = next_id, cls, is_thing(cls)
      next_id += 1
    else:
      dropped += 1
  inverse = inverse.reshape(h, w)
  return {"semantic": semantic_of[inverse], "panoptic": panoptic_of[inverse], "segment_classes": classes,
          "segment_is_thing": things}, dropped


def empty_labels(h: int, w: int, max_segments: int) -> dict:
  """The labels of an image without a panoptic annotation: all void."""
  return {"semantic": np.full((h, w), 255, np.int32), "panoptic": np.zeros((h, w), np.int32),
          "segment_classes": np.zeros((max_segments,), np.int32),
          "segment_is_thing": np.zeros((max_segments,), np.uint8)}


def read_ids(path: paths.Path) -> np.ndarray:
  """A COCO panoptic PNG -> int32 (H, W) segment ids; UnreadableFileError naming a damaged file,
  BadLabelError one that is not RGB."""
  def decode(im):
    if im.mode != "RGB":
      raise _common.BadLabelError(f"expected an RGB panoptic PNG, got mode {im.mode!r}")
    return panoptic_format.rgb_to_id(np.asarray(im))
  return _common.decode_image(path, decode)


class PanopticPngSource:
  """Base of the COCO-format panoptic sources: the segment cap, the count of truncated images, and one
  image's labels from its annotation. A subclass sets `name`, calls `__init__` with its split and the
  JSON it read, and defines `class_of(category_id) -> class` (ValueError for an unknown id) and
  `is_thing(class) -> bool`."""

  name = "panoptic"

  def __init__(self, max_segments: int, split: str = "", json_file=None, module: str = __name__):
    if max_segments < 2:
      raise ValueError(f"max_segments: expected >= 2 (void + one segment), got {max_segments}")
    self.max_segments = max_segments
    self.num_truncated = 0
    self._files = _common.Files(self.name, split, module)
    self._json_file = json_file

  def class_of(self, category_id: int) -> int:
    raise NotImplementedError

  def is_thing(self, cls: int) -> bool:
    raise NotImplementedError

  def annotation_labels(self, annotation: dict | None, png_dir: paths.Path, image_id, image_shape) -> dict:
    """The four label arrays of one image: all void without an annotation; bad input raises (module
    docstring); segments past the cap are void, counted in `num_truncated` with a warning."""
    h, w = image_shape
    if annotation is None:
      return empty_labels(h, w, self.max_segments)
    example = f"image id {image_id}"
    if not isinstance(annotation.get("file_name"), str) or not isinstance(annotation.get("segments_info"), list):
      raise self._files.bad_label(self._json_file, example, "an annotation with 'file_name' and a "
                                  "'segments_info' list", repr(annotation)[:200])
    png = png_dir / annotation["file_name"]
    ids = self._files.read(read_ids, png, example)
    if ids.shape != (h, w):
      raise self._files.bad_label(png, example, f"a panoptic PNG of its image's size {(h, w)}", f"shape {ids.shape}")
    labels, dropped = panoptic_labels(ids, annotation["segments_info"], self.class_of, self.is_thing,
                                      self.max_segments, self._files, png, self._json_file, example)
    if dropped:
      self.num_truncated += 1
      _LOG.warning("%s: image %s has %d more segments than the %d padded ids; they are void "
                   "(%d truncated examples so far)", self.name, image_id, dropped, self.max_segments - 1,
                   self.num_truncated)
    return labels
