"""Mask R-CNN (He, Gkioxari, Dollár & Girshick, ICCV 2017) and Keypoint R-CNN on a ResNet-FPN, torchvision's
layout and defaults, with static shapes (one compilation for a whole run).

  images (B, H, W, 3) in [0, 1] → (x - mean) / std (ImageNet's, torchvision's GeneralizedRCNNTransform)
  → ResNet-FPN (`backbones.fpn`): P2..P6
  → RPN (`heads.rpn`) on every level; anchors 32..512 on P2..P6, ratios 0.5 / 1 / 2 (`ops.anchors`)
  → proposals: per level the `rpn_pre_nms_top_n` highest objectness logits, decoded (weights 1, 1, 1, 1),
    clipped to the image, boxes narrower than 1e-3 px dropped, NMS at 0.7 per level (`ops.nms`),
    the `rpn_post_nms_top_n` best of the image kept (padded, with a validity mask)
  → RoIAlign 7×7 (sampling ratio 2, FPN level rule, `ops.roi_align`) → box head (two 1024-wide FC
    layers) → class logits + per-class deltas (weights 10, 10, 5, 5)
  → mask branch: RoIAlign 14×14 → four 3×3 convs → 2× transposed conv → 28×28 logits per class
  → keypoint branch (Keypoint R-CNN): RoIAlign 14×14 → eight 3×3 512 convs → transposed conv + 2×
    bilinear → 56×56 logits per keypoint.

Training (`train=True`, `targets=` the batch: `boxes (B, M, 4)` (y0, x0, y1, x1), `classes (B, M)`,
`num_instances (B,)`, `masks (B, M, H, W)`, `keypoints (B, M, K, 3)`; see `dense_jax.data.sources`):
RPN targets by IoU matching of the anchors (0.7 / 0.3, low-quality matches kept) and a balanced sample of
`rpn_batch_size_per_image` anchors (half positive at most); RoI targets by matching the proposals plus the
ground-truth boxes (0.5 / 0.5) and a sample of `box_batch_size_per_image` RoIs (a quarter positive at
most, positives first). Sampling draws from the `dropout` RNG stream (the engine's per-step key). The
output holds the raw head outputs and their targets; `dense_jax.losses.detection` turns them into
torchvision's losses. Eval (`train=False`): detections padded to `box_detections_per_img` with `valid`.

Static sizes: every count is a config number (pre/post-NMS top-k, sampled anchors and RoIs, positive RoIs
`box_batch_size_per_image · box_positive_fraction` for the mask/keypoint heads — or fewer, `num_sampled_masks`
(TF Model Garden's name): the heads then train on at most that many of an image's positives, a uniformly
random subset when there are more, since positives come first in random order — candidates before the
final class-wise NMS `box_candidates_per_img`, detections per image) or the targets' padded `M`; an
image without instances trains with finite losses (only negatives are sampled). All images of a batch
share one (H, W), divisible by 32 (torchvision pads to 32 too); boxes are clipped to it.

Output dict (task name → dict): Mask R-CNN `{'instances': ...}`, Keypoint R-CNN `{'keypoints': ...}`.
  eval:  boxes (B, D, 4) xyxy px, scores (B, D), labels (B, D) int32 (0 on padding), valid (B, D) bool,
         masks (B, D, 28, 28) probabilities of the predicted class inside the box (Mask R-CNN),
         keypoints (B, D, K, 3) (x, y, 1) px and keypoint_scores (B, D, K) (Keypoint R-CNN),
         proposals (B, P, 4), proposal_valid (B, P).
  train: rpn_logits (B, A), rpn_deltas (B, A, 4), rpn_labels (B, A) int32 (1 / 0 / -1 not sampled),
         rpn_box_targets (B, A, 4); roi_class_logits (B, R, C), roi_box_deltas (B, R, C, 4),
         roi_labels (B, R) int32 (class, 0 background, -1 not sampled), roi_box_targets (B, R, 4);
         mask_logits (B, Rp, 28, 28) (the matched class's channel), mask_targets (B, Rp, 28, 28),
         mask_valid (B, Rp); keypoint_logits (B, Rp, 56, 56, K), keypoint_targets (B, Rp, K) int32
         (flat index into 56²), keypoint_valid (B, Rp, K).

Parameter counts equal torchvision 0.29's (`maskrcnn_resnet50_fpn(weights=None)` 44,454,513;
`keypointrcnn_resnet50_fpn` 59,190,378); with `frozen_bn="buffers"` (torchvision's pretrained builds,
FrozenBatchNorm2d in the backbone) 44,401,393 and 59,137,258. Deviations: final keypoint positions are
the argmax of the 56×56 map mapped into the box (torchvision first resizes each map bicubically to the
box's size in pixels, a data-dependent shape); mask targets are the ground-truth masks cropped from the
exact box (`mask_target_aligned=True`, detectron2's `crop_and_resize`, RoIAlign aligned=True), which the
instances task's default 'exact' paste inverts. torchvision crops with aligned=False (half a pixel off)
and pastes with integer corners one pixel wider than the box: on dense_shapes/small_64's 5-25 px objects
that pair caps mask AP at 0.515 even for a perfect model (`dense_jax.ops.paste_masks`); torchvision's
recipe is `mask_target_aligned=False` with the task's `mask_paste='torchvision'`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._common import Dtype, check_image, scaled
from dense_jax.models.backbones.fpn import ResNetFPN
from dense_jax.models.heads.box import FastRCNNPredictor, TwoMLPHead
from dense_jax.models.heads.keypoint import KeypointHead, KeypointPredictor
from dense_jax.models.heads.mask import MaskHead, MaskPredictor
from dense_jax.models.heads.rpn import RPNHead
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import register_model
from dense_jax.ops import boxes as box_ops, rcnn_targets
from dense_jax.ops.anchors import FPN_ANCHOR_SIZES, FPN_ASPECT_RATIOS, anchors_per_location, fpn_anchors_per_level
from dense_jax.ops.keypoint_targets import keypoint_targets
from dense_jax.ops.nms import batched_nms_padded
from dense_jax.ops.roi_align import multilevel_roi_align


def _take(x, idx):
  """`x (B, N, ...)[b, idx[b]]` for `idx (B, K)`: per-image gather along axis 1."""
  return jax.vmap(lambda a, i: a[i])(x, idx)


def heatmaps_to_keypoints(logits, boxes):
  """Keypoints `(R, K, 3)` = (x, y, 1) px and scores `(R, K)` from `logits (R, S, S, K)` over `boxes (R, 4)`.

  The arg-max cell `(i, j)` of each map is mapped to `x = x0 + (j + 0.5) · w / S` (and y likewise), w the
  box width clamped to >= 1 as torchvision does; the score is the logit there.
  """
  r, s, _, k = logits.shape
  flat = logits.reshape(r, s * s, k)
  pos = jnp.argmax(flat, axis=1)                                            # (R, K)
  score = jnp.take_along_axis(flat, pos[:, None], axis=1)[:, 0]
  j, i = (pos % s).astype(jnp.float32), (pos // s).astype(jnp.float32)
  w = jnp.maximum(boxes[:, 2] - boxes[:, 0], 1.0)[:, None]
  h = jnp.maximum(boxes[:, 3] - boxes[:, 1], 1.0)[:, None]
  x = boxes[:, 0:1] + (j + 0.5) * w / s
  y = boxes[:, 1:2] + (i + 0.5) * h / s
  return jnp.stack([x, y, jnp.ones_like(x)], axis=-1), score


class MaskRCNN(nn.Module):
  """Mask R-CNN / Keypoint R-CNN (see the module docstring); `__call__(images, *, train, targets=None)`.

  `masks=False, num_keypoints=K` is Keypoint R-CNN. `width` scales the trunk, the FPN and every head
  (the narrow CPU variants).
  """
  num_classes: int = 91
  depth: int = 50
  width: float = 1.0
  frozen_bn: bool | str = False
  masks: bool = True
  num_keypoints: int = 0
  fpn_channels: int = 256
  representation: int = 1024
  mask_layers: Sequence[int] = (256, 256, 256, 256)
  keypoint_layers: Sequence[int] = (512,) * 8
  keypoint_head_norm: str = ""   # 'gn': GroupNorm in the keypoint head (heads/keypoint.py says why)
  anchor_sizes: Sequence[int] = FPN_ANCHOR_SIZES
  aspect_ratios: Sequence[float] = FPN_ASPECT_RATIOS
  rpn_pre_nms_top_n_train: int = 2000
  rpn_pre_nms_top_n_test: int = 1000
  rpn_post_nms_top_n_train: int = 2000
  rpn_post_nms_top_n_test: int = 1000
  rpn_nms_thresh: float = 0.7
  rpn_fg_iou_thresh: float = 0.7
  rpn_bg_iou_thresh: float = 0.3
  rpn_batch_size_per_image: int = 256
  rpn_positive_fraction: float = 0.5
  rpn_score_thresh: float = 0.0
  box_score_thresh: float = 0.05
  box_nms_thresh: float = 0.5
  box_detections_per_img: int = 100
  box_candidates_per_img: int = 1000
  box_fg_iou_thresh: float = 0.5
  box_bg_iou_thresh: float = 0.5
  box_batch_size_per_image: int = 512
  box_positive_fraction: float = 0.25
  input_norm: str = "imagenet"   # see dense_jax.models.inputs
  roi_align_backend: str = "gather"   # 'einsum' on TPU (ops.roi_align)
  mask_target_sampling_ratio: int = -1  # torchvision's adaptive grid; 2 is cheaper on large images
  # Mask targets cropped from the exact box (detectron2's), the crop the instances task's 'exact' paste
  # inverts; False = torchvision's half-pixel-shifted crop (its recipe; pair with mask_paste='torchvision').
  mask_target_aligned: bool = True
  # Positive RoI slots per image for the mask / keypoint heads in training; 0 = all
  # box_batch_size_per_image * box_positive_fraction (128: torchvision's bound, its heads see the actual
  # positives, ~10-20 per image on COCO-like data). Static shapes make the heads pay for every slot, so a
  # smaller K (e.g. 32) trains them on <= K positives, a random subset only where an image has more.
  num_sampled_masks: int = 0
  merge_classes: bool = False  # every instance is class 1 (Keypoint R-CNN: "an object with keypoints")
  # With merge_classes: the dataset classes that make the one class (the dataset's `keypoint_classes`, e.g.
  # COCO's person); instances of the others are left out of the targets (background). () = every class.
  object_classes: Sequence[int] = ()
  dtype: Dtype = jnp.float32

  needs_targets = True  # The engine passes the batch as `targets=` when training.

  @property
  def head_slots(self) -> int:
    """Positive RoI slots per image that the mask / keypoint heads train on (static): every positive the
    RoI sample can hold, `box_batch_size_per_image · box_positive_fraction`, or `num_sampled_masks` if fewer."""
    slots = max(1, int(self.box_batch_size_per_image * self.box_positive_fraction))
    return min(slots, self.num_sampled_masks) if self.num_sampled_masks else slots

  @property
  def task(self) -> str:
    return "instances" if self.masks else "keypoints"

  def check_dataset(self, info) -> None:
    """ValueError, naming the field, unless this model can learn the labels of the dataset `info` (a
    `DatasetInfo`): `num_classes` above every thing class id (else the targets index past the class
    logits: NaN or garbage at step 1), `num_keypoints` equal to the dataset's, `object_classes` among
    its classes. Called by `dense_jax.models.build.build_model`, before anything is traced."""
    name = getattr(info, "name", "the dataset")
    things = tuple(int(c) for c in getattr(info, "thing_classes", ()) or ())
    if self.merge_classes:
      bad = [int(c) for c in self.object_classes if int(c) >= info.num_classes]
      if bad:
        raise ValueError(f"object_classes: expected class ids of dataset {name!r} (< its {info.num_classes} "
                         f"classes; thing classes {things}), got {tuple(self.object_classes)!r}")
    else:
      needed = max(things) + 1 if things else int(info.num_classes)
      if self.num_classes < needed:
        raise ValueError(f"num_classes: expected at least {needed} (background + class ids up to {needed - 1}: "
                         f"dataset {name!r} has {info.num_classes} classes, thing classes {things}), got "
                         f"{self.num_classes}; leave num_classes unset to take the dataset's {info.num_classes}")
    if self.num_keypoints and self.num_keypoints != getattr(info, "num_keypoints", 0):
      have = getattr(info, "num_keypoints", 0)
      raise ValueError(f"num_keypoints: expected the {have} keypoints per instance of dataset {name!r}"
                       f"{' (it has no keypoints)' if not have else ''}, got {self.num_keypoints}")

  def setup(self):
    for name in ("rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
                 "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_detections_per_img",
                 "box_candidates_per_img", "box_batch_size_per_image"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    k = self.num_sampled_masks
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
      raise ValueError(f"num_sampled_masks: expected an int >= 0 (0: every positive slot), got {k!r}")
    if self.num_classes < 2:
      raise ValueError(f"num_classes: expected >= 2 (background + at least one class), got {self.num_classes!r}")
    objects = tuple(self.object_classes)
    if objects and (not self.merge_classes or any(isinstance(c, bool) or not isinstance(c, (int, np.integer))
                                                   or c < 1 for c in objects)):
      raise ValueError(f"object_classes: expected class ids >= 1 with merge_classes=True, got {objects!r} "
                       f"(merge_classes={self.merge_classes!r})")
    if not self.masks and self.num_keypoints < 1:
      raise ValueError(f"num_keypoints: expected >= 1 without a mask branch (Keypoint R-CNN), got "
                       f"{self.num_keypoints!r}")
    w = self.width
    self.backbone = ResNetFPN(depth=self.depth, width=w, channels=self.fpn_channels, frozen_bn=self.frozen_bn,
                              dtype=self.dtype)
    # Sizes per level x ratios (anchor_sizes may give several sizes per level, e.g. ((10, 16), (20, 32), ...)).
    self.rpn = RPNHead(num_anchors=anchors_per_location(self.anchor_sizes, self.aspect_ratios), dtype=self.dtype)
    self.box_head = TwoMLPHead(scaled(self.representation, w), dtype=self.dtype)
    self.box_predictor = FastRCNNPredictor(self.num_classes, dtype=self.dtype)
    if self.masks:
      layers = tuple(scaled(c, w) for c in self.mask_layers)
      self.mask_head = MaskHead(layers, dtype=self.dtype)
      self.mask_predictor = MaskPredictor(self.num_classes, layers[-1], dtype=self.dtype)
    if self.num_keypoints:
      self.keypoint_head = KeypointHead(tuple(scaled(c, w) for c in self.keypoint_layers),
                                        norm=self.keypoint_head_norm, dtype=self.dtype)
      self.keypoint_predictor = KeypointPredictor(self.num_keypoints, dtype=self.dtype)

  # ------------------------------------------------------------------------------------------ pieces

  def features(self, images, train: bool):
    """FPN maps `{'p2'..'p6'}` of images in [0, 1], normalised (in float32) by `input_norm`."""
    images = normalise_images(images.astype(jnp.float32), self.input_norm)
    return self.backbone(images.astype(self.dtype), train)

  def rpn_outputs(self, feats, image_size):
    """Per level: anchors `(N_l, 4)` (NumPy), objectness logits `(B, N_l)`, deltas `(B, N_l, 4)`."""
    maps = list(feats.values())
    logits, deltas = self.rpn(maps)
    b = maps[0].shape[0]
    anchors = fpn_anchors_per_level(image_size, self.anchor_sizes, self.aspect_ratios,
                                    feature_sizes=[m.shape[1:3] for m in maps])
    logits = [l.reshape(b, -1).astype(jnp.float32) for l in logits]
    deltas = [d.reshape(b, -1, 4).astype(jnp.float32) for d in deltas]
    return anchors, logits, deltas

  def proposals(self, anchors, logits, deltas, image_size, train: bool):
    """torchvision's `RegionProposalNetwork.filter_proposals` with static shapes:
    `(boxes (B, P, 4), valid (B, P))`, P = post-NMS top-n, boxes in descending objectness."""
    pre = self.rpn_pre_nms_top_n_train if train else self.rpn_pre_nms_top_n_test
    post = self.rpn_post_nms_top_n_train if train else self.rpn_post_nms_top_n_test
    boxes, scores, levels = [], [], []
    for level, (a, l, d) in enumerate(zip(anchors, logits, deltas)):
      k = min(pre, a.shape[0])
      top, idx = jax.lax.top_k(jax.lax.stop_gradient(l), k)
      sel_deltas = _take(jax.lax.stop_gradient(d), idx)
      boxes.append(box_ops.decode_boxes(sel_deltas, jnp.asarray(a)[idx]))
      scores.append(top)
      levels.append(jnp.full(top.shape, level, jnp.int32))
    boxes = box_ops.clip_boxes_to_image(jnp.concatenate(boxes, 1), image_size)
    probs = jax.nn.sigmoid(jnp.concatenate(scores, 1))
    levels = jnp.concatenate(levels, 1)
    valid = box_ops.large_boxes_mask(boxes, 1e-3) & (probs >= self.rpn_score_thresh)
    keep, keep_valid = batched_nms_padded(boxes, probs, levels, self.rpn_nms_thresh, post, valid=valid)
    return jax.lax.stop_gradient(_take(boxes, keep)), keep_valid

  def roi_features(self, feats, boxes, size: int, image_size):
    """MultiScaleRoIAlign over P2..P5 (`size`×`size`, sampling ratio 2, torchvision's level rule):
    `boxes (B, R, 4)` → `(B, R, size, size, C)`."""
    maps = [feats[k] for k in ("p2", "p3", "p4", "p5")]
    return multilevel_roi_align(maps, jax.lax.stop_gradient(boxes), (size, size), image_size, sampling_ratio=2,
                                aligned=False, backend=self.roi_align_backend)

  def box_predictions(self, pooled):
    """Box head and predictor on RoI features `(B, R, 7, 7, C)`: class logits `(B, R, K)` and per-class
    deltas `(B, R, K, 4)`, float32."""
    b, r = pooled.shape[:2]
    h = self.box_head(pooled.reshape(b * r, *pooled.shape[2:]))
    logits, deltas = self.box_predictor(h)
    return logits.reshape(b, r, -1).astype(jnp.float32), deltas.reshape(b, r, -1, 4).astype(jnp.float32)

  def box_branch(self, feats, rois, image_size):
    """`box_predictions` of the 7x7 RoIAlign features of `rois (B, R, 4)`."""
    return self.box_predictions(self.roi_features(feats, rois, 7, image_size))

  def mask_predictions(self, pooled):
    """Mask head and predictor on RoI features `(B, R, 14, 14, C)`: logits `(B, R, 28, 28, K)`, float32."""
    b, r = pooled.shape[:2]
    y = self.mask_predictor(self.mask_head(pooled.reshape(b * r, *pooled.shape[2:])))
    return y.reshape(b, r, *y.shape[1:]).astype(jnp.float32)

  def mask_branch(self, feats, rois, image_size):
    """Mask logits `(B, R, 28, 28, C)` of `rois (B, R, 4)`."""
    return self.mask_predictions(self.roi_features(feats, rois, 14, image_size))

  @staticmethod
  def select_class(mask_logits, labels):
    """Each RoI's mask of its class: `(B, R, 28, 28, K)`, labels `(B, R)` ints in [0, K) -> `(B, R, 28, 28)`."""
    return jnp.take_along_axis(mask_logits, labels[:, :, None, None, None], axis=-1)[..., 0]

  def keypoint_branch(self, feats, rois, image_size):
    """Keypoint logits `(B, R, 56, 56, K)` of `rois (B, R, 4)`."""
    b, r = rois.shape[:2]
    x = self.roi_features(feats, rois, 14, image_size)
    y = self.keypoint_predictor(self.keypoint_head(x.reshape(b * r, *x.shape[2:])))
    return y.reshape(b, r, *y.shape[1:]).astype(jnp.float32)

  # ------------------------------------------------------------------------------------------ eval

  def detect(self, feats, proposals, proposal_valid, image_size):
    """torchvision's `RoIHeads.postprocess_detections` with static shapes (see the module docstring)."""
    logits, deltas = self.box_branch(feats, proposals, image_size)
    b, p, c = logits.shape
    boxes = box_ops.decode_boxes(deltas, proposals[:, :, None], box_ops.ROI_BOX_WEIGHTS)
    boxes = box_ops.clip_boxes_to_image(boxes, image_size)[:, :, 1:].reshape(b, -1, 4)
    scores = jax.nn.softmax(logits, axis=-1)[:, :, 1:].reshape(b, -1)
    labels = jnp.broadcast_to(jnp.arange(1, c, dtype=jnp.int32), (b, p, c - 1)).reshape(b, -1)
    valid = (jnp.repeat(proposal_valid, c - 1, axis=1) & (scores > self.box_score_thresh)
             & box_ops.large_boxes_mask(boxes, 1e-2))
    # Candidates: the best-scoring valid (proposal, class) pairs; equal to torchvision whenever at most
    # `box_candidates_per_img` pairs pass the score threshold.
    k = min(self.box_candidates_per_img, p * (c - 1))
    _, cand = jax.lax.top_k(jnp.where(valid, scores, -1.0), k)
    boxes, scores, labels, valid = (_take(t, cand) for t in (boxes, scores, labels, valid))
    keep, keep_valid = batched_nms_padded(boxes, scores, labels, self.box_nms_thresh,
                                          self.box_detections_per_img, valid=valid)
    out = {"boxes": jnp.where(keep_valid[..., None], _take(boxes, keep), 0.0),
           "scores": jnp.where(keep_valid, _take(scores, keep), 0.0),
           "labels": jnp.where(keep_valid, _take(labels, keep), 0),
           "valid": keep_valid}
    if self.masks:
      m = self.select_class(self.mask_branch(feats, out["boxes"], image_size), out["labels"])   # (B, D, 28, 28)
      out["masks"] = jax.nn.sigmoid(m) * keep_valid[:, :, None, None]
    if self.num_keypoints:
      logits_k = self.keypoint_branch(feats, out["boxes"], image_size)
      kp, kscore = jax.vmap(heatmaps_to_keypoints)(logits_k, out["boxes"])
      out["keypoints"] = kp * keep_valid[:, :, None, None]
      out["keypoint_scores"] = jnp.where(keep_valid[:, :, None], kscore, 0.0)
    return out

  # ------------------------------------------------------------------------------------------ train

  def training_ground_truth(self, targets):
    """The batch's padded ground truth (`rcnn_targets.ground_truth`), every instance in class 1 with
    `merge_classes` (instances outside `object_classes` left out)."""
    gt = rcnn_targets.ground_truth(targets, self.num_keypoints)
    return rcnn_targets.merge_classes(gt, self.object_classes) if self.merge_classes else gt

  def rpn_training_targets(self, key, anchors, gt):
    """RPN anchor targets: `anchors` per level (NumPy, as `rpn_outputs` gives them) matched to `gt` and
    `rpn_batch_size_per_image` of them sampled with PRNG `key`: `(labels (B, A), box targets (B, A, 4))`."""
    return rcnn_targets.rpn_targets(key, jnp.asarray(np.concatenate(anchors, 0)), gt, fg_iou=self.rpn_fg_iou_thresh,
                          bg_iou=self.rpn_bg_iou_thresh, num_samples=self.rpn_batch_size_per_image,
                          positive_fraction=self.rpn_positive_fraction)

  def roi_training_targets(self, key, proposals, proposal_valid, gt):
    """The RoI sample (`rcnn_targets.roi_targets` with this model's thresholds and counts, PRNG `key`):
    `(rois (B, R, 4), labels (B, R), matched gt index (B, R), box targets (B, R, 4))`, positives first."""
    return rcnn_targets.roi_targets(key, proposals, proposal_valid, gt, fg_iou=self.box_fg_iou_thresh,
                          bg_iou=self.box_bg_iou_thresh, num_samples=self.box_batch_size_per_image,
                          positive_fraction=self.box_positive_fraction)

  def head_rois(self, rois, roi_labels, roi_gt):
    """The first `head_slots` sampled RoIs, labels and gt indices: the mask / keypoint heads' RoIs.
    Positives come first among the sampled RoIs (in random order), so these slots hold all of them, or a
    uniformly random `num_sampled_masks` of them."""
    k = self.head_slots
    return rois[:, :k], roi_labels[:, :k], roi_gt[:, :k]

  def mask_training_targets(self, gt, pos_rois, pos_gt):
    """28x28 mask targets `(B, Rp, 28, 28)` of the head RoIs, cropped from each matched instance's mask."""
    return rcnn_targets.mask_targets(gt, pos_rois, pos_gt, 28, self.mask_target_sampling_ratio,
                                     self.mask_target_aligned)

  def head_mask_logits(self, pooled, pos_labels):
    """`mask_predictions` of the head RoIs' 14x14 features, each RoI's mask of its class `(B, Rp, 28, 28)`
    (background slots read class 0; `mask_valid` leaves them out of the loss)."""
    return self.select_class(self.mask_predictions(pooled), jnp.maximum(pos_labels, 0))

  def training_outputs(self, feats, anchors, logits, deltas, proposals, proposal_valid, targets, image_size):
    """The loss inputs of one training step (`losses.detection.detection_losses`): RPN outputs and anchor
    targets, the RoI sample's head outputs and targets, and the mask / keypoint heads' on `head_rois`."""
    gt = self.training_ground_truth(targets)
    key_rpn, key_roi = jax.random.split(self.make_rng("dropout"))
    rpn_labels, rpn_box_targets = self.rpn_training_targets(key_rpn, anchors, gt)
    rois, roi_labels, roi_gt, roi_box_targets = self.roi_training_targets(key_roi, proposals, proposal_valid, gt)
    cls_logits, box_deltas = self.box_branch(feats, rois, image_size)
    out = {"rpn_logits": jnp.concatenate(logits, 1), "rpn_deltas": jnp.concatenate(deltas, 1),
           "rpn_labels": rpn_labels, "rpn_box_targets": rpn_box_targets,
           "roi_class_logits": cls_logits, "roi_box_deltas": box_deltas, "roi_labels": roi_labels,
           "roi_box_targets": roi_box_targets}
    pos_rois, pos_labels, pos_gt = self.head_rois(rois, roi_labels, roi_gt)
    pos_valid = pos_labels > 0
    if self.masks:
      out["mask_logits"] = self.head_mask_logits(self.roi_features(feats, pos_rois, 14, image_size), pos_labels)
      out["mask_targets"] = self.mask_training_targets(gt, pos_rois, pos_gt)
      out["mask_valid"] = pos_valid
    if self.num_keypoints:
      out["keypoint_logits"] = self.keypoint_branch(feats, pos_rois, image_size)
      kps = _take(gt["keypoints"], pos_gt)                                   # (B, Rp, K, 3)
      index, valid = jax.vmap(keypoint_targets, in_axes=(0, 0, None))(kps, pos_rois, 56)
      out["keypoint_targets"] = index
      out["keypoint_valid"] = valid & pos_valid[:, :, None]
    return out

  # ------------------------------------------------------------------------------------------ call

  def __call__(self, images, *, train: bool = False, targets=None):
    check_image(images, "images", multiple=32, min_size=32, why="the FPN's P5 needs sizes divisible by 32")
    size = tuple(images.shape[1:3])
    feats = self.features(images, train)
    anchors, logits, deltas = self.rpn_outputs(feats, size)
    proposals, proposal_valid = self.proposals(anchors, logits, deltas, size, train)
    if train:
      if targets is None:
        raise ValueError("targets: expected the batch (boxes, classes, num_instances, masks / keypoints) "
                         "when training, got None")
      out = self.training_outputs(feats, anchors, logits, deltas, proposals, proposal_valid, targets, size)
    else:
      out = self.detect(feats, proposals, proposal_valid, size)
      out["proposals"], out["proposal_valid"] = proposals, proposal_valid
    return {self.task: out}


# ---------------------------------------------------------------------------------------------- registry
# Narrow CPU variants: a quarter of the channels everywhere, anchors 16..256 and fewer proposals / RoIs
# (for 64-256 px images such as dense_shapes); every number stays a keyword argument. Keypoint R-CNN
# builders merge the instance classes into class 1 (torchvision's person-only setting, `merge_classes`; the
# configs name the dataset's keypoint classes in `object_classes`, as COCO's person).
NARROW = dict(width=0.25, anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms_top_n_train=1000,
              rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_train=500, rpn_post_nms_top_n_test=300,
              box_batch_size_per_image=128, box_detections_per_img=50, box_candidates_per_img=500)


def _builder(depth: int, keypoints: bool, narrow: bool):
  defaults = dict(depth=depth, **(NARROW if narrow else {}))
  if keypoints:
    defaults.update(num_classes=2, masks=False, num_keypoints=17, merge_classes=True)

  def build(**kwargs):
    return MaskRCNN(**{**defaults, **kwargs})
  return build


for _depth in (50, 101):
  for _kind, _keypoints in (("maskrcnn", False), ("keypointrcnn", True)):
    for _suffix, _narrow in (("", False), ("_narrow", True)):
      _name = f"{_kind}_resnet{_depth}_fpn{_suffix}"
      _fn = _builder(_depth, _keypoints, _narrow)
      _fn.__qualname__ = _fn.__name__ = _name
      register_model(_name)(_fn)
