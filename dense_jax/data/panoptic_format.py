"""The COCO panoptic format: one RGB PNG per image plus one JSON file, written and read.

PNG: each pixel's segment id as a colour, id = R + 256 G + 256² B (so ids < 256³); id 0 (black) = void.
JSON (what cocodataset/panopticapi's `pq_compute` and detectron2 read):

  {"annotations": [{"image_id": ..., "file_name": "<png name>",
                    "segments_info": [{"id": int, "category_id": int, "iscrowd": 0|1,
                                       "area": pixels, "bbox": [x, y, width, height], ...}, ...]}, ...],
   "categories": [{"id": int, "name": str, "isthing": 0|1}, ...]}

A segment here is the dict form `dense_jax.metrics.panoptic.pq_compute` takes:
`{segment_id: {"category_id": int, "iscrowd": 0|1, ...}}`; extra fields (e.g. "score") are kept.
`area` and `bbox` are computed from the id map when writing. Segments listed but absent from the map
are not written (panopticapi refuses a JSON segment that its PNG lacks).
`segments_from_arrays` turns the padded arrays of the data sources and of `ops.panoptic_merge`
(`segment_classes`, `segment_valid`, ... indexed by id) into that dict form.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping

import numpy as np
from PIL import Image

from dense_jax import paths

MAX_ID = 256 ** 3 - 1


def id_to_rgb(ids) -> np.ndarray:
  """int segment ids `(H, W)` in `[0, 256³)` -> uint8 `(H, W, 3)` with id = R + 256 G + 256² B."""
  ids = np.asarray(ids)
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"ids: expected an integer array, got dtype {ids.dtype}")
  if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
    raise ValueError(f"ids: expected segment ids in [0, {MAX_ID}], got range [{ids.min()}, {ids.max()}]")
  ids = ids.astype(np.int64)
  return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def rgb_to_id(rgb) -> np.ndarray:
  """uint8 `(H, W, 3)` colours -> int32 segment ids, id = R + 256 G + 256² B."""
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] != 3:
    raise ValueError(f"rgb: expected an (H, W, 3) array, got shape {rgb.shape}")
  rgb = rgb.astype(np.int32)
  return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def write_png(path: str | os.PathLike, ids) -> None:
  """Writes an id map as a COCO panoptic PNG."""
  with paths.as_path(path).open("wb") as f:
    Image.fromarray(id_to_rgb(ids)).save(f, format="PNG")


def read_png(path: str | os.PathLike) -> np.ndarray:
  """Reads a COCO panoptic PNG -> int32 `(H, W)` segment ids."""
  with Image.open(io.BytesIO(paths.as_path(path).read_bytes())) as im:
    if im.mode != "RGB":
      raise ValueError(f"{path}: expected an RGB panoptic PNG, got mode {im.mode!r}")
    return rgb_to_id(np.asarray(im))


def segment_infos(ids, segments: Mapping, image_id=None) -> list[dict]:
  """COCO `segments_info` for one image: the listed segments present in `ids`, with area and bbox.

  Raises ValueError (naming the image and the id) for a non-zero id in the map that `segments` lacks.
  """
  ids = np.asarray(ids)
  if ids.ndim != 2:
    raise ValueError(f"ids: expected an (H, W) map for image {image_id!r}, got shape {ids.shape}")
  present, areas = np.unique(ids, return_counts=True)
  listed = {int(k) for k in segments}
  missing = [int(v) for v in present if v != 0 and int(v) not in listed]
  if missing:
    raise ValueError(f"segments: segment id {missing[0]} is in the map of image {image_id!r} but not listed "
                     f"(missing ids: {missing[:10]})")
  area_of = dict(zip(present.tolist(), areas.tolist()))
  infos = []
  for seg_id, info in sorted(segments.items(), key=lambda item: int(item[0])):
    seg_id = int(seg_id)
    if seg_id == 0 or seg_id not in area_of:
      continue
    if "category_id" not in info:
      raise ValueError(f"segments[{seg_id}]: expected a dict with 'category_id' (image {image_id!r}), "
                       f"got {info!r}")
    rows, cols = np.nonzero(np.any(ids == seg_id, 1)), np.nonzero(np.any(ids == seg_id, 0))
    y0, y1, x0, x1 = rows[0][0], rows[0][-1], cols[0][0], cols[0][-1]
    extra = {k: _plain(v) for k, v in info.items() if k not in ("id", "area", "bbox")}
    infos.append({"id": seg_id, "category_id": int(info["category_id"]), "iscrowd": int(info.get("iscrowd", 0)),
                  "area": int(area_of[seg_id]), "bbox": [int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)]}
                 | {k: v for k, v in extra.items() if k not in ("category_id", "iscrowd")})
  return infos


def _plain(value):
  """NumPy scalars -> Python numbers, so json can write them."""
  return value.item() if isinstance(value, np.generic) else value


def _categories_json(categories: Mapping | None) -> list[dict]:
  if categories is None:
    return []
  out = []
  for cat, info in sorted(categories.items()):
    out.append({"id": int(cat), "name": str(info.get("name", cat)), "isthing": int(info["isthing"])}
               | {k: _plain(v) for k, v in info.items() if k not in ("id", "name", "isthing")})
  return out


class PanopticWriter:
  """Writes images' panoptic segmentations in the COCO panoptic format, one `add` per image.

    with PanopticWriter("out/panoptic_val.json", categories=cats) as writer:   # PNGs in out/panoptic_val/
      writer.add(image_id, ids, segments)

  json_path: the JSON file (written on `close`); png_dir: the PNG folder (default: json_path without
  '.json'); categories: `{category_id: {"isthing": 0|1, "name": ...}}` for the JSON's "categories"
  (optional).
  """

  def __init__(self, json_path: str | os.PathLike, png_dir: str | os.PathLike | None = None,
               categories: Mapping | None = None):
    self.json_path = paths.as_path(json_path)
    self.png_dir = paths.as_path(png_dir) if png_dir is not None else self.json_path.with_suffix("")
    self.png_dir.mkdir(parents=True, exist_ok=True)
    self._categories = _categories_json(categories)
    self._annotations: list[dict] = []
    self._names: set[str] = set()

  def add(self, image_id, ids, segments: Mapping, file_name: str | None = None) -> dict:
    """Writes image `image_id`'s PNG and records its annotation (returned)."""
    if file_name is None:
      file_name = f"{image_id:012d}.png" if isinstance(image_id, (int, np.integer)) else f"{image_id}.png"
    if file_name in self._names:
      raise ValueError(f"file_name: {file_name!r} (image {image_id!r}) was already written by this writer")
    infos = segment_infos(ids, segments, image_id)
    write_png(self.png_dir / file_name, ids)
    self._names.add(file_name)
    annotation = {"image_id": _plain(image_id), "file_name": file_name, "segments_info": infos}
    self._annotations.append(annotation)
    return annotation

  def close(self) -> None:
    """Writes the JSON (atomically: a partial file never replaces a complete one)."""
    tmp = self.json_path.with_suffix(self.json_path.suffix + ".tmp")
    with tmp.open("w") as f:
      json.dump({"annotations": self._annotations, "categories": self._categories}, f)
    tmp.replace(self.json_path)

  def __enter__(self) -> PanopticWriter:
    return self

  def __exit__(self, exc_type, *_) -> None:
    if exc_type is None:
      self.close()


class PanopticReader:
  """Random access to a COCO panoptic JSON + PNG folder: `reader[i]` ->
  `{"image_id", "file_name", "ids": int32 (H, W), "segments": {id: segment_info}}`, in JSON order.

  `categories` is `{category_id: {"isthing", "name", ...}}` from the JSON; `index_of(image_id)` finds an
  image. png_dir defaults to json_path without '.json' (COCO's own layout).
  """

  def __init__(self, json_path: str | os.PathLike, png_dir: str | os.PathLike | None = None):
    json_path = paths.as_path(json_path)
    with json_path.open() as f:
      data = json.load(f)
    if "annotations" not in data:
      raise ValueError(f"{json_path}: expected a COCO panoptic JSON with 'annotations', got keys {sorted(data)}")
    self.png_dir = paths.as_path(png_dir) if png_dir is not None else json_path.with_suffix("")
    self.annotations = data["annotations"]
    self.categories = {c["id"]: {k: v for k, v in c.items() if k != "id"} for c in data.get("categories", [])}
    self._index = {a["image_id"]: i for i, a in enumerate(self.annotations)}

  def __len__(self) -> int:
    return len(self.annotations)

  def index_of(self, image_id) -> int:
    if image_id not in self._index:
      raise KeyError(f"image_id {image_id!r} is not in the panoptic JSON")
    return self._index[image_id]

  def __getitem__(self, index: int) -> dict:
    annotation = self.annotations[index]
    ids = read_png(self.png_dir / annotation["file_name"])
    segments = {int(s["id"]): dict(s) for s in annotation["segments_info"]}
    return {"image_id": annotation["image_id"], "file_name": annotation["file_name"], "ids": ids,
            "segments": segments}


def segments_from_arrays(segment_classes, segment_valid=None, *, segment_is_crowd=None, segment_scores=None,
                         category_ids=None) -> dict[int, dict]:
  """Padded per-id arrays (index = id, entry 0 void) -> `{id: {"category_id", "iscrowd"[, "score"]}}`.

  segment_valid: bool `(S,)`, which ids exist (default: every id >= 1); category_ids: optional table or
  mapping from the arrays' class to the dataset's category id (e.g. contiguous -> COCO ids).
  """
  classes = np.asarray(segment_classes)
  if classes.ndim != 1:
    raise ValueError(f"segment_classes: expected shape (S,), got {classes.shape}")
  valid = np.ones(classes.shape, bool) if segment_valid is None else np.asarray(segment_valid, bool)
  out = {}
  for seg_id in np.flatnonzero(valid):
    if seg_id == 0:
      continue
    cls = int(classes[seg_id])
    info = {"category_id": int(category_ids[cls]) if category_ids is not None else cls,
            "iscrowd": int(segment_is_crowd[seg_id]) if segment_is_crowd is not None else 0}
    if segment_scores is not None:
      info["score"] = float(segment_scores[seg_id])
    out[int(seg_id)] = info
  return out
