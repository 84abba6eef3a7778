"""Instance segmentation (Mask R-CNN): RPN + box + mask losses, COCO box / mask AP, figures.

Model output `outputs[name]` (`dense_jax.models.maskrcnn.MaskRCNN`, a dict):
  train  raw head outputs and their sampled targets (rpn_*, roi_*, mask_*)
  eval   boxes (B, D, 4) xyxy px, scores (B, D), labels (B, D) class ids, valid (B, D) bool,
         masks (B, D, 28, 28) probabilities of the predicted class inside the box

Labels (the data contract of `dense_jax.data.sources`): boxes (B, G, 4) (y0, x0, y1, x1), classes (B, G),
num_instances (B,), masks (B, G, H, W) uint8. The model's training reads them too (`targets=`).

Loss: `Σ` of `dense_jax.losses.detection_losses` (torchvision's terms: RPN objectness + box,
RoI classifier + box, mask BCE; each normalised by its count over the global batch, padded examples
dropped); train metrics `<name>/loss_<term>`.

Evaluation (host side, not a jit-able sum): `update` returns the batch's padded detections and ground
truth; `to_host` brings them to NumPy (masks stay uint8), `combine` folds them into a
`dense_jax.metrics.coco.CocoAccumulator` (masks pasted at image resolution and RLE-encoded one batch
at a time, so the evaluation holds RLEs, never a split of masks) and `result` runs pycocotools:
`box_ap`, `box_ap50`, `box_ap75`, `box_ap_small|medium|large`, `box_ar`, the same for `mask_`, and
`<name>/gt_dropped`, `<name>/images_gt_capped` (ground truth beyond the cap, not counted as misses).
Detections of classes outside `category_ids` (e.g. a stuff class: the model scores every class of the
dataset) are dropped, as pycocotools ignores categories without ground truth.
Image ids: the batch's `image_id` (B,) when the dataset has one (the `coco2017*` loaders: COCO's own
ids, so the results JSON reads against the official annotation file), else 1, 2, ... in the order of
the split; category ids are the dataset's class ids (contiguous; COCO's sparse ids in the results JSON
of a `coco2017*` dataset).
Output: `write_outputs(acc, directory, stem)` writes the COCO-format results JSON. Its boxes, masks and
keypoints are in the original image's pixels when the batch carries `original_size` (B, 2) (the
pipeline adds it to evaluation batches of datasets with `image_id`: the source image's (h, w) before the
resize to the evaluated size; `update` passes it through to the accumulator), so the file reads against
the dataset's own annotations; the metrics stay those of the evaluated resolution. Without it (dense_shapes)
the file is in the evaluated image's pixels.
Figures: predicted masks (score >= `draw_threshold`) with their boxes, class and score next to the
ground-truth masks and boxes (`dense_jax.viz`).
Mask pasting (`mask_paste`, `dense_jax.ops.paste_masks`): 'exact' (default) inverts the model's aligned
mask targets (`MaskRCNN.mask_target_aligned=True`, the default); 'torchvision' is torchvision's
paste_masks_in_image, for weights trained with its aligned=False targets (torchvision's recipe).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import paths
from dense_jax.tasks.base import SinglePredictionTask, example_mask
from dense_jax.tasks.registry import register_task

DETECTION_KEYS = ("boxes", "scores", "labels", "valid")
TRUTH_KEYS = ("boxes", "classes", "num_instances")


def coco_category_map(info) -> dict[int, int] | None:
  """`{class id: COCO category id}` for the COCO 2017 loaders (contiguous ids -> COCO's sparse ones),
  None for any other dataset (its class ids are its category ids)."""
  if info is None or not str(info.name).startswith("coco2017"):
    return None
  from dense_jax.data.real import coco  # pylint: disable=g-import-not-at-top
  return {k: coco_id for coco_id, k in coco.CONTIGUOUS.items()}


class DetectionTask(SinglePredictionTask):
  """What Mask R-CNN's and Keypoint R-CNN's tasks share: the summed detection losses and the COCO
  evaluation through a host-side `CocoAccumulator` (subclasses set `iou_types` and the keys)."""

  iou_types: tuple[str, ...] = ()
  output_keys: tuple[str, ...] = DETECTION_KEYS   # detection arrays kept for the evaluation
  truth_keys: tuple[str, ...] = TRUTH_KEYS        # batch arrays kept for the evaluation
  flip_refusal = "detections; evaluate with mode='whole'"
  merge_refusal = "sets of detections; evaluate with mode='whole'"

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0,
               category_ids: Sequence[int] | None = None, class_names=None,
               max_gt_instances: int | None = None, oks_sigmas: Sequence[float] | None = None,
               draw_threshold: float = 0.5, mask_paste: str = "exact"):
    super().__init__(info=info, name=name, weight=weight)
    from dense_jax.ops.paste_masks import PASTE_MODES  # pylint: disable=g-import-not-at-top
    if mask_paste not in PASTE_MODES:
      raise ValueError(f"config.tasks.{self.name}.mask_paste: expected one of {PASTE_MODES}, got {mask_paste!r}")
    self.mask_paste = mask_paste
    if category_ids is None:
      if info is None or not info.thing_classes:
        raise ValueError(f"config.tasks.{self.name}.category_ids: expected the evaluated class ids (or a dataset "
                         f"with thing_classes), got None"
                         + ("" if info is None else f" and dataset {info.name!r} has no thing_classes"))
      category_ids = info.thing_classes
    self.category_ids = tuple(int(c) for c in category_ids)
    if not self.category_ids or min(self.category_ids) < 1:
      raise ValueError(f"config.tasks.{self.name}.category_ids: expected class ids >= 1, got {category_ids!r}")
    names = class_names if class_names is not None else (info.class_names if info is not None else None)
    self.class_names = None if names is None else tuple(str(n) for n in names)
    if max_gt_instances is not None and (isinstance(max_gt_instances, bool) or int(max_gt_instances) < 0):
      raise ValueError(f"config.tasks.{self.name}.max_gt_instances: expected None or an int >= 0, got "
                       f"{max_gt_instances!r}")
    self.max_gt_instances = max_gt_instances
    self.oks_sigmas = None if oks_sigmas is None else tuple(float(s) for s in oks_sigmas)
    if not 0.0 <= draw_threshold <= 1.0:
      raise ValueError(f"config.tasks.{self.name}.draw_threshold: expected a score in [0, 1], got {draw_threshold!r}")
    self.draw_threshold = float(draw_threshold)
    self.category_map = coco_category_map(info)

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs, batch):
    from dense_jax.losses import detection_losses  # pylint: disable=g-import-not-at-top
    out = outputs[self.name]
    terms = detection_losses(out, example_mask(batch, out["rpn_logits"].shape[0]))
    total = sum(terms.values())
    return total, {f"{self.name}/loss_{k}": v for k, v in terms.items()}

  # ---- evaluation -----------------------------------------------------------------------------
  def truth_classes(self, batch):
    """The ground-truth class ids as evaluated (the dataset's; Keypoint R-CNN: 1)."""
    return batch["classes"]

  def init(self):
    return {}   # nothing on the device: each batch's arrays go to the host accumulator (module docstring)

  def update(self, acc, outputs, batch):
    del acc
    out = outputs[self.name]
    b = out["boxes"].shape[0]
    truth = {k: batch[k] for k in self.truth_keys if k in batch}
    truth["classes"] = self.truth_classes(batch)
    truth["batch_mask"] = example_mask(batch, b).astype(jnp.int32)
    if "image_id" in batch:   # the dataset's ids name the images in the results (else 1, 2, ...)
      truth["image_id"] = batch["image_id"]
    if "original_size" in batch:   # the images' size before the evaluation resize: the results JSON's pixels
      truth["original_size"] = batch["original_size"]
    if "masks" not in truth:
      truth["image_size"] = jnp.zeros(batch["image"].shape[1:3], jnp.uint8)[None]   # (1, H, W): the size only
    return {"detections": {k: out[k] for k in self.output_keys}, "truth": truth}

  def to_host(self, acc):
    # NumPy in the arrays' own dtypes: ground-truth masks stay uint8 (64-bit ints would be 8x the memory).
    return jax.device_get(acc)

  def new_accumulator(self):
    from dense_jax.metrics.coco import CocoAccumulator  # pylint: disable=g-import-not-at-top
    return CocoAccumulator(self.category_ids, iou_types=self.iou_types, oks_sigmas=self.oks_sigmas,
                           max_gt_instances=self.max_gt_instances, mask_paste=self.mask_paste)

  def _add(self, accumulator, arrays) -> None:
    if not arrays:   # the empty accumulator of `init`
      return
    truth = dict(arrays["truth"])
    image_ids = truth.pop("image_id", None)   # the accumulator keeps those of the real examples
    size = truth.pop("image_size", None)
    if size is not None:   # CocoAccumulator takes the image size from `image` when there are no masks
      truth["image"] = np.zeros((truth["boxes"].shape[0],) + size.shape[1:] + (3,), np.uint8)
    detections = dict(arrays["detections"])
    # A model scores every class of the dataset (dense_shapes' stuff classes too); a detection of a class
    # that is not evaluated counts for nothing, as pycocotools ignores categories without ground truth.
    detections["valid"] = detections["valid"] & np.isin(detections["labels"], self.category_ids)
    accumulator.add(detections, truth, image_ids=image_ids)

  def accumulator(self, acc):
    """`acc` as a `CocoAccumulator` (a batch's host arrays are added to a new one)."""
    from dense_jax.metrics.coco import CocoAccumulator  # pylint: disable=g-import-not-at-top
    if isinstance(acc, CocoAccumulator):
      return acc
    accumulator = self.new_accumulator()
    self._add(accumulator, acc)
    return accumulator

  def combine(self, a, b):
    accumulator = self.accumulator(a)   # folds in place: the engine keeps only the result
    self._add(accumulator, b)
    return accumulator

  def result(self, acc) -> dict:
    metrics = self.accumulator(acc).compute()
    for key in ("gt_dropped", "images_gt_capped"):
      metrics[f"{self.name}/{key}"] = metrics.pop(key)
    return metrics

  def write_outputs(self, acc, directory, stem: str) -> dict[str, str]:
    path = paths.as_path(directory) / f"{stem}_{self.name}_results.json"
    self.accumulator(acc).write_results_json(path, self.category_map)
    return {f"{self.name}_results": str(path)}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    return {k: output[k] for k in self.output_keys}

  def label_text(self, label: int, score: float | None = None) -> str:
    name = (self.class_names[label] if self.class_names is not None and 0 <= label < len(self.class_names)
            else str(label))
    return name if score is None else f"{name} {score:.2f}"

  def shown(self, prediction) -> np.ndarray:
    """Indices of the detections drawn: valid, score >= draw_threshold."""
    return np.flatnonzero(np.asarray(prediction["valid"]) & (np.asarray(prediction["scores"]) >= self.draw_threshold))


def draw_boxes(image: np.ndarray, boxes_xyxy: np.ndarray, colours: np.ndarray, texts: Sequence[str] = ()
               ) -> np.ndarray:
  """A copy of `image (H, W, 3)` uint8 with box outlines `(N, 4)` (x0, y0, x1, y1 px) in `colours (N, 3)`
  (floats in [0, 1]) and each box's text at its top-left corner."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  picture = Image.fromarray(np.asarray(image, np.uint8))
  pen = ImageDraw.Draw(picture)
  for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy, np.float64)):
    colour = tuple(int(round(255 * c)) for c in colours[i])
    pen.rectangle([x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)], outline=colour)
    if i < len(texts) and texts[i]:
      pen.text((x0 + 1, y0), texts[i], fill=colour)
  return np.asarray(picture)


@register_task("instances")
class InstancesTask(DetectionTask):
  """Mask R-CNN's instance segmentation (see the module docstring)."""

  iou_types = ("box", "mask")
  output_keys = DETECTION_KEYS + ("masks",)
  truth_keys = TRUTH_KEYS + ("masks",)
  batch_keys = ("boxes", "classes", "num_instances", "masks")

  def summary_keys(self):
    return {"box_ap": "box AP", "box_ap50": "box AP50", "mask_ap": "mask AP", "mask_ap50": "mask AP50"}

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    from dense_jax.ops.paste_masks import paste_masks  # pylint: disable=g-import-not-at-top
    image = viz.to_uint8(image)
    h, w = image.shape[:2]
    n = int(example["num_instances"])
    gt_masks = np.asarray(example["masks"])[:n] > 0
    pal = viz.id_palette(max(n, 1) + 1)
    truth = image
    if n:
      ids = np.zeros((h, w), np.int64)
      for j in range(n):
        ids[gt_masks[j]] = j + 1
      truth = viz.overlay(image, pal[ids], alpha=0.5, where=ids > 0)
      yxyx = np.asarray(example["boxes"])[:n]
      classes = np.asarray(example["classes"])[:n]
      truth = draw_boxes(truth, yxyx[:, [1, 0, 3, 2]], pal[1:n + 1], [self.label_text(int(c)) for c in classes])
    keep = self.shown(prediction)
    predicted = image
    if len(keep):
      boxes = np.asarray(prediction["boxes"])[keep]
      masks = paste_masks(np.asarray(prediction["masks"])[keep], boxes, (h, w), mode=self.mask_paste) > 0.5
      pal = viz.id_palette(len(keep) + 1)
      ids = np.zeros((h, w), np.int64)
      for j in np.argsort(np.asarray(prediction["scores"])[keep]):   # the best on top
        ids[masks[j]] = j + 1
      predicted = viz.overlay(image, pal[ids], alpha=0.5, where=ids > 0)
      texts = [self.label_text(int(prediction["labels"][k]), float(prediction["scores"][k])) for k in keep]
      predicted = draw_boxes(predicted, boxes, pal[1:], texts)
    return [(f"{self.name} truth", truth), (f"{self.name} prediction", predicted)]
