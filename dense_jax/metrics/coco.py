"""COCO detection metrics through pycocotools on in-memory ground truth: box AP, mask AP and keypoint
AP (OKS), plus a writer of COCO-format results JSON. Host side, NumPy in, floats out.

    acc = CocoAccumulator(category_ids=info.thing_classes, iou_types=("box", "mask"))
    for detections, batch in ...:        # padded, fixed-size arrays, one evaluation batch at a time
      acc.add(detections, batch)
    metrics = acc.compute()              # {'box_ap': ..., 'box_ap50': ..., 'mask_ap75': ..., ...}
    acc.write_results_json(path)         # [{image_id, category_id, bbox, score, segmentation, keypoints}]

Inputs (NumPy or JAX, batch axis B first):
  detections  boxes (B, N, 4) **(x0, y0, x1, y1)** pixels (`dense_jax.ops.boxes`' layout), scores (B, N),
              labels (B, N) class ids, valid (B, N) bool; masks (B, N, M, M) RoI probabilities of the
              detection's class (for "mask"); keypoints (B, N, K, 3) (x, y, score) pixels (for "keypoint").
  batch       the `dense_jax.data.sources` contract: boxes (B, G, 4) **(y0, x0, y1, x1)** half-open,
              classes (B, G), num_instances (B,), masks (B, G, H, W), keypoints (B, G, K, 3) (x, y,
              visibility), image (B, H, W, 3), batch_mask (B,) (0 = padding, skipped); optional
              original_size (B, 2) (h, w) before `eval_transform`'s resize, used by the results JSON only.
Class ids are the dataset's (0 = background) and double as COCO category ids; `category_ids` lists those
evaluated.

Conventions. Ground-truth bbox `[x0, y0, w, h]`; area = mask pixel count (box area without masks), which
sets COCO's small/medium/large ranges (32², 96², bounds inclusive as in pycocotools); `num_keypoints` =
count of visibility > 0; iscrowd 0; image and annotation ids from 1 (pycocotools reads id 0 as "no
match"). Detections become results as torchvision's reference evaluation makes them: masks pasted at image
resolution (`dense_jax.ops.paste_masks`, `mask_paste` mode), thresholded `> 0.5`, RLE-encoded. AP is
pycocotools' own: 101-point interpolated precision, mean over categories with ground truth and IoU (OKS)
thresholds 0.50:0.05:0.95, at most 100 detections per image (20 for keypoints).
OKS = mean over labelled keypoints of `exp(-d² / (2 s² k²))`, s² the area, k = 2σ: `COCO_OKS_SIGMAS` (the
17 COCO person keypoints) when K = 17, else pass `oks_sigmas`.

Results (`compute()`, AP in [0, 1]): `{p}_ap, {p}_ap50, {p}_ap75, {p}_ap_small` (not keypoints),
`{p}_ap_medium, {p}_ap_large, {p}_ar` per evaluated type p, NaN where undefined (pycocotools' -1).

What differs from the official evaluation: metrics are at the evaluated resolution, not the original
images' (the results JSON maps back to original pixels when batches carry `original_size`: x / sx,
y / sy with (sy, sx) = resized / original size, boxes clipped to the image, masks pasted with the
unclipped box); ground truth beyond the G rows or `max_gt_instances` is dropped, not counted as missed,
and reported as `gt_dropped` (instances) and `images_gt_capped` (images).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dense_jax import paths
from dense_jax.ops.paste_masks import PASTE_MODES, pasted_regions

_ORIGINAL = "_original"   # a detection record's fields in the original image's pixels (for the JSON)

IOU_TYPES = ("box", "mask", "keypoint")
_PYCOCO_TYPE = {"box": "bbox", "mask": "segm", "keypoint": "keypoints"}
# COCOeval.summarize()'s stats vector: index of each reported value.
_STATS = {
    "box": {"ap": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5, "ar": 8},
    "mask": {"ap": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5, "ar": 8},
    "keypoint": {"ap": 0, "ap50": 1, "ap75": 2, "ap_medium": 3, "ap_large": 4, "ar": 5},
}
# COCO's per-keypoint OKS sigmas (pycocotools Params.kpt_oks_sigmas; nose, eyes, ears, shoulders, elbows,
# wrists, hips, knees, ankles).
COCO_OKS_SIGMAS = tuple(float(s) for s in np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0)
MASK_THRESHOLD = 0.5


def result_keys(iou_types: Sequence[str]) -> tuple[str, ...]:
  """The keys `compute()` returns for `iou_types` (in order)."""
  keys = [f"{p}_{k}" for p in iou_types for k in _STATS[p]]
  return tuple(keys) + ("gt_dropped", "images_gt_capped")


def default_oks_sigmas(num_keypoints: int) -> tuple[float, ...]:
  """COCO's 17 sigmas for K = 17; any other K has no default (ValueError: pass `oks_sigmas`)."""
  if num_keypoints == len(COCO_OKS_SIGMAS):
    return COCO_OKS_SIGMAS
  raise ValueError(f"oks_sigmas: expected {num_keypoints} per-keypoint sigmas for a dataset with "
                   f"{num_keypoints} keypoints (only COCO's 17 have a default), got None")


def object_keypoint_similarity(dt_keypoints, gt_keypoints, gt_areas, sigmas) -> np.ndarray:
  """OKS matrix `(D, G)` in float64 between detections `(D, K, 2|3)` (x, y, ...) and ground truth
  `(G, K, 3)` (x, y, visibility) with areas `(G,)`:

    oks[d, g] = mean_{k: v_gk > 0} exp(-|p_dk - p_gk|² / (2 * area_g * (2 σ_k)²))

  (pycocotools' computeOks, whose area has `+ eps`). A ground truth without labelled keypoints gets 0
  (pycocotools scores it against its box instead, but the evaluation ignores such instances)."""
  dt = np.asarray(dt_keypoints, np.float64)
  gt = np.asarray(gt_keypoints, np.float64)
  sig = np.asarray(sigmas, np.float64)
  if gt.ndim != 3 or gt.shape[2] != 3:
    raise ValueError(f"gt_keypoints: expected (G, K, 3) (x, y, visibility), got shape {gt.shape}")
  if dt.ndim != 3 or dt.shape[1] != gt.shape[1] or dt.shape[2] not in (2, 3):
    raise ValueError(f"dt_keypoints: expected (D, {gt.shape[1]}, 2 or 3), got shape {dt.shape}")
  if sig.shape != (gt.shape[1],) or np.any(sig <= 0):
    raise ValueError(f"sigmas: expected {gt.shape[1]} positive values, got {sigmas!r}")
  areas = np.asarray(gt_areas, np.float64)
  if areas.shape != (gt.shape[0],):
    raise ValueError(f"gt_areas: expected shape ({gt.shape[0]},), got {areas.shape}")
  d2 = np.sum((dt[:, None, :, :2] - gt[None, :, :, :2]) ** 2, axis=-1)              # (D, G, K)
  e = d2 / (2.0 * (areas[None, :, None] + np.spacing(1)) * (2.0 * sig) ** 2)
  labelled = gt[None, :, :, 2] > 0
  count = np.sum(labelled, axis=-1)
  total = np.sum(np.where(labelled, np.exp(-e), 0.0), axis=-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _quiet(fn, *args, **kwargs):
  """pycocotools prints progress; keep the logs clean."""
  with contextlib.redirect_stdout(io.StringIO()):
    return fn(*args, **kwargs)


def coco_from_dataset(dataset: Mapping) -> COCO:
  """A pycocotools COCO object built from an in-memory dataset dict (no file)."""
  coco = COCO()
  coco.dataset = {"images": list(dataset["images"]), "categories": list(dataset["categories"]),
                  "annotations": list(dataset["annotations"])}
  _quiet(coco.createIndex)
  return coco


_RESULT_FIELD = {"box": "bbox", "mask": "segmentation", "keypoint": "keypoints"}


def _check_results(ground_truth: Mapping, results: Sequence[Mapping], iou_type: str) -> None:
  """ValueError, naming the result, unless every result is a dict with `image_id` among the ground
  truth's images, `category_id` among its categories, a finite `score` and the field of `iou_type`
  (pycocotools asserts without saying which, or silently ignores an unknown category)."""
  image_ids = {int(im["id"]) for im in ground_truth["images"]}
  category_ids = {int(c["id"]) for c in ground_truth["categories"]}
  field = _RESULT_FIELD[iou_type]
  for i, r in enumerate(results):
    if not isinstance(r, Mapping):
      raise ValueError(f"results[{i}]: expected a dict {{image_id, category_id, {field}, score}}, got "
                       f"{type(r).__name__}")
    missing = [k for k in ("image_id", "category_id", field, "score") if k not in r]
    if missing:
      raise ValueError(f"results[{i}]: expected the keys image_id, category_id, {field}, score (iou_type "
                       f"{iou_type!r}), got {sorted(r)} (missing {missing})")
    if int(r["image_id"]) not in image_ids:
      shown = sorted(image_ids)[:10]
      raise ValueError(f"results[{i}]: expected an image_id of the ground truth ({len(image_ids)} images, ids "
                       f"{shown}{' ...' if len(image_ids) > 10 else ''}), got image_id {r['image_id']!r}")
    if int(r["category_id"]) not in category_ids:
      raise ValueError(f"results[{i}]: expected a category_id of the ground truth {sorted(category_ids)}, got "
                       f"category_id {r['category_id']!r} (image_id {r['image_id']!r})")
    if not math.isfinite(float(r["score"])):
      raise ValueError(f"results[{i}]: expected a finite score, got {r['score']!r} (image_id {r['image_id']!r})")


def evaluate_coco(ground_truth: Mapping, results: Sequence[Mapping], iou_type: str,
                  oks_sigmas: Sequence[float] | None = None) -> dict[str, float]:
  """`{ap, ap50, ...}` (the keys of `_STATS[iou_type]`) of COCO `results` (one type's list, as
  `CocoAccumulator.results` gives) against the in-memory `ground_truth` dataset dict.

  Empty `results` give 0 where there is ground truth (pycocotools' loadRes cannot take an empty list, so
  the empty result set is built directly); undefined values (no ground truth) are NaN. A result for an
  image or a category that the ground truth lacks, without its `iou_type` field or with a non-finite
  score is a ValueError naming it.
  """
  if iou_type not in IOU_TYPES:
    raise ValueError(f"iou_type: expected one of {IOU_TYPES}, got {iou_type!r}")
  keys = _STATS[iou_type]
  _check_results(ground_truth, results, iou_type)
  if not ground_truth["images"]:
    return {k: math.nan for k in keys}
  gt = coco_from_dataset(ground_truth)
  if results:
    # loadRes adds fields (id, area, bbox) to the dicts it gets: hand it copies.
    dt = _quiet(gt.loadRes, [dict(r) for r in results])
  else:
    dt = coco_from_dataset({**ground_truth, "annotations": []})
  evaluator = COCOeval(gt, dt, _PYCOCO_TYPE[iou_type])
  if iou_type == "keypoint":
    sigmas = np.asarray(oks_sigmas if oks_sigmas is not None else COCO_OKS_SIGMAS, np.float64)
    evaluator.params.kpt_oks_sigmas = sigmas
  _quiet(evaluator.evaluate)
  _quiet(evaluator.accumulate)
  _quiet(evaluator.summarize)
  stats = evaluator.stats
  return {k: (float(stats[i]) if stats[i] >= 0 else math.nan) for k, i in keys.items()}


def _checked_array(x, name: str, shape_prefix: tuple, ndim: int, what: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != ndim or tuple(x.shape[:len(shape_prefix)]) != shape_prefix:
    expected = "(" + ", ".join(map(str, shape_prefix)) + ", ...)" if shape_prefix else f"rank {ndim}"
    raise ValueError(f"{name}: expected {what}, shape {expected} of rank {ndim}, got shape {x.shape}")
  return x


def _xywh(x0, y0, x1, y1) -> list[float]:
  return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _rle(binary_masks: np.ndarray) -> list[dict]:
  """`(n, H, W)` bool -> COCO compressed RLEs with str counts (JSON-ready)."""
  if len(binary_masks) == 0:
    return []
  rles = mask_utils.encode(np.asfortranarray(np.transpose(binary_masks, (1, 2, 0)).astype(np.uint8)))
  for rle in rles:
    rle["counts"] = rle["counts"].decode("ascii")
  return rles


def _pasted_rles(masks, boxes, size: tuple[int, int], mode: str = "exact") -> list[dict]:
  """RLEs of `paste_masks(masks, boxes, size, mode=mode) > MASK_THRESHOLD`, one mask at a time (an
  (N, H, W) float array would be 100 MB per COCO image)."""
  canvas = np.zeros((size[0], size[1], 1), np.uint8, order="F")
  empty = _rle(np.zeros((1,) + tuple(size), bool))[0]
  rles = [dict(empty) for _ in range(len(masks))]
  for i, (r0, r1, c0, c1), values in pasted_regions(masks, boxes, size, mode=mode):
    canvas[r0:r1, c0:c1, 0] = values > MASK_THRESHOLD
    rle = mask_utils.encode(canvas)[0]
    rle["counts"] = rle["counts"].decode("ascii")
    rles[i] = rle
    canvas[r0:r1, c0:c1, 0] = 0
  return rles


def _to_original(boxes, masks, keypoints, size, original, mask_paste: str) -> dict[str, list]:
  """One image's detections in its original pixels, for the results JSON: `{'bbox': [x, y, w, h] per
  detection, 'segmentation': RLEs at `original` (if masks), 'keypoints': [x1, y1, v1, ...] (if
  keypoints)}`. `boxes (N, 4)` xyxy, `masks (N, M, M)`, `keypoints (N, K, 3)` are in the evaluated
  image of `size` (H, W), which `eval_resized_size` made from `original` (h, w) (module docstring)."""
  from dense_jax.data.augment import eval_resized_size  # pylint: disable=g-import-not-at-top
  h, w = original
  new_h, new_w = eval_resized_size(original, size)
  sy, sx = new_h / h, new_w / w
  boxes = np.asarray(boxes, np.float64) / np.array([sx, sy, sx, sy])
  out = {}
  # The box clipped to the image (the resized image's padding is no part of it); the mask is pasted with
  # the unclipped one, the RoI its map was predicted for.
  clipped = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float64))
  out["bbox"] = [_xywh(*box) for box in clipped]
  if masks is not None:
    out["segmentation"] = _pasted_rles(masks, boxes, (h, w), mask_paste)
  if keypoints is not None:
    kp = np.array(keypoints, np.float64)
    kp[..., 0] /= sx
    kp[..., 1] /= sy
    out["keypoints"] = [[float(v) for v in k.reshape(-1)] for k in kp]
  return out


class CocoAccumulator:
  """Collects COCO ground truth and results batch by batch (`add`) and evaluates them (`compute`).

  category_ids: the class ids evaluated (ints >= 1); ground truth or a valid detection with another
    class is an error.
  iou_types: a subset of ("box", "mask", "keypoint"); each needs its arrays in `add`.
  oks_sigmas: per-keypoint σ for "keypoint" (default: COCO's when K = 17).
  max_gt_instances: evaluate at most this many ground-truth rows per image (the rest are dropped and
    counted); None = every row below num_instances.
  mask_paste: how RoI masks are pasted (`dense_jax.ops.paste_masks`): 'exact' (detectron2's; pairs with
    aligned mask targets) or 'torchvision' (its paste_masks_in_image; pairs with its aligned=False targets).
  """

  def __init__(self, category_ids: Sequence[int], *, iou_types: Sequence[str] = ("box", "mask"),
               oks_sigmas: Sequence[float] | None = None, max_gt_instances: int | None = None,
               mask_paste: str = "exact"):
    cats = [int(c) for c in category_ids] if isinstance(category_ids, (Sequence, np.ndarray)) else None
    if not cats or any(c < 1 for c in cats) or len(set(cats)) != len(cats):
      raise ValueError(f"category_ids: expected distinct class ids >= 1 (0 is background), got {category_ids!r}")
    iou_types = tuple(iou_types)
    if not iou_types or any(t not in IOU_TYPES for t in iou_types) or len(set(iou_types)) != len(iou_types):
      raise ValueError(f"iou_types: expected distinct entries of {IOU_TYPES}, got {iou_types!r}")
    if max_gt_instances is not None and (isinstance(max_gt_instances, bool) or int(max_gt_instances) < 0):
      raise ValueError(f"max_gt_instances: expected None or an int >= 0, got {max_gt_instances!r}")
    if mask_paste not in PASTE_MODES:
      raise ValueError(f"mask_paste: expected one of {PASTE_MODES}, got {mask_paste!r}")
    self.mask_paste = mask_paste
    self.category_ids = tuple(sorted(cats))
    self.iou_types = iou_types
    self.max_gt_instances = max_gt_instances
    self.oks_sigmas = None if oks_sigmas is None else tuple(float(s) for s in oks_sigmas)
    if self.oks_sigmas is not None and (not self.oks_sigmas or min(self.oks_sigmas) <= 0):
      raise ValueError(f"oks_sigmas: expected positive per-keypoint sigmas, got {oks_sigmas!r}")
    self._cat_set = set(self.category_ids)
    self.images: list[dict] = []
    self.annotations: list[dict] = []
    self.detections: list[dict] = []      # one record per detection: every field of every type
    self.gt_dropped = 0
    self.images_gt_capped = 0
    self._image_ids: set[int] = set()
    self._keypoint_sigmas = self.oks_sigmas   # fixed by the first batch's K

  # ---- input ----------------------------------------------------------------------------------
  def _check_classes(self, classes: np.ndarray, name: str) -> None:
    bad = sorted({int(c) for c in np.unique(classes)} - self._cat_set)
    if bad:
      raise ValueError(f"{name}: expected class ids in category_ids {list(self.category_ids)}, got {bad}")

  def _sigmas(self, num_keypoints: int) -> tuple[float, ...]:
    sigmas = self._keypoint_sigmas
    if sigmas is None:
      return default_oks_sigmas(num_keypoints)
    if len(sigmas) != num_keypoints:
      raise ValueError(f"oks_sigmas: expected {num_keypoints} sigmas (the keypoints' K), got {len(sigmas)}")
    return sigmas

  def _required(self, what: str) -> tuple[str, ...]:
    extra = (("masks",) if "mask" in self.iou_types else ()) + (
        ("keypoints",) if "keypoint" in self.iou_types else ())
    return (("boxes", "scores", "labels", "valid") if what == "detections" else
            ("boxes", "classes", "num_instances")) + extra

  def _read_detections(self, detections: Mapping) -> dict[str, np.ndarray]:
    """The detection arrays on the host, shapes checked (B, N from the boxes)."""
    if not isinstance(detections, Mapping):
      raise ValueError(f"detections: expected a dict of arrays, got {type(detections).__name__}")
    for key in self._required("detections"):
      if key not in detections:
        raise ValueError(f"detections: expected key {key!r} (iou_types {self.iou_types}), got "
                         f"{sorted(detections)}")
    boxes = np.asarray(detections["boxes"])
    if boxes.ndim != 3 or boxes.shape[2] != 4:
      raise ValueError(f"detections['boxes']: expected (B, N, 4) (x0, y0, x1, y1), got shape {boxes.shape}")
    bn = boxes.shape[:2]
    out = {"boxes": boxes,
           "scores": _checked_array(detections["scores"], "detections['scores']", bn, 2, "scores (B, N)"),
           "labels": _checked_array(detections["labels"], "detections['labels']", bn, 2, "class ids (B, N)"),
           "valid": _checked_array(detections["valid"], "detections['valid']", bn, 2, "bool (B, N)").astype(bool)}
    if "mask" in self.iou_types:
      masks = _checked_array(detections["masks"], "detections['masks']", bn, 4, "(B, N, M, M) RoI probabilities")
      if masks.shape[2] != masks.shape[3]:
        raise ValueError(f"detections['masks']: expected (B, N, M, M) RoI probabilities, got shape {masks.shape}")
      out["masks"] = masks
    if "keypoint" in self.iou_types:
      kpts = _checked_array(detections["keypoints"], "detections['keypoints']", bn, 4, "(B, N, K, 3) (x, y, score)")
      if kpts.shape[3] != 3:
        raise ValueError(f"detections['keypoints']: expected (B, N, K, 3) (x, y, score), got shape {kpts.shape}")
      out["keypoints"] = kpts
    return out

  def _read_batch(self, batch: Mapping, b: int) -> dict[str, np.ndarray]:
    """The ground-truth arrays on the host, shapes checked against the batch size `b`, plus `size` (H, W)
    and `example` (B,) bool."""
    if not isinstance(batch, Mapping):
      raise ValueError(f"batch: expected a dict of arrays, got {type(batch).__name__}")
    for key in self._required("batch"):
      if key not in batch:
        raise ValueError(f"batch: expected key {key!r} (iou_types {self.iou_types}), got {sorted(batch)}")
    boxes = _checked_array(batch["boxes"], "batch['boxes']", (b,), 3, "(B, G, 4) (y0, x0, y1, x1)")
    if boxes.shape[2] != 4:
      raise ValueError(f"batch['boxes']: expected (B, G, 4) (y0, x0, y1, x1), got shape {boxes.shape}")
    bg = boxes.shape[:2]
    out = {"boxes": boxes,
           "classes": _checked_array(batch["classes"], "batch['classes']", bg, 2, "class ids (B, G)"),
           "num_instances": _checked_array(batch["num_instances"], "batch['num_instances']", (b,), 1,
                                          "counts (B,)").astype(np.int64)}
    if np.any(out["num_instances"] < 0):
      raise ValueError(f"batch['num_instances']: expected counts >= 0, got {out['num_instances'].tolist()}")
    if "masks" in batch:
      out["masks"] = _checked_array(batch["masks"], "batch['masks']", bg, 4, "(B, G, H, W) instance masks")
      out["size"] = out["masks"].shape[2:]
    elif "image" in batch:
      out["size"] = np.shape(batch["image"])[1:3]
    else:
      raise ValueError(f"batch: expected 'masks' or 'image' (for the image size), got {sorted(batch)}")
    if "keypoint" in self.iou_types:
      kpts = _checked_array(batch["keypoints"], "batch['keypoints']", bg, 4, "(B, G, K, 3) (x, y, visibility)")
      if kpts.shape[3] != 3:
        raise ValueError(f"batch['keypoints']: expected (B, G, K, 3) (x, y, visibility), got shape {kpts.shape}")
      out["keypoints"] = kpts
    out["example"] = np.asarray(batch["batch_mask"]) > 0 if "batch_mask" in batch else np.ones((b,), bool)
    if out["example"].shape != (b,):
      raise ValueError(f"batch['batch_mask']: expected shape ({b},), got {out['example'].shape}")
    if "original_size" in batch:
      from dense_jax.data.sources import check_original_sizes  # pylint: disable=g-import-not-at-top
      out["original_size"] = check_original_sizes(batch["original_size"], out["example"])
    return out

  def _new_image_ids(self, image_ids, example: np.ndarray) -> list[int]:
    if image_ids is None:
      return list(range(len(self.images) + 1, len(self.images) + 1 + int(np.sum(example))))
    if np.shape(image_ids) != example.shape:
      raise ValueError(f"image_ids: expected {example.shape} ints, got shape {np.shape(image_ids)}")
    ids = [int(v) for v in np.asarray(image_ids)[example]]
    repeated = sorted((set(ids) & self._image_ids) | {v for v in ids if ids.count(v) > 1})
    if repeated:
      raise ValueError(f"image_ids: expected ids not added before and distinct, got {repeated} again")
    return ids

  def add(self, detections: Mapping, batch: Mapping, image_ids: Sequence[int] | None = None) -> None:
    """Adds one batch: `detections` and `batch` as in the module docstring. `image_ids (B,)`: the images'
    ids in the results (e.g. COCO's own, for the results JSON); default 1, 2, ... in order of addition.
    `batch['original_size'] (B, 2)` (optional): the images' (h, w) before the evaluation resize; the
    results JSON is then in those pixels (module docstring), the metrics are not affected.
    Examples with `batch_mask == 0` are skipped. Everything is checked before anything is added."""
    det = self._read_detections(detections)
    b = det["boxes"].shape[0]
    gt = self._read_batch(batch, b)
    example = gt["example"]
    sigmas = None
    if "keypoint" in self.iou_types:
      k = gt["keypoints"].shape[2]
      if det["keypoints"].shape[2] != k:
        raise ValueError(f"detections['keypoints']: expected K = {k} keypoints like the batch, got shape "
                         f"{det['keypoints'].shape}")
      sigmas = self._sigmas(k)
    live = example[:, None] & det["valid"]
    if np.any(live & ~np.isfinite(det["scores"])):
      raise ValueError("detections['scores']: expected finite scores for valid detections, got NaN or inf")
    g = gt["boxes"].shape[1]
    kept = np.minimum(gt["num_instances"], g)
    if self.max_gt_instances is not None:
      kept = np.minimum(kept, int(self.max_gt_instances))
    self._check_classes(gt["classes"][example[:, None] & (np.arange(g)[None, :] < kept[:, None])],
                        "batch['classes']")
    self._check_classes(det["labels"][live], "detections['labels']")
    ids = self._new_image_ids(image_ids, example)
    if sigmas is not None:
      self._keypoint_sigmas = sigmas

    size = (int(gt["size"][0]), int(gt["size"][1]))
    for i, image_id in zip(np.flatnonzero(example), ids):
      self._image_ids.add(image_id)
      self.images.append({"id": image_id, "height": size[0], "width": size[1]})
      n_gt = int(kept[i])
      if n_gt < gt["num_instances"][i]:
        self.gt_dropped += int(gt["num_instances"][i]) - n_gt
        self.images_gt_capped += 1
      rows = {key: gt[key][i, :n_gt] for key in ("boxes", "classes", "masks", "keypoints") if key in gt}
      self._add_ground_truth(image_id, rows["boxes"], rows["classes"], rows.get("masks"), rows.get("keypoints"))
      keep = det["valid"][i]
      original = tuple(int(v) for v in gt["original_size"][i]) if "original_size" in gt else None
      self._add_detections(image_id, size, det["boxes"][i][keep], det["scores"][i][keep], det["labels"][i][keep],
                           det["masks"][i][keep] if "masks" in det else None,
                           det["keypoints"][i][keep] if "keypoints" in det else None,
                           original=original)

  def _add_ground_truth(self, image_id, boxes, classes, masks, keypoints) -> None:
    boxes = np.asarray(boxes, np.float64)
    rles = _rle(np.asarray(masks) > 0) if masks is not None else None
    for j in range(len(classes)):
      y0, x0, y1, x1 = boxes[j]
      ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(classes[j]),
             "bbox": _xywh(x0, y0, x1, y1), "iscrowd": 0}
      if rles is not None:
        ann["segmentation"] = rles[j]
        ann["area"] = float(mask_utils.area(rles[j]))
      else:
        ann["area"] = float(max(x1 - x0, 0) * max(y1 - y0, 0))
      if keypoints is not None:
        kp = np.asarray(keypoints[j], np.float64)
        ann["keypoints"] = [float(v) for v in kp.reshape(-1)]
        ann["num_keypoints"] = int(np.sum(kp[:, 2] > 0))
      self.annotations.append(ann)

  def _add_detections(self, image_id, size, boxes, scores, labels, masks, keypoints, original=None) -> None:
    rles = None if masks is None else _pasted_rles(masks, boxes, size, self.mask_paste)
    boxes = np.asarray(boxes, np.float64)
    in_original = None if original is None or tuple(original) == tuple(size) else (
        _to_original(boxes, masks, keypoints, size, original, self.mask_paste))
    for j in range(len(labels)):
      record = {"image_id": image_id, "category_id": int(labels[j]), "bbox": _xywh(*boxes[j]),
                "score": float(scores[j])}
      if rles is not None:
        record["segmentation"] = rles[j]
      if keypoints is not None:
        record["keypoints"] = [float(v) for v in np.asarray(keypoints[j], np.float64).reshape(-1)]
      if in_original is not None:
        record[_ORIGINAL] = {field: values[j] for field, values in in_original.items()}
      self.detections.append(record)

  # ---- output ---------------------------------------------------------------------------------
  def ground_truth(self) -> dict:
    """The ground truth so far as a COCO dataset dict {images, annotations, categories}."""
    return {"images": list(self.images), "annotations": list(self.annotations),
            "categories": [{"id": c, "name": str(c)} for c in self.category_ids]}

  def results(self, iou_type: str) -> list[dict]:
    """The detections as one type's COCO results list (the fields torchvision's evaluation gives that
    type, so pycocotools takes mask areas from the masks and keypoint areas from the keypoints)."""
    if iou_type not in self.iou_types:
      raise ValueError(f"iou_type: expected one of the accumulated {self.iou_types}, got {iou_type!r}")
    field = {"box": "bbox", "mask": "segmentation", "keypoint": "keypoints"}[iou_type]
    return [{"image_id": r["image_id"], "category_id": r["category_id"], field: r[field], "score": r["score"]}
            for r in self.detections]

  def compute(self) -> dict[str, float]:
    """`{box_ap, box_ap50, ..., mask_ap, ..., keypoint_ap, ..., gt_dropped, images_gt_capped}` (see the
    module docstring; only the accumulated iou_types)."""
    out: dict[str, float] = {}
    gt = self.ground_truth()
    for iou_type in self.iou_types:
      sigmas = self._keypoint_sigmas if iou_type == "keypoint" else None
      stats = evaluate_coco(gt, self.results(iou_type), iou_type, oks_sigmas=sigmas)
      out.update({f"{iou_type}_{k}": v for k, v in stats.items()})
    out["gt_dropped"] = float(self.gt_dropped)
    out["images_gt_capped"] = float(self.images_gt_capped)
    return out

  def results_json(self, category_map: Mapping[int, int] | None = None) -> list[dict]:
    """COCO-format results: one dict per detection {image_id, category_id, bbox [x, y, w, h], score,
    segmentation (RLE, str counts), keypoints [x1, y1, v1, ...]} (the fields of the accumulated types),
    in pixels of the original image where the batch carried `original_size` (RLE size [h, w]), else of
    the evaluated one (module docstring).
    `category_map` renames class ids to the dataset's category ids (e.g. COCO's sparse 1..90)."""
    out = []
    for r in self.detections:
      r = dict(r)
      r.update(r.pop(_ORIGINAL, {}))
      if category_map is not None:
        if r["category_id"] not in category_map:
          raise ValueError(f"category_map: expected an entry for class {r['category_id']}, got keys "
                           f"{sorted(category_map)}")
        r["category_id"] = int(category_map[r["category_id"]])
      if "box" not in self.iou_types:
        r.pop("bbox")
      out.append(r)
    return out

  def write_results_json(self, path, category_map: Mapping[int, int] | None = None) -> paths.Path:
    """Writes `results_json(category_map)` to `path` (a JSON list, as the COCO evaluation server reads)."""
    path = paths.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(self.results_json(category_map)))
    return path
