"""Panoptic segmentation (Panoptic FPN): one segment id per pixel, scored by panoptic quality.

Model outputs (`dense_jax.models.panoptic_fpn`):
  `outputs[name + '_semantic']`  (B, H, W, n_stuff + 1) logits of the semantic FPN head: channel i is the
                                 i-th stuff class (increasing id), the last channel "any thing"
  `outputs[name]` (eval)         the merge: dict with panoptic (B, H, W) int segment ids (0 void),
                                 segment_classes (B, S) int (dataset class ids), segment_valid (B, S)
  `outputs['instances']`         Mask R-CNN's entry (its losses belong to the `instances` task)

Labels: `batch['semantic']` (B, H, W) class ids (`ignore_label` unlabelled) for the loss;
`batch['panoptic']` (B, H, W) segment ids and `batch['segment_classes']` (B, S) for evaluation. The
model's training also reads `boxes`, `classes`, `num_instances`, `masks`, so they are batch keys too.

Loss: softmax cross-entropy of the semantic head over the valid pixels of the global batch, the label of
a pixel being its stuff class's channel, or the "thing" channel for any thing class (Panoptic FPN's
semantic target). `instance_weight > 0` adds `instance_weight · Σ` of Mask R-CNN's losses
(`dense_jax.losses.detection_losses` of `outputs['instances']`), for configs that train the
instance branch without listing the `instances` task; leave it 0 when that task is listed.
Train metrics: `panoptic/train_pixel_accuracy` (of the stuff+thing labels).

Evaluation: per-category TP / FP / FN / IoU sums (`dense_jax.metrics.panoptic.pq_stats`, COCO's rules,
no crowd regions) accumulated over the split; padded examples are all void (they count for nothing).
Results: `pq`, `sq`, `rq` (over all categories that appear), `pq_things`, `sq_things`, `rq_things`,
`pq_stuff`, `sq_stuff`, `rq_stuff`, `pq/<class>`, and `semantic_miou`: the semantic head's mIoU over its
n_stuff + 1 channels (stuff classes + "thing", the loss's targets; one confusion matrix over the split),
which compares the head trained alone with the head trained next to Mask R-CNN (the engine prefixes `val/`).
Prediction (figures, writers): `(B, H, W, 2)` int32, channel 0 the segment id, channel 1 its class.
Output: with `write_pngs=True` (`--config.tasks.panoptic.write_pngs=true`), `python -m dense_jax.evaluate`
writes the split's predictions in the COCO panoptic format (`<results stem>_panoptic.json` + the PNG
folder `<results stem>_panoptic/`, id = R + 256 G + 256² B; the `write_outputs` hook); the accumulator
then also carries each real image's predicted map as PNG bytes at the evaluated size, with the batch's
`image_id` and `original_size` when it has them (off by default, so training evaluations stay additive
sums). Which pixels and names the files have:
  * batches with `original_size` (B, 2) (evaluation batches of datasets with `image_id`, e.g. `coco2017`:
    the source image's (h, w) before the resize to the evaluated (H, W)): the map is cropped to the
    resized content `augment.eval_resized_size((h, w), (H, W))` (the padding is no part of the image),
    resized back to (h, w) by nearest neighbour (`augment.resize_nearest`; segment ids are never
    interpolated) and written at (h, w); segments that vanish in the resize are not listed, and each
    segment's `area` and `bbox` are those at (h, w), so the files read against the dataset's own panoptic
    annotations. PQ (`result`) stays that of the evaluated resolution.
  * without it (dense_shapes) the map is written as evaluated, (H, W).
  Images are named by the batch's `image_id` (COCO's ids) when it has one, else 1, 2, ... in the
  split's order; the JSON's `image_id` is that number and `file_name` its 12-digit form + `.png`
  (`000000000139.png`, the convention of COCO's panoptic_val2017.json). Category ids are the dataset's
  class ids, COCO's sparse ids for a `coco2017*` dataset (`instances.coco_category_map`; a segment of a
  class without a COCO id, class 0, is written as void).
`write_coco(writer, image_id, prediction)` adds one predicted image to a
`dense_jax.data.panoptic_format.PanopticWriter` (as it is: no resize, no category mapping).
"""

from __future__ import annotations

import io

import jax.numpy as jnp
import numpy as np

from dense_jax import losses, paths
from dense_jax.metrics import panoptic as pq_lib, segmentation as seg_metrics
from dense_jax.tasks.base import SinglePredictionTask, example_mask, host_accumulator
from dense_jax.tasks.instances import coco_category_map
from dense_jax.tasks.registry import register_task

TARGET_KEYS = ("boxes", "classes", "num_instances", "masks")   # what the instance branch trains on


@register_task("panoptic")
class PanopticTask(SinglePredictionTask):
  """Panoptic segmentation (see the module docstring)."""

  flip_refusal = ("panoptic segment maps (merge the instance and semantic predictions instead); evaluate "
                  "without flip")
  merge_refusal = "panoptic segment maps; evaluate with one scale and no flip"

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0, num_classes: int | None = None,
               thing_classes=None, class_names=None, ignore_label: int | None = None,
               instance_weight: float = 0.0, write_pngs: bool = False):
    super().__init__(info=info, name=name, weight=weight)
    if num_classes is None:
      if info is None:
        raise ValueError(f"config.tasks.{self.name}.num_classes: expected a number (or a dataset), got None")
      num_classes = info.num_classes
    self.num_classes = int(num_classes)
    things = thing_classes if thing_classes is not None else (info.thing_classes if info is not None else ())
    self.thing_classes = tuple(int(c) for c in things)
    bad = [c for c in self.thing_classes if not 0 <= c < self.num_classes]
    if not self.thing_classes or bad:
      raise ValueError(f"config.tasks.{self.name}.thing_classes: expected at least one id in [0, "
                       f"{self.num_classes}), got {self.thing_classes}")
    self.stuff_classes = tuple(c for c in range(self.num_classes) if c not in set(self.thing_classes))
    names = class_names if class_names is not None else (info.class_names if info is not None else None)
    self.class_names = tuple(names) if names is not None else tuple(str(i) for i in range(self.num_classes))
    self.ignore_label = int(ignore_label if ignore_label is not None else
                            (info.ignore_label if info is not None else losses.IGNORE_LABEL))
    if not instance_weight >= 0:
      raise ValueError(f"config.tasks.{self.name}.instance_weight: expected a number >= 0, got {instance_weight!r}")
    self.instance_weight = float(instance_weight)
    self.write_pngs = bool(write_pngs)
    self.batch_keys = ("semantic", "panoptic", "segment_classes") + TARGET_KEYS
    self.pixel_keys = ("semantic", "panoptic")
    # Semantic id -> the head's channel: stuff i -> i, any thing -> n_stuff, ignore (and ids out of range)
    # -> ignore_label. 256 entries cover every uint8 label.
    table = np.full(max(256, self.num_classes, self.ignore_label + 1), self.ignore_label, np.int32)
    table[list(self.stuff_classes)] = np.arange(len(self.stuff_classes))
    table[list(self.thing_classes)] = len(self.stuff_classes)
    self.channel_of_class = table
    # Class id -> the category id of the written files (COCO's sparse ids for coco2017*; None: the same).
    self.category_map = coco_category_map(info)

  @property
  def categories(self) -> dict[int, dict]:
    """`{class id: {"isthing": 0|1, "name": ...}}` (the form `pq_compute` and the COCO writer take)."""
    things = set(self.thing_classes)
    return {c: {"isthing": int(c in things), "name": self.class_names[c]} for c in range(self.num_classes)}

  def check_outputs(self, outputs: dict, model_name: str = "the model") -> None:
    super().check_outputs(outputs, model_name)
    key = f"{self.name}_semantic"
    if key not in outputs:
      raise ValueError(f"config.tasks.{self.name}: model {model_name!r} does not output {key!r} (the semantic "
                       f"head's logits); it outputs {sorted(outputs)}")
    channels = outputs[key].shape[-1]
    if channels != len(self.stuff_classes) + 1:
      raise ValueError(f"config.tasks.{self.name}: expected {key!r} with {len(self.stuff_classes) + 1} channels "
                       f"(stuff classes {self.stuff_classes} + one thing class), got {channels}; give the "
                       f"model the dataset's thing_classes {self.thing_classes}")

  # ---- training -------------------------------------------------------------------------------
  def semantic_targets(self, batch):
    """`(B, H, W)` int32 channel labels of the semantic head (module docstring); padded examples ignored."""
    labels = batch["semantic"].astype(jnp.int32)
    table = jnp.asarray(self.channel_of_class)
    targets = table[jnp.clip(labels, 0, table.shape[0] - 1)]
    targets = jnp.where((labels >= 0) & (labels < table.shape[0]), targets, self.ignore_label)
    real = example_mask(batch, labels.shape[0])
    return jnp.where(real[:, None, None], targets, self.ignore_label)

  def loss(self, outputs, batch):
    logits = outputs[f"{self.name}_semantic"]
    targets = self.semantic_targets(batch)
    loss, _ = losses.segmentation_cross_entropy(logits, targets, self.ignore_label)
    valid = targets != self.ignore_label
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) & valid)
    aux = {f"{self.name}/train_pixel_accuracy": correct / jnp.maximum(jnp.sum(valid), 1)}
    if self.instance_weight > 0:
      from dense_jax.losses import detection_losses  # pylint: disable=g-import-not-at-top
      terms = detection_losses(outputs["instances"], example_mask(batch, targets.shape[0]))
      instance_loss = sum(terms.values())
      aux.update({f"{self.name}/loss_{k}": v for k, v in terms.items()})
      aux[f"loss/{self.name}_instances"] = instance_loss
      loss = loss + self.instance_weight * instance_loss
    return loss, aux

  # ---- evaluation -----------------------------------------------------------------------------
  def init(self):
    k, c = self.num_classes, len(self.stuff_classes) + 1
    return {"tp": jnp.zeros((k,), jnp.int32), "fp": jnp.zeros((k,), jnp.int32), "fn": jnp.zeros((k,), jnp.int32),
            "iou": jnp.zeros((k,), jnp.float32), "confusion": jnp.zeros((c, c), jnp.int32)}

  def update(self, acc, outputs, batch):
    out = outputs[self.name]
    real = example_mask(batch, batch["panoptic"].shape[0])[:, None, None]
    gt_ids = jnp.where(real, batch["panoptic"], 0)
    pred_ids = jnp.where(real, out["panoptic"], 0)
    pred_classes = jnp.where(out["segment_valid"], out["segment_classes"], -1)
    stats = pq_lib.pq_stats(gt_ids, batch["segment_classes"], pred_ids, pred_classes, self.num_classes)
    new = {k: acc[k] + stats[k] for k in pq_lib.STAT_KEYS}
    semantic = jnp.argmax(outputs[f"{self.name}_semantic"], -1)
    new["confusion"] = seg_metrics.update_confusion(acc["confusion"], self.semantic_targets(batch), semantic,
                                                    self.ignore_label)
    if self.write_pngs:   # this batch's predictions, for write_outputs (to_host compresses them)
      new["predictions"] = {"prediction": self.predict(out), "real": real[:, 0, 0]}
      for key in ("image_id", "original_size"):   # the files' names and pixels (module docstring)
        if key in batch:
          new["predictions"][key] = batch[key]
    return new

  def to_host(self, acc):
    """The stats in 64 bits; with `write_pngs`, each real image's prediction as COCO panoptic PNG bytes
    (at the evaluated size) with its segments, `image_id` and `original_size` (h, w) (None where the
    batch lacks them), so an evaluation holds compressed maps, never a split of int32 arrays."""
    acc = dict(acc)
    predictions = acc.pop("predictions", None)
    out = host_accumulator(acc)
    if self.write_pngs:
      out["pngs"] = []
      if predictions is not None:
        from PIL import Image  # pylint: disable=g-import-not-at-top

        from dense_jax.data import panoptic_format  # pylint: disable=g-import-not-at-top
        prediction, real = np.asarray(predictions["prediction"]), np.asarray(predictions["real"])
        image_ids = predictions.get("image_id")
        sizes = predictions.get("original_size")
        if sizes is not None:
          from dense_jax.data.sources import check_original_sizes  # pylint: disable=g-import-not-at-top
          sizes = check_original_sizes(sizes, real)
        for i in np.flatnonzero(real):
          buffer = io.BytesIO()
          Image.fromarray(panoptic_format.id_to_rgb(prediction[i, ..., 0])).save(buffer, format="PNG")
          image_id = None if image_ids is None else int(np.asarray(image_ids)[i])
          size = None if sizes is None else (int(sizes[i, 0]), int(sizes[i, 1]))
          out["pngs"].append((buffer.getvalue(), self.segments(prediction[i]), image_id, size))
    return out

  def combine(self, a, b):
    out = {k: a[k] + b[k] for k in pq_lib.STAT_KEYS + ("confusion",)}
    if "pngs" in a or "pngs" in b:
      out["pngs"] = list(a.get("pngs", [])) + list(b.get("pngs", []))
    return out

  def write_outputs(self, acc, directory, stem: str) -> dict[str, str]:
    """With `write_pngs`: the split's predictions in the COCO panoptic format, `<stem>_panoptic.json` and
    the PNG folder `<stem>_panoptic/`, in the original images' pixels and named by the dataset's image
    ids where the batches carried them, else as evaluated and numbered 1, 2, ... (module docstring)."""
    if not self.write_pngs or "pngs" not in acc:
      return {}
    from PIL import Image  # pylint: disable=g-import-not-at-top

    from dense_jax.data import panoptic_format  # pylint: disable=g-import-not-at-top
    json_path = paths.as_path(directory) / f"{stem}_{self.name}.json"
    with panoptic_format.PanopticWriter(json_path, categories=self.output_categories) as writer:
      for number, (png, segments, image_id, size) in enumerate(acc["pngs"], start=1):
        ids = panoptic_format.rgb_to_id(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
        if size is not None:
          ids = self.to_original(ids, size)
        ids, segments = self.output_segments(ids, segments)
        # The writer lists only the segments left in the map (a small one can vanish in the resize) and
        # computes their area and bbox from it, i.e. at the written size.
        writer.add(number if image_id is None else image_id, ids, segments)
    return {f"{self.name}_json": str(json_path), f"{self.name}_pngs": str(writer.png_dir)}

  def result(self, acc) -> dict:
    pq = pq_lib.pq_from_stats({k: acc[k] for k in pq_lib.STAT_KEYS}, self.categories)
    out = {"pq": pq["all"]["pq"], "sq": pq["all"]["sq"], "rq": pq["all"]["rq"]}
    for part in ("things", "stuff"):
      out.update({f"{m}_{part}": pq[part][m] for m in ("pq", "sq", "rq")})
    out.update({f"pq/{self.class_names[c]}": v["pq"] for c, v in pq["per_class"].items()})
    out["semantic_miou"] = seg_metrics.segmentation_metrics(acc["confusion"])["miou"]
    return out

  def summary_keys(self):
    return {"pq": "PQ", "pq_things": "PQ things", "pq_stuff": "PQ stuff", "sq": "SQ", "rq": "RQ"}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    """`(B, H, W, 2)` int32: the segment id and its class per pixel (class 0 on void)."""
    ids = output["panoptic"].astype(jnp.int32)
    classes = jnp.where(output["segment_valid"], output["segment_classes"], 0)
    pixel_class = jnp.take_along_axis(classes, ids.reshape(ids.shape[0], -1), axis=1).reshape(ids.shape)
    return jnp.stack([ids, jnp.where(ids > 0, pixel_class, 0)], axis=-1).astype(jnp.int32)

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    prediction = np.asarray(prediction)
    truth_ids = np.asarray(example["panoptic"])
    seg_classes = np.asarray(example["segment_classes"])
    truth_classes = seg_classes[np.clip(truth_ids, 0, len(seg_classes) - 1)]
    return [(f"{self.name} truth", viz.panoptic_colours(truth_ids, truth_classes, self.num_classes)),
            (f"{self.name} prediction",
             viz.panoptic_colours(prediction[..., 0], prediction[..., 1], self.num_classes))]

  # ---- output ---------------------------------------------------------------------------------
  def segments(self, prediction) -> dict[int, dict]:
    """`{segment id: {"category_id", "iscrowd": 0}}` of one predicted image `(H, W, 2)` (from `predict`)."""
    prediction = np.asarray(prediction)
    ids, classes = prediction[..., 0], prediction[..., 1]
    out = {}
    for seg_id in np.unique(ids):
      if seg_id > 0:
        out[int(seg_id)] = {"category_id": int(classes[ids == seg_id][0]), "iscrowd": 0}
    return out

  @staticmethod
  def to_original(ids, original_size) -> np.ndarray:
    """An evaluated segment-id map `(H, W)` -> `(h, w)` = `original_size`: the resized content
    `augment.eval_resized_size((h, w), (H, W))` cropped from the top-left (the rest is padding), resized
    by nearest neighbour (ids are labels, never interpolated). A map already at (h, w) comes back as it is."""
    from dense_jax.data import augment  # pylint: disable=g-import-not-at-top
    ids = np.asarray(ids)
    if ids.ndim != 2:
      raise ValueError(f"ids: expected an (H, W) segment-id map, got shape {ids.shape}")
    h, w = (int(v) for v in original_size)
    new_h, new_w = augment.eval_resized_size((h, w), ids.shape)
    return augment.resize_nearest(ids[:new_h, :new_w], (h, w))

  @property
  def output_categories(self) -> dict[int, dict]:
    """`categories` keyed by the written files' category ids (COCO's for coco2017*, module docstring)."""
    if self.category_map is None:
      return self.categories
    return {self.category_map[c]: info for c, info in self.categories.items() if c in self.category_map}

  def output_segments(self, ids, segments: dict) -> tuple[np.ndarray, dict]:
    """`(ids, segments)` with the written files' category ids; the pixels of a segment whose class has
    no category id there (coco2017's unused class 0) become void."""
    if self.category_map is None:
      return ids, segments
    out, dropped = {}, []
    for seg_id, info in segments.items():
      if info["category_id"] in self.category_map:
        out[seg_id] = {**info, "category_id": self.category_map[info["category_id"]]}
      else:
        dropped.append(seg_id)
    if dropped:
      ids = np.where(np.isin(ids, dropped), 0, ids)
    return ids, out

  def write_coco(self, writer, image_id, prediction) -> dict:
    """Adds one predicted image `(H, W, 2)` to a `panoptic_format.PanopticWriter`; its annotation."""
    prediction = np.asarray(prediction)
    return writer.add(image_id, prediction[..., 0], self.segments(prediction))
