"""Panoptic quality (Kirillov et al., CVPR 2019) with the rules of the COCO panoptic evaluation.

Per image, a predicted segment p and a ground-truth segment g of the same category *match* when

  IoU(p, g) = |p ∩ g| / (|p| + |g| - |p ∩ g| - |p ∩ void|)  >  0.5

(the union leaves out the predicted pixels that fall on ground-truth void, id 0). Because the segments of
one map are disjoint, IoU > 0.5 makes every match unique, so no assignment problem is solved. Then, per
category c, summed over all images:

  TP_c   matched pairs;                 IoU_c = sum of their IoUs
  FN_c   unmatched non-crowd ground-truth segments
  FP_c   unmatched predicted segments, except those of which more than half of the pixels lie on void or
         on crowd ground truth of category c (such a prediction is ignored, neither FP nor TP)

Crowd ground truth (`iscrowd` 1) is never matched and never a FN. From the sums:

  PQ_c = IoU_c / (TP_c + FP_c / 2 + FN_c / 2),  SQ_c = IoU_c / TP_c (0 if TP_c = 0),
  RQ_c = TP_c / (TP_c + FP_c / 2 + FN_c / 2)    (so PQ_c = SQ_c * RQ_c)

and "all" / "things" / "stuff" are the plain means of PQ_c, SQ_c, RQ_c over the categories of that group
that appear (TP_c + FP_c + FN_c > 0); `n` is how many appear (0 -> the means are reported as 0.0).

This is cocodataset/panopticapi's `pq_compute` except where it has no defined answer:
  - an unmatched prediction's crowd overlap counts every crowd segment of its category in the image
    (panopticapi keeps one crowd id per category, the last listed; COCO has at most one, so the same);
  - a segment listed in a segment dict but absent from its map (zero pixels) is ignored (panopticapi
    raises for predictions and counts a ground-truth one as a FN); merged outputs with a fixed number of
    segment slots list empty ones;
  - a group with no category that appears gives 0.0 with n = 0 (panopticapi divides by zero).
`per_class` lists every category of `categories`, with 0.0 for those that do not appear (as panopticapi).

Two forms:
  `pq_compute(...)`  NumPy, any segment ids, dict segment descriptions, strict input checks.
  `pq_stats(...)` -> `pq_from_stats(...)`  jit-able per-batch sums over padded arrays (the `panoptic`,
                    `segment_classes` layout of the data sources); the sums add over batches and devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.checks import check_rank

STAT_KEYS = ("tp", "fp", "fn", "iou")


def _check_categories(categories: Mapping) -> dict[int, bool]:
  """`{category_id: {"isthing": 0|1}}` -> `{category_id: is_thing}` with clear errors."""
  if not isinstance(categories, Mapping) or not categories:
    raise ValueError(f"categories: expected a non-empty dict {{category_id: {{'isthing': 0|1}}}}, "
                     f"got {categories!r}")
  out = {}
  for cat, info in categories.items():
    if isinstance(cat, bool) or not isinstance(cat, (int, np.integer)) or cat < 0:
      raise ValueError(f"categories: expected int category ids >= 0, got {cat!r}")
    if not isinstance(info, Mapping) or info.get("isthing") not in (0, 1, True, False):
      raise ValueError(f"categories[{cat}]: expected {{'isthing': 0|1}}, got {info!r}")
    out[int(cat)] = bool(info["isthing"])
  return out


def _check_segments(segments, ids: np.ndarray, known: Mapping[int, bool], name: str, index: int,
                    crowd: bool) -> tuple[dict[int, int], dict[int, bool]]:
  """Validates one image's segment dict against its id map -> ({id: category}, {id: iscrowd})."""
  if not isinstance(segments, Mapping):
    raise ValueError(f"{name}[{index}]: expected a dict {{segment_id: {{'category_id': int}}}}, got "
                     f"{type(segments).__name__}")
  category, is_crowd = {}, {}
  for seg_id, info in segments.items():
    if isinstance(seg_id, bool) or not isinstance(seg_id, (int, np.integer)) or seg_id <= 0:
      raise ValueError(f"{name}[{index}]: segment ids expected ints >= 1 (0 is void), got {seg_id!r}")
    if not isinstance(info, Mapping) or "category_id" not in info:
      raise ValueError(f"{name}[{index}][{seg_id}]: expected a dict with 'category_id', got {info!r}")
    cat = info["category_id"]
    if cat not in known:
      raise ValueError(f"{name}[{index}][{seg_id}]: category_id {cat!r} is not in categories "
                       f"(image {index}, segment id {seg_id}); known: {sorted(known)}")
    flag = info.get("iscrowd", 0) if crowd else 0
    if flag not in (0, 1, True, False):
      raise ValueError(f"{name}[{index}][{seg_id}]: iscrowd expected 0 or 1, got {flag!r}")
    category[int(seg_id)], is_crowd[int(seg_id)] = int(cat), bool(flag)
  present = np.unique(ids)
  missing = [int(v) for v in present if v != 0 and int(v) not in category]
  if missing:
    ids_name = name.replace("segments", "ids")
    raise ValueError(f"{ids_name}[{index}]: segment id {missing[0]} is in the map of image {index} but not in "
                     f"{name}[{index}] (ids missing there: {missing[:10]})")
  return category, is_crowd


def _image_stats(gt: np.ndarray, gt_cat: dict, gt_crowd: dict, pred: np.ndarray, pred_cat: dict,
                 stats: dict[str, np.ndarray]) -> None:
  """Adds one image's per-category TP, FP, FN and IoU sums into `stats` (arrays indexed by category)."""
  base = int(pred.max()) + 1
  pairs, counts = np.unique(gt.astype(np.int64) * base + pred, return_counts=True)
  gt_of, pred_of = pairs // base, pairs % base
  gt_area, pred_area, overlap = {}, {}, {}
  for g, p, n in zip(gt_of.tolist(), pred_of.tolist(), counts.tolist()):
    gt_area[g] = gt_area.get(g, 0) + n
    pred_area[p] = pred_area.get(p, 0) + n
    overlap[(g, p)] = n
  gt_matched, pred_matched = set(), set()
  for (g, p), inter in overlap.items():
    if g == 0 or p == 0 or gt_crowd[g] or gt_cat[g] != pred_cat[p]:
      continue
    union = pred_area[p] + gt_area[g] - inter - overlap.get((0, p), 0)
    if 2 * inter > union:  # IoU > 0.5, exactly, in integers
      stats["tp"][gt_cat[g]] += 1
      stats["iou"][gt_cat[g]] += inter / union
      gt_matched.add(g)
      pred_matched.add(p)
  for g in gt_area:
    if g != 0 and not gt_crowd[g] and g not in gt_matched:
      stats["fn"][gt_cat[g]] += 1
  crowd_of = {}  # category -> crowd ground-truth ids of it in this image
  for g in gt_area:
    if g != 0 and gt_crowd[g]:
      crowd_of.setdefault(gt_cat[g], []).append(g)
  for p in pred_area:
    if p == 0 or p in pred_matched:
      continue
    ignored = overlap.get((0, p), 0) + sum(overlap.get((g, p), 0) for g in crowd_of.get(pred_cat[p], ()))
    if not 2 * ignored > pred_area[p]:  # not more than half on void or own-category crowd
      stats["fp"][pred_cat[p]] += 1


def pq_compute(gt_ids: Sequence, gt_segments: Sequence[Mapping], pred_ids: Sequence,
               pred_segments: Sequence[Mapping], categories: Mapping) -> dict:
  """Panoptic quality of predicted against ground-truth segmentations (rules: the module docstring).

  gt_ids, pred_ids: sequences (one per image) of int segment-id maps `(H, W)`, 0 = void; the two maps of
    one image have the same shape.
  gt_segments, pred_segments: sequences (one per image) of `{segment_id: {"category_id": int,
    "iscrowd": 0|1}}`; `iscrowd` is optional (default 0) and ignored for predictions. Every non-zero id in
    a map must be listed.
  categories: `{category_id: {"isthing": 0|1}}`.

  Returns `{"all": {"pq", "sq", "rq", "n"}, "things": {...}, "stuff": {...},
  "per_class": {category_id: {"pq", "sq", "rq"}}}`, floats in [0, 1].
  """
  known = _check_categories(categories)
  lengths = {"gt_ids": len(gt_ids), "gt_segments": len(gt_segments), "pred_ids": len(pred_ids),
             "pred_segments": len(pred_segments)}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"pq_compute: expected one entry per image in each argument, got lengths {lengths}")
  stats = {k: np.zeros((max(known) + 1,), np.float64 if k == "iou" else np.int64) for k in STAT_KEYS}
  for i in range(len(gt_ids)):
    gt, pred = np.asarray(gt_ids[i]), np.asarray(pred_ids[i])
    for name, ids in (("gt_ids", gt), ("pred_ids", pred)):
      if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name}[{i}]: expected an int (H, W) map of image {i}, got {ids.dtype} {ids.shape}")
      if ids.size and ids.min() < 0:
        raise ValueError(f"{name}[{i}]: expected segment ids >= 0 in image {i}, got {int(ids.min())}")
    if gt.shape != pred.shape:
      raise ValueError(f"pred_ids[{i}]: expected the shape of gt_ids[{i}] {gt.shape} in image {i}, "
                       f"got {pred.shape}")
    gt_cat, gt_crowd = _check_segments(gt_segments[i], gt, known, "gt_segments", i, crowd=True)
    pred_cat, _ = _check_segments(pred_segments[i], pred, known, "pred_segments", i, crowd=False)
    if gt.size:
      _image_stats(gt, gt_cat, gt_crowd, pred, pred_cat, stats)
  return pq_from_stats(stats, categories)


def pq_from_stats(stats: Mapping[str, np.ndarray], categories: Mapping) -> dict:
  """`{"all", "things", "stuff", "per_class"}` (as `pq_compute`) from per-category sums.

  stats: `{"tp", "fp", "fn", "iou"}`, arrays `(K,)` indexed by category id (from `pq_stats`, summed over
    batches, or `pq_compute`'s own); categories: `{category_id: {"isthing": 0|1}}` with ids < K.
  """
  known = _check_categories(categories)
  tp, fp, fn, iou = (np.asarray(stats[k], np.float64) for k in STAT_KEYS)
  if not tp.shape == fp.shape == fn.shape == iou.shape or tp.ndim != 1:
    raise ValueError(f"stats: expected four (K,) arrays, got shapes {[np.shape(stats[k]) for k in STAT_KEYS]}")
  if max(known) >= tp.shape[0]:
    raise ValueError(f"categories: expected ids < {tp.shape[0]} (the length of the stats), got {max(known)}")
  per_class, present = {}, {}
  for cat in sorted(known):
    denominator = tp[cat] + 0.5 * fp[cat] + 0.5 * fn[cat]
    present[cat] = denominator > 0
    sq = iou[cat] / tp[cat] if tp[cat] > 0 else 0.0
    rq = tp[cat] / denominator if denominator > 0 else 0.0
    pq = iou[cat] / denominator if denominator > 0 else 0.0
    per_class[cat] = {"pq": float(pq), "sq": float(sq), "rq": float(rq)}

  def average(selected):
    cats = [c for c in selected if present[c]]
    if not cats:
      return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    return {k: float(np.mean([per_class[c][k] for c in cats])) for k in ("pq", "sq", "rq")} | {"n": len(cats)}

  return {"all": average(known), "things": average([c for c in known if known[c]]),
          "stuff": average([c for c in known if not known[c]]), "per_class": per_class}


def pq_stats(gt_ids, gt_classes, pred_ids, pred_classes, num_classes: int, gt_is_crowd=None):
  """Per-category TP/FP/FN/IoU sums of a batch, jit-able with static shapes (rules: module docstring).

  gt_ids: int `(B, H, W)`, segment ids in `[0, S)`, 0 = void; gt_classes: int `(B, S)`, the category of each
    id (index = id; entries of ids absent from the map are ignored); gt_is_crowd: bool `(B, S)` or None.
  pred_ids: int `(B, H, W)` in `[0, P)`; pred_classes: int `(B, P)`.
  num_classes: K, category ids in `[0, K)`.
  Ids outside `[0, S)` / `[0, P)` are taken as void and segments of classes outside `[0, K)` are not
  counted (neither can be checked inside jit; `pq_compute` checks them).

  Returns `{"tp", "fp", "fn": int32 (K,), "iou": float32 (K,)}`; add them over batches (and devices), then
  `pq_from_stats`. Cost: one-hot contractions of `B·H·W × S` and `× P`; the pair overlap matrix
  `(B, S, P)`.
  """
  check_rank(gt_ids, 3, "gt_ids", "BHW")
  check_rank(pred_ids, 3, "pred_ids", "BHW")
  check_rank(gt_classes, 2, "gt_classes", "BS")
  check_rank(pred_classes, 2, "pred_classes", "BP")
  if gt_ids.shape != pred_ids.shape:
    raise ValueError(f"pred_ids: expected the shape of gt_ids {gt_ids.shape}, got {pred_ids.shape}")
  batch = gt_ids.shape[0]
  if gt_classes.shape[0] != batch or pred_classes.shape[0] != batch:
    raise ValueError(f"gt_classes, pred_classes: expected batch {batch}, got {gt_classes.shape}, "
                     f"{pred_classes.shape}")
  if gt_is_crowd is None:
    gt_is_crowd = jnp.zeros(gt_classes.shape, bool)
  if gt_is_crowd.shape != gt_classes.shape:
    raise ValueError(f"gt_is_crowd: expected the shape of gt_classes {gt_classes.shape}, got {gt_is_crowd.shape}")
  if num_classes < 1:
    raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
  s, p = gt_classes.shape[1], pred_classes.shape[1]
  gt_ids = jnp.where((gt_ids >= 0) & (gt_ids < s), gt_ids, 0).reshape(batch, -1)
  pred_ids = jnp.where((pred_ids >= 0) & (pred_ids < p), pred_ids, 0).reshape(batch, -1)
  gt_onehot = jax.nn.one_hot(gt_ids, s, dtype=jnp.int8)
  pred_onehot = jax.nn.one_hot(pred_ids, p, dtype=jnp.int8)
  overlap = jnp.einsum("bns,bnp->bsp", gt_onehot, pred_onehot, preferred_element_type=jnp.int32)
  gt_area, pred_area = overlap.sum(2), overlap.sum(1)            # (B, S), (B, P)
  on_void = overlap[:, 0, :]                                     # predicted pixels on void, (B, P)
  gt_valid = (jnp.arange(s) > 0) & (gt_area > 0)
  pred_valid = (jnp.arange(p) > 0) & (pred_area > 0)
  crowd = gt_is_crowd.astype(bool)
  same = gt_classes[:, :, None] == pred_classes[:, None, :]
  union = pred_area[:, None, :] + gt_area[:, :, None] - overlap - on_void[:, None, :]
  match = (gt_valid & ~crowd)[:, :, None] & pred_valid[:, None, :] & same & (2 * overlap > union)
  iou = jnp.where(match, overlap / jnp.maximum(union, 1), 0.0).astype(jnp.float32)
  gt_matched, pred_matched = match.any(2), match.any(1)
  crowd_same = jnp.einsum("bsp,bs->bp", jnp.where(same, overlap, 0), crowd.astype(jnp.int32))
  ignored = 2 * (on_void + crowd_same) > pred_area
  gt_hot = jax.nn.one_hot(gt_classes, num_classes, dtype=jnp.int32)      # (B, S, K)
  pred_hot = jax.nn.one_hot(pred_classes, num_classes, dtype=jnp.int32)  # (B, P, K)

  def per_class(weights, onehot):
    return jnp.einsum("bs,bsk->k", weights.astype(onehot.dtype), onehot)

  return {"tp": per_class(gt_matched, gt_hot),
          "fp": per_class(pred_valid & ~pred_matched & ~ignored, pred_hot),
          "fn": per_class(gt_valid & ~crowd & ~gt_matched, gt_hot),
          "iou": jnp.einsum("bs,bsk->k", iou.sum(2), gt_hot.astype(jnp.float32))}
