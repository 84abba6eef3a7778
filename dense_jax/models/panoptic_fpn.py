"""Panoptic FPN (Kirillov, Girshick, He & Dollár, CVPR 2019): Mask R-CNN plus a semantic FPN head on the
same ResNet-FPN, merged into one segment id per pixel.

  images (B, H, W, 3) in [0, 1] → ResNet-FPN (P2..P6, `MaskRCNN.features`)
    → instance branch: RPN, box and mask heads, exactly `dense_jax.models.maskrcnn.MaskRCNN`
    → semantic branch: `heads.semantic_fpn.SemanticFPNHead` on P2..P5 → (B, H, W, n_stuff + 1) logits
      over the stuff classes (in increasing id order) plus one "thing" class (last channel)
  eval: the detections' 28×28 masks pasted at image resolution (`paste_masks`), the semantic argmax,
        and `ops.panoptic_merge` per image (thresholds are fields of the model, static).

Classes: one id space for both branches, the dataset's semantic ids `0 .. num_classes - 1`;
`thing_classes` are the ids that are instances (the box/mask heads predict them, as Mask R-CNN's labels;
the box classifier's stuff logits are pinned to -1e4, so detections are always things), every other id
is stuff. Defaults: COCO panoptic as `dense_jax.data.real` loads it (134 ids, things
1..80).

Output dict (train and eval):
  'instances'          Mask R-CNN's entry (see `dense_jax.models.maskrcnn`): head outputs and their
                       targets when training, padded detections in eval
  'panoptic_semantic'  (B, H, W, n_stuff + 1) float32 logits of the semantic head
  'panoptic' (eval)    dict, S = 1 + D + n_stuff + 1 segment slots (D = `box_detections_per_img`):
                       panoptic (B, H, W) int32 segment ids (0 void), segment_classes (B, S) int32 (the
                       dataset class id of each id), segment_is_thing (B, S) bool, segment_valid (B, S)
                       bool, segment_scores (B, S) float32

Masks are pasted as detectron2 pastes them: a separable bilinear resampling of the 28×28 map over the
continuous box (tent weights, zero outside the map; `dense_jax.ops.paste_masks`'s 'exact' mode, in JAX),
the inverse of the aligned mask-target crop the model trains on. torchvision's integer-cornered
`paste_masks_in_image` differs from it by at most a pixel row/column at box borders.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._common import check_image, scaled
from dense_jax.models.heads.semantic_fpn import SemanticFPNHead
from dense_jax.models.maskrcnn import NARROW, MaskRCNN
from dense_jax.models.registry import register_model
from dense_jax.ops import panoptic_merge as merge_lib

COCO_PANOPTIC_CLASSES = 134
COCO_THING_CLASSES = tuple(range(1, 81))


def paste_masks(masks, boxes, image_size: tuple[int, int]):
  """RoI mask probabilities `(B, D, M, M)` over boxes `(B, D, 4)` (x0, y0, x1, y1 px) → `(B, D, H, W)`.

  Pixel centre y + 0.5 sits at map coordinate `u = (y + 0.5 - y0) · M / (y1 - y0) - 0.5`; the value is the
  bilinear (tent) interpolation of the map there, with zeros outside it: `Ay (H, M) @ mask @ Ax (W, M)ᵀ`,
  `Ay[y, m] = max(0, 1 - |u_y - m|)`. Separable, so O(D·H·M·(M + W)) and no gather.
  """
  h, w = image_size
  m = masks.shape[-1]
  grid = jnp.arange(m, dtype=jnp.float32)

  def weights(lo, hi, n):
    centres = jnp.arange(n, dtype=jnp.float32) + 0.5
    u = (centres - lo[..., None]) * m / jnp.maximum(hi - lo, 1e-3)[..., None] - 0.5      # (B, D, n)
    return jnp.maximum(0.0, 1.0 - jnp.abs(u[..., None] - grid))                         # (B, D, n, M)

  boxes = boxes.astype(jnp.float32)
  ay = weights(boxes[..., 1], boxes[..., 3], h)
  ax = weights(boxes[..., 0], boxes[..., 2], w)
  return jnp.einsum("bdym,bdmn,bdxn->bdyx", ay, masks.astype(jnp.float32), ax)


class PanopticFPN(MaskRCNN):
  """Panoptic FPN (module docstring): `MaskRCNN` fields plus the semantic head and merge settings."""
  num_classes: int = COCO_PANOPTIC_CLASSES
  thing_classes: Sequence[int] = COCO_THING_CLASSES
  semantic_channels: int = 128
  score_threshold: float = merge_lib.SCORE_THRESHOLD
  overlap_threshold: float = merge_lib.OVERLAP_THRESHOLD
  stuff_area_fraction: float = merge_lib.STUFF_AREA_FRACTION
  mask_threshold: float = 0.5

  @property
  def stuff_classes(self) -> tuple[int, ...]:
    """The semantic ids that are stuff, increasing: channel i of the semantic head is `stuff_classes[i]`."""
    things = set(int(c) for c in self.thing_classes)
    return tuple(c for c in range(self.num_classes) if c not in things)

  def check_dataset(self, info) -> None:
    """As `MaskRCNN.check_dataset`, and the panoptic id space: `num_classes` covers the dataset's semantic
    ids and `thing_classes` are the dataset's (the semantic head has one channel per stuff class)."""
    name = getattr(info, "name", "the dataset")
    if self.num_classes < info.num_classes:
      raise ValueError(f"num_classes: expected at least the {info.num_classes} semantic classes of dataset "
                       f"{name!r} (ids 0..{info.num_classes - 1}), got {self.num_classes}; leave num_classes "
                       f"unset to take the dataset's")
    things = tuple(sorted(int(c) for c in getattr(info, "thing_classes", ()) or ()))
    if things and tuple(sorted(int(c) for c in self.thing_classes)) != things:
      raise ValueError(f"thing_classes: expected the thing classes of dataset {name!r} {things}, got "
                       f"{tuple(self.thing_classes)!r}")
    super().check_dataset(info)

  def setup(self):
    things = [int(c) for c in self.thing_classes]
    bad = [c for c in things if not 0 < c < self.num_classes]
    if not things or bad or len(set(things)) != len(things):
      raise ValueError(f"thing_classes: expected distinct ids in [1, num_classes={self.num_classes}), at least "
                       f"one, got {tuple(self.thing_classes)!r}")
    if not self.masks or self.num_keypoints:
      raise ValueError(f"masks, num_keypoints: Panoptic FPN needs the mask branch and no keypoints, got "
                       f"masks={self.masks!r}, num_keypoints={self.num_keypoints!r}")
    super().setup()
    self.semantic_head = SemanticFPNHead(len(self.stuff_classes) + 1, scaled(self.semantic_channels, self.width),
                                         dtype=self.dtype)

  def box_branch(self, feats, rois, image_size):
    """Mask R-CNN's box branch with the logits of stuff classes pinned to -1e4: the detector predicts only
    background and `thing_classes` (stuff is the semantic head's), in training (the RoI labels are things
    anyway) and in detection (their scores are ~0, below `box_score_thresh`)."""
    logits, deltas = super().box_branch(feats, rois, image_size)
    allowed = np.zeros(self.num_classes, bool)
    allowed[0] = True
    allowed[[int(c) for c in self.thing_classes]] = True
    return jnp.where(jnp.asarray(allowed), logits, -1e4), deltas

  def merge(self, instances, semantic_logits):
    """The 'panoptic' entry from eval detections and semantic logits (module docstring)."""
    size = semantic_logits.shape[1:3]
    masks = paste_masks(instances["masks"], instances["boxes"], size)
    labels = jnp.argmax(semantic_logits, -1).astype(jnp.int32)
    n_stuff = len(self.stuff_classes)
    is_stuff = jnp.asarray(np.arange(n_stuff + 1) < n_stuff)
    merge = jax.vmap(lambda mk, sc, cl, sem, ok: merge_lib.panoptic_merge(
        mk, sc, cl, sem, is_stuff, valid=ok, score_threshold=self.score_threshold,
        overlap_threshold=self.overlap_threshold, stuff_area_fraction=self.stuff_area_fraction,
        mask_threshold=self.mask_threshold))
    out = merge(masks, instances["scores"], instances["labels"], labels, instances["valid"])
    # Stuff segments carry the semantic channel; map it to the dataset's class id.
    stuff_ids = jnp.asarray(self.stuff_classes + (0,), jnp.int32)
    classes = jnp.where(out["segment_is_thing"], out["segment_classes"],
                        stuff_ids[jnp.clip(out["segment_classes"], 0, n_stuff)])
    return {"panoptic": out["panoptic"], "segment_classes": jnp.where(out["segment_valid"], classes, 0),
            "segment_is_thing": out["segment_is_thing"], "segment_valid": out["segment_valid"],
            "segment_scores": out["segment_scores"]}

  def __call__(self, images, *, train: bool = False, targets=None):
    check_image(images, "images", multiple=32, min_size=32, why="the FPN's P5 needs sizes divisible by 32")
    size = tuple(images.shape[1:3])
    feats = self.features(images, train)
    semantic = self.semantic_head(feats)
    anchors, logits, deltas = self.rpn_outputs(feats, size)
    proposals, proposal_valid = self.proposals(anchors, logits, deltas, size, train)
    if train:
      if targets is None:
        raise ValueError("targets: expected the batch (boxes, classes, num_instances, masks) when training, got None")
      instances = self.training_outputs(feats, anchors, logits, deltas, proposals, proposal_valid, targets, size)
      return {"instances": instances, "panoptic_semantic": semantic}
    instances = self.detect(feats, proposals, proposal_valid, size)
    instances["proposals"], instances["proposal_valid"] = proposals, proposal_valid
    return {"instances": instances, "panoptic_semantic": semantic, "panoptic": self.merge(instances, semantic)}


def _builder(depth: int, narrow: bool):
  defaults = dict(depth=depth, **(NARROW if narrow else {}))

  def build(**kwargs):
    return PanopticFPN(**{**defaults, **kwargs})
  return build


for _depth in (50, 101):
  for _suffix, _narrow in (("", False), ("_narrow", True)):
    _name = f"panoptic_fpn_resnet{_depth}{_suffix}"
    _fn = _builder(_depth, _narrow)
    _fn.__qualname__ = _fn.__name__ = _name
    register_model(_name)(_fn)
