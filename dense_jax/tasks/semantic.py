"""Semantic segmentation: one class per pixel.

Model output `outputs[name]`: logits `(B, h, w, K)` (h, w = the input size, or its centre for the
valid-convolution U-Net); optional auxiliary logits `outputs[name + '_aux']` of the same shape (the
FCN/DeepLab head on layer3).
Labels `batch['semantic']`: `(B, H, W)` int class ids, `ignore_label` (255) for unlabelled pixels;
optional `batch['has_semantic']` `(B,)`: examples without the label count for nothing (partial labels,
`dense_jax.tasks._labels`).

Loss: pixel-wise softmax cross-entropy (`dense_jax.losses.segmentation_cross_entropy`), mean over the
valid pixels of the global batch (label != ignore and the example real); with an auxiliary head,
`+ aux_weight * (the same loss on the auxiliary logits)` (torchvision's reference recipe: 0.5).
Train metrics: `train_pixel_accuracy` = correct valid pixels / valid pixels of the batch.

Evaluation: one global confusion matrix over the split (`dense_jax.metrics.segmentation`), reported as
`miou`, `pixel_accuracy`, `mean_accuracy`, `iou/<class>` (the engine prefixes `val/`). With
`breakdown={'band_radius': r, 'small_area': a}` the confusion is also accumulated per region
(`dense_jax.metrics.breakdown`): `band/…`, `interior/…` and, on datasets with instance masks,
`small/…`, `large/…` (`miou`, `accuracy`, `fraction` each).

TTA: predictions are merged as DeepLab does: the mean of the softmax probabilities, returned as
log-probabilities (so argmax and losses treat it like logits).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax import losses
from dense_jax.metrics import segmentation as seg_metrics
from dense_jax.tasks import _labels
from dense_jax.tasks.base import Task, centre_crop, example_mask, merge_probabilities
from dense_jax.tasks.registry import register_task


@register_task("semantic")
class SemanticTask(Task):
  """Semantic segmentation (see the module docstring)."""

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0, num_classes: int | None = None,
               class_names=None, ignore_label: int | None = None, aux_weight: float = 0.5,
               breakdown: dict | None = None):
    super().__init__(info=info, name=name, weight=weight)
    self.label_key = "semantic"
    if num_classes is None and info is not None:
      num_classes = info.num_classes
    # None: a loss-only task (no dataset to take the classes from); evaluating it is an error.
    self.num_classes = None if num_classes is None else int(num_classes)
    if self.num_classes is not None and self.num_classes < 1:
      raise ValueError(f"config.tasks.{self.name}.num_classes: expected >= 1, got {self.num_classes}")
    names = class_names if class_names is not None else (info.class_names if info is not None else None)
    self.class_names = (tuple(names) if names is not None else
                        tuple(str(i) for i in range(self.num_classes or 0)))
    if ignore_label is None:
      ignore_label = info.ignore_label if info is not None else losses.IGNORE_LABEL
    self.ignore_label = int(ignore_label)
    if not aux_weight >= 0:
      raise ValueError(f"config.tasks.{self.name}.aux_weight: expected a number >= 0, got {aux_weight!r}")
    self.aux_weight = float(aux_weight)
    self.breakdown = dict(breakdown) if breakdown else None
    keys = (self.label_key,)
    if self.breakdown is not None:
      unknown = sorted(set(self.breakdown) - {"band_radius", "small_area"})
      if unknown or "band_radius" not in self.breakdown:
        raise ValueError(f"config.tasks.{self.name}.breakdown: expected keys band_radius (and optionally "
                         f"small_area), got {sorted(self.breakdown)}")
      if self.breakdown.get("small_area") is not None and info is not None and "masks" in info.keys:
        keys += ("masks", "num_instances")
      else:
        self.breakdown["small_area"] = None
    self.batch_keys = keys + _labels.presence_keys(info, self.label_key)   # partial labels (has_semantic)
    self.pixel_keys = (self.label_key,)

  # ---- labels ---------------------------------------------------------------------------------
  def labels(self, batch, size: tuple[int, int]):
    """`(B, h, w)` int32 labels at the output size `size` (centre crop), padded examples set to ignore."""
    labels = centre_crop(batch[self.label_key], size)
    real = _labels.has_label(batch, self.label_key, labels.shape[0])   # batch_mask and has_semantic
    return jnp.where(real[:, None, None], labels, self.ignore_label)

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs, batch):
    logits = outputs[self.name]
    labels = self.labels(batch, logits.shape[1:3])
    loss, _ = losses.segmentation_cross_entropy(logits, labels, self.ignore_label)
    valid = labels != self.ignore_label
    correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
    accuracy_key = "train_pixel_accuracy" if self.name == "semantic" else f"train_pixel_accuracy/{self.name}"
    aux = {accuracy_key: correct / jnp.maximum(jnp.sum(valid), 1)}
    aux_logits = outputs.get(f"{self.name}_aux")
    if aux_logits is not None and self.aux_weight > 0:
      aux_loss, _ = losses.segmentation_cross_entropy(aux_logits, self.labels(batch, aux_logits.shape[1:3]),
                                                      self.ignore_label)
      aux[f"loss/{self.name}_aux"] = aux_loss
      loss = loss + self.aux_weight * aux_loss
    return loss, aux

  # ---- evaluation -----------------------------------------------------------------------------
  def init(self):
    k = self.num_classes
    if k is None:
      raise ValueError(f"config.tasks.{self.name}.num_classes: evaluation needs the number of classes (give "
                       f"the task a dataset `info` or `num_classes`), got None")
    acc = {"confusion": jnp.zeros((k, k), jnp.int32)}
    if self.breakdown is not None:
      regions = ["band", "interior"] + (["small", "large"] if self.breakdown["small_area"] is not None else [])
      acc["regions"] = {r: jnp.zeros((k, k), jnp.int32) for r in regions}
    return acc

  def update(self, acc, outputs, batch):
    logits = outputs[self.name]
    predictions = jnp.argmax(logits, -1).astype(jnp.int32)
    labels = self.labels(batch, logits.shape[1:3])
    out = {"confusion": acc["confusion"] + seg_metrics.confusion_matrix(
        labels, predictions, self.num_classes, ignore_label=self.ignore_label)}
    if self.breakdown is not None:
      from dense_jax.metrics import breakdown as breakdown_lib  # pylint: disable=g-import-not-at-top
      full = batch[self.label_key]
      full = jnp.where(example_mask(batch, full.shape[0])[:, None, None], full, self.ignore_label)
      with_masks = self.breakdown["small_area"] is not None
      regions = breakdown_lib.breakdown_confusions(
          full, predictions, self.num_classes, band_radius=int(self.breakdown["band_radius"]),
          masks=batch["masks"] if with_masks else None,
          num_instances=batch["num_instances"] if with_masks else None,
          small_area=self.breakdown["small_area"], ignore_label=self.ignore_label)
      out["regions"] = {r: acc["regions"][r] + regions[r] for r in acc["regions"]}
    return out

  def result(self, acc) -> dict:
    confusion = np.asarray(acc["confusion"], np.int64)
    out = seg_metrics.segmentation_metrics(confusion, self.class_names)
    if "regions" in acc:
      from dense_jax.metrics import breakdown as breakdown_lib  # pylint: disable=g-import-not-at-top
      out.update(breakdown_lib.breakdown_metrics({"all": confusion, **acc["regions"]}))
      out = {k: v for k, v in out.items() if not k.startswith("all/")}
    if self.name != "semantic":
      out = {f"{self.name}/{k}": v for k, v in out.items()}
    return out

  def summary_keys(self):
    prefix = "" if self.name == "semantic" else f"{self.name}/"
    label = "" if self.name == "semantic" else f"{self.name} "
    return {f"{prefix}miou": f"{label}mIoU", f"{prefix}pixel_accuracy": f"{label}pixel accuracy"}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    return jnp.argmax(output, -1).astype(jnp.int32)

  def merge(self, outputs):
    """log of the mean softmax probability (DeepLab's multi-scale + flip evaluation)."""
    return merge_probabilities(outputs)

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    prediction = np.asarray(prediction)
    h, w = np.shape(image)[:2]
    truth = np.asarray(centre_crop(np.asarray(example[self.label_key])[None], prediction.shape[:2])[0])
    colours = viz.palette(self.num_classes or 256)
    return [(f"{self.name} truth", viz.place_centred(colours[np.clip(truth, 0, 255)], (h, w))),
            (f"{self.name} prediction", viz.place_centred(colours[np.clip(prediction, 0, 255)], (h, w)))]

