"""Panoptic FPN's merge of instance and semantic predictions into one segment id per pixel, static shapes.

The heuristic of Kirillov et al. (Panoptic FPN, CVPR 2019; detectron2's
`combine_semantic_and_instance_outputs`), one image, N instance slots, K semantic labels:

  1. Instances in order of decreasing score (ties: lower index first); stop at the first score below
     `score_threshold`. An instance with an empty mask is skipped. With `a` = its mask area and `o` = its
     pixels already claimed by earlier instances: if o / a > `overlap_threshold` it is dropped, else it
     becomes the next segment and claims only its unclaimed pixels.
  2. Each semantic label c marked stuff, in increasing order: its pixels still unclaimed form one segment
     (possibly several connected pieces) if their count is >= `stuff_area_fraction` · H · W (and > 0),
     else they stay void.
  3. Everything else — labels not marked stuff (Panoptic FPN's single "thing" label), small stuff,
     pixels of dropped instances not covered by the semantic labels — is void, id 0.

Segment ids are consecutive in that order (1, 2, ... for kept instances, then kept stuff labels), as
detectron2 numbers them, inside fixed arrays of S = 1 + N + K entries (index = id; entry 0 is void), so
the output shapes never depend on the data: one compilation per image size. Batched: `jax.vmap`.

The loop over instances is a `lax.scan` carrying the claimed-pixel map: N steps of O(H·W) each.
Differences from detectron2 only in degenerate cases: a stuff region of 0 pixels is never a segment
(detectron2 makes one when its area limit is 0); ties in score are broken by index (torch's argsort
is not stable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dense_jax.checks import check_in_range, check_rank

# detectron2's PANOPTIC_FPN.COMBINE defaults. STUFF_AREA_LIMIT is 4096 pixels, applied at the original
# image resolution; COCO images are mostly 640 x 480, hence the fraction.
SCORE_THRESHOLD = 0.5
OVERLAP_THRESHOLD = 0.5
STUFF_AREA_FRACTION = 4096 / (640 * 480)


def _check(masks, scores, classes, semantic, is_stuff, valid, score_threshold, overlap_threshold,
           stuff_area_fraction):
  check_rank(masks, 3, "masks", "NHW")
  check_rank(semantic, 2, "semantic", "HW")
  check_rank(is_stuff, 1, "is_stuff", "K")
  n, h, w = masks.shape
  if semantic.shape != (h, w):
    raise ValueError(f"semantic: expected the masks' image shape {(h, w)}, got {semantic.shape}")
  per_mask = (("scores", scores), ("classes", classes)) + ((("valid", valid),) if valid is not None else ())
  for name, x in per_mask:
    if x.shape != (n,):
      raise ValueError(f"{name}: expected shape ({n},) (one per mask), got {x.shape}")
  for name, x in (("score_threshold", score_threshold), ("overlap_threshold", overlap_threshold),
                  ("stuff_area_fraction", stuff_area_fraction)):
    if not isinstance(x, (int, float)) or not 0 <= x <= 1:
      raise ValueError(f"{name}: expected a number in [0, 1], got {x!r}")
  if not jnp.issubdtype(semantic.dtype, jnp.integer):
    raise ValueError(f"semantic: expected integer labels, got dtype {semantic.dtype}")
  k = is_stuff.shape[0]
  check_in_range(semantic, 0, k, "semantic", f"labels of the {k} is_stuff entries",
                 hint="; to leave pixels void give them a label whose is_stuff entry is False (under jit "
                      "out-of-range labels are void, unchecked)")


def panoptic_merge(masks, scores, classes, semantic, is_stuff, *, valid=None,
                   score_threshold: float = SCORE_THRESHOLD, overlap_threshold: float = OVERLAP_THRESHOLD,
                   stuff_area_fraction: float = STUFF_AREA_FRACTION, mask_threshold: float = 0.5):
  """Merges one image's instances and semantic labels into a panoptic segmentation (rules: module doc).

  masks: `(N, H, W)` bool, or float probabilities (foreground where >= `mask_threshold`), at the
    resolution of `semantic`.
  scores: `(N,)` float; classes: `(N,)` int, the category of each instance; valid: `(N,)` bool or None
    (padding rows False; they are never kept).
  semantic: `(H, W)` int, the semantic label of each pixel (the argmax of the semantic head), in
    `[0, K)`: concrete labels outside it are a ValueError (an ignore label such as 255 is not void by
    itself: map it to a label whose `is_stuff` is False); under `jit` / `vmap` they cannot be checked
    and are void.
  is_stuff: `(K,)` bool, which semantic labels become stuff segments.
  Thresholds are Python numbers (static); `stuff_area_fraction` is a fraction of H·W.

  Returns a dict, S = 1 + N + K:
    panoptic          int32 (H, W)  segment id per pixel, 0 = void
    segment_classes   int32 (S,)    category of each id (the instance's class, or the stuff label)
    segment_is_thing  bool  (S,)    True for instance segments
    segment_valid     bool  (S,)    True for ids that exist (the void entry 0 is False)
    segment_instance  int32 (S,)    the index of the instance an id comes from, -1 for stuff and unused
    segment_scores    float32 (S,)  the instance's score, 0 for stuff and unused
  """
  masks, scores, classes = jnp.asarray(masks), jnp.asarray(scores), jnp.asarray(classes)
  semantic, is_stuff = jnp.asarray(semantic), jnp.asarray(is_stuff)
  valid = None if valid is None else jnp.asarray(valid)
  _check(masks, scores, classes, semantic, is_stuff, valid, score_threshold, overlap_threshold,
         stuff_area_fraction)
  n, h, w = masks.shape
  k = is_stuff.shape[0]
  s = 1 + n + k
  if jnp.issubdtype(masks.dtype, jnp.floating):
    masks = masks >= mask_threshold
  masks = masks.astype(bool)
  valid = jnp.ones((n,), bool) if valid is None else valid.astype(bool)

  order = jnp.argsort(-scores.astype(jnp.float32), stable=True)
  candidate = valid[order] & (scores[order] >= score_threshold)

  def claim(carry, inputs):
    claimed, next_id = carry
    mask, ok = inputs
    area = mask.sum(dtype=jnp.int32)
    overlap = (mask & (claimed > 0)).sum(dtype=jnp.int32)
    keep = ok & (area > 0) & ~(overlap.astype(jnp.float32) / jnp.maximum(area, 1) > overlap_threshold)
    claimed = jnp.where(mask & (claimed == 0) & keep, next_id, claimed)
    return (claimed, next_id + keep.astype(jnp.int32)), jnp.where(keep, next_id, 0)

  (claimed, next_id), instance_ids = jax.lax.scan(
      claim, (jnp.zeros((h, w), jnp.int32), jnp.int32(1)), (masks[order], candidate))

  in_range = (semantic >= 0) & (semantic < k)
  label = jnp.where(in_range, semantic, 0).astype(jnp.int32)
  free = (claimed == 0) & in_range
  stuff_area = jnp.bincount(label.reshape(-1), weights=free.reshape(-1).astype(jnp.int32), length=k)
  keep_stuff = is_stuff.astype(bool) & (stuff_area > 0) & (stuff_area >= stuff_area_fraction * h * w)
  stuff_ids = jnp.where(keep_stuff, next_id + jnp.cumsum(keep_stuff) - 1, 0).astype(jnp.int32)
  panoptic = jnp.where(claimed > 0, claimed, jnp.where(free, stuff_ids[label], 0))

  # Scatter per-segment facts to their ids; unkept rows write to index s (dropped).
  inst_slot = jnp.where(instance_ids > 0, instance_ids, s)
  stuff_slot = jnp.where(stuff_ids > 0, stuff_ids, s)
  labels = jnp.arange(k, dtype=jnp.int32)

  def scatter(fill, instance_values, stuff_values, dtype):
    out = jnp.full((s,), fill, dtype)
    out = out.at[inst_slot].set(instance_values.astype(dtype), mode="drop")
    return out.at[stuff_slot].set(stuff_values.astype(dtype), mode="drop")

  return {"panoptic": panoptic.astype(jnp.int32),
          "segment_classes": scatter(0, classes[order], labels, jnp.int32),
          "segment_is_thing": scatter(False, jnp.ones((n,), bool), jnp.zeros((k,), bool), bool),
          "segment_valid": scatter(False, jnp.ones((n,), bool), jnp.ones((k,), bool), bool),
          "segment_instance": scatter(-1, order, -jnp.ones((k,), jnp.int32), jnp.int32),
          "segment_scores": scatter(0.0, scores[order], jnp.zeros((k,)), jnp.float32)}
