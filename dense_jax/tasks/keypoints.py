"""Keypoint detection (Keypoint R-CNN): detection + keypoint losses, COCO keypoint AP (OKS), figures.

Model output `outputs[name]` (`dense_jax.models.maskrcnn.MaskRCNN` with `num_keypoints=K`, a dict):
  train  raw head outputs and their sampled targets (rpn_*, roi_*, keypoint_*)
  eval   boxes (B, D, 4) xyxy px, scores (B, D), labels (B, D) (1: "an object with keypoints"),
         valid (B, D), keypoints (B, D, K, 3) (x, y, 1) px, keypoint_scores (B, D, K)

Labels: boxes, classes, num_instances, keypoints (B, G, K, 3) (x, y, visibility) and, when the dataset
has them, masks (their pixel counts are the instances' areas, which scale OKS, as in COCO).

Loss: `Σ` of `dense_jax.losses.detection_losses` of the output — RPN and box terms (the model
has no other task to train them) and the keypoint term: per visible keypoint, cross-entropy over the 56²
cells of its map, divided by the number of visible keypoints. Train metrics `<name>/loss_<term>`.

Evaluation: as `instances` (host-side `CocoAccumulator`, see `dense_jax.tasks.instances`) with
iou_types ("keypoint",). The ground truth is the instances of `keypoint_classes` (config, else the
dataset's `DatasetInfo.keypoint_classes`: COCO's person, dense_shapes' squares and triangles; () = every
instance), as class 1, Keypoint R-CNN's single class — as COCO's person_keypoints annotations, which hold
persons only; the other instances are left out (the model's `object_classes` leaves them out of training):
`keypoint_ap`, `keypoint_ap50`, `keypoint_ap75`, `keypoint_ap_medium|large`, `keypoint_ar`,
`<name>/gt_dropped`, `<name>/images_gt_capped`. OKS sigmas: `oks_sigmas` of the config, else the
dataset's (`DatasetInfo.oks_sigmas`), else COCO's 17 when K = 17.
Figures: predicted keypoints (score >= draw_threshold) with their boxes next to the ground truth.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax.tasks.instances import DETECTION_KEYS, TRUTH_KEYS, DetectionTask, draw_boxes
from dense_jax.tasks.registry import register_task


@register_task("keypoints")
class KeypointsTask(DetectionTask):
  """Keypoint R-CNN's keypoints (see the module docstring)."""

  iou_types = ("keypoint",)
  output_keys = DETECTION_KEYS + ("keypoints",)

  def __init__(self, *, info=None, oks_sigmas=None, keypoint_classes=None, **kwargs):
    if oks_sigmas is None and info is not None and getattr(info, "oks_sigmas", ()):
      oks_sigmas = info.oks_sigmas
    super().__init__(info=info, category_ids=(1,), oks_sigmas=oks_sigmas, **kwargs)
    if keypoint_classes is None:
      keypoint_classes = getattr(info, "keypoint_classes", ()) if info is not None else ()
    classes = tuple(keypoint_classes)
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in classes):
      raise ValueError(f"config.tasks.{self.name}.keypoint_classes: expected class ids >= 1 (or () for every "
                       f"instance), got {keypoint_classes!r}")
    self.keypoint_classes = tuple(int(c) for c in classes)
    with_masks = info is None or "masks" in info.keys
    self.truth_keys = TRUTH_KEYS + ("keypoints",) + (("masks",) if with_masks else ())
    self.batch_keys = self.truth_keys

  def check_outputs(self, outputs: dict, model_name: str = "the model") -> None:
    """As `Task.check_outputs`, and the model's keypoint count against the dataset's (before compiling;
    the targets would otherwise fail on mismatched shapes deep inside the loss)."""
    super().check_outputs(outputs, model_name)
    out = outputs[self.name]
    keypoints = out.get("keypoints") if isinstance(out, dict) else None
    want = getattr(self.info, "num_keypoints", 0) if self.info is not None else 0
    if keypoints is not None and want and keypoints.shape[-2] != want:
      raise ValueError(f"config.model.num_keypoints: expected the {want} keypoints of dataset {self.info.name!r} "
                       f"(config.tasks.{self.name}), got a model {model_name!r} with {keypoints.shape[-2]} "
                       f"(outputs[{self.name!r}]['keypoints'] {tuple(keypoints.shape)})")

  def is_object(self, classes):
    """Which instances (`classes` (..., G)) are Keypoint R-CNN's one class: those of `keypoint_classes`."""
    if not self.keypoint_classes:
      return classes > 0
    return jnp.isin(classes, jnp.asarray(self.keypoint_classes, jnp.int32))

  def truth_classes(self, batch):
    return jnp.where(self.is_object(batch["classes"]), 1, 0).astype(jnp.int32)

  def update(self, acc, outputs, batch):
    out = super().update(acc, outputs, batch)
    out["truth"] = keep_instances(out["truth"], out["truth"]["classes"] > 0)
    return out

  def label_text(self, label, score=None):
    return "" if score is None else f"{score:.2f}"

  def summary_keys(self):
    return {"keypoint_ap": "keypoint AP", "keypoint_ap50": "keypoint AP50"}

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    image = viz.to_uint8(image)
    rows = np.flatnonzero(np.asarray(self.is_object(jnp.asarray(example["classes"])))
                          & (np.arange(len(example["classes"])) < int(example["num_instances"])))
    yxyx = np.asarray(example["boxes"])[rows]
    truth = draw_boxes(image, yxyx[:, [1, 0, 3, 2]], np.tile([[0.3, 0.9, 0.3]], (len(rows), 1)))
    truth = viz.draw_keypoints(truth, np.asarray(example["keypoints"])[rows], len(rows))
    keep = self.shown(prediction)
    predicted = draw_boxes(image, np.asarray(prediction["boxes"])[keep], np.tile([[0.3, 0.6, 1.0]], (len(keep), 1)),
                           [self.label_text(1, float(prediction["scores"][k])) for k in keep])
    kpts = np.array(np.asarray(prediction["keypoints"])[keep], np.float64)
    kpts[..., 2] = 2   # every predicted keypoint is drawn as visible
    predicted = viz.draw_keypoints(predicted, kpts)
    return [(f"{self.name} truth", truth), (f"{self.name} prediction", predicted)]


def keep_instances(truth: dict, keep):
  """`truth` with only the instances where `keep (B, G)` (rows below `num_instances`), moved to the front
  in their order; `num_instances` counts them. Static shapes: the rows behind are left as they were."""
  g = keep.shape[1]
  keep = keep & (jnp.arange(g)[None] < truth["num_instances"][:, None])
  order = jnp.argsort(~keep, axis=1, stable=True)                        # kept rows first, in order
  out = dict(truth)
  for key in ("boxes", "classes", "keypoints", "masks"):
    if key in truth:
      idx = order.reshape(order.shape + (1,) * (truth[key].ndim - 2))
      out[key] = jnp.take_along_axis(truth[key], idx, axis=1)
  out["num_instances"] = jnp.sum(keep, axis=1).astype(truth["num_instances"].dtype)
  return out
