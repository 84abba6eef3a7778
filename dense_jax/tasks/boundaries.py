"""Semantic boundaries (UberNet's boundary task), derived from the semantic label map.

Label: a pixel is a boundary pixel when a 4-neighbour has another class (both labelled); pixels whose
label is `ignore_label`, and their neighbours across the ignored region, are not scored (`valid`).
Computed inside the program from `batch['semantic']` (no extra dataset key). Presence flag:
`has_semantic` (partial labels, `dense_jax.tasks._labels`).

Model output `outputs[name]`: logits `(B, h, w)` of "boundary" (sigmoid).

Loss: class-balanced sigmoid cross-entropy (HED, Xie & Tu 2015): positives weighted by the fraction of
negatives and negatives by the fraction of positives among the valid pixels of the batch, summed over
valid pixels and divided by their count.

Evaluation at a fixed threshold 0.5, pooled over the split: `<name>/precision`, `<name>/recall`,
`<name>/f1` (exact pixel matching, no distance tolerance: a simple stand-in for the BSDS ODS F-score).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import losses
from dense_jax.tasks import _labels
from dense_jax.tasks.base import Task, centre_crop
from dense_jax.tasks.registry import register_task


def boundary_map(labels, ignore_label: int = 255):
  """`(boundary, valid)` bool `(B, H, W)`: a 4-neighbour has another class; valid = labelled pixels."""
  labels = jnp.asarray(labels)
  valid = labels != ignore_label
  edge = jnp.zeros(labels.shape, bool)
  for axis in (1, 2):
    n = labels.shape[axis]
    a = jax.lax.slice_in_dim(labels, 0, n - 1, axis=axis)
    b = jax.lax.slice_in_dim(labels, 1, n, axis=axis)
    va = jax.lax.slice_in_dim(valid, 0, n - 1, axis=axis)
    vb = jax.lax.slice_in_dim(valid, 1, n, axis=axis)
    diff = (a != b) & va & vb
    pad_hi = [(0, 0)] * 3
    pad_lo = [(0, 0)] * 3
    pad_hi[axis], pad_lo[axis] = (0, 1), (1, 0)
    edge = edge | jnp.pad(diff, pad_hi) | jnp.pad(diff, pad_lo)
  return edge & valid, valid


@register_task("boundaries")
class BoundariesTask(Task):
  """Semantic boundaries (see the module docstring)."""

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0, ignore_label: int | None = None):
    super().__init__(info=info, name=name, weight=weight)
    self.label_key = "semantic"
    self.ignore_label = int(ignore_label if ignore_label is not None else
                            (info.ignore_label if info is not None else losses.IGNORE_LABEL))
    self.batch_keys = (self.label_key,) + _labels.presence_keys(info, self.label_key)
    self.pixel_keys = (self.label_key,)

  def targets(self, output, batch):
    if output.ndim != 3:
      raise ValueError(f"outputs[{self.name!r}]: expected boundary logits (B, H, W), got {output.shape}")
    edge, valid = boundary_map(batch[self.label_key], self.ignore_label)
    edge, valid = centre_crop(edge, output.shape[1:3]), centre_crop(valid, output.shape[1:3])
    has = _labels.has_label(batch, self.label_key, output.shape[0])
    return edge, valid & has[:, None, None]

  def loss(self, outputs, batch):
    logits = outputs[self.name].astype(jnp.float32)
    edge, valid = self.targets(logits, batch)
    n = jnp.maximum(jnp.sum(valid, dtype=jnp.float32), 1.0)
    pos = jnp.sum(edge & valid, dtype=jnp.float32)
    w = jnp.where(edge, (n - pos) / n, pos / n)   # the rarer class weighs more
    z = jnp.where(valid, logits, 0.0)             # masked pixels: no gradient, no overflow
    bce = jnp.maximum(z, 0) - z * edge + jnp.log1p(jnp.exp(-jnp.abs(z)))
    return jnp.sum(jnp.where(valid, w * bce, 0.0)) / n, {}

  def init(self):
    return {k: jnp.zeros((), jnp.int32) for k in ("tp", "fp", "fn")}

  def update(self, acc, outputs, batch):
    logits = outputs[self.name]
    edge, valid = self.targets(logits, batch)
    pred = (logits > 0) & valid
    return {"tp": acc["tp"] + jnp.sum(pred & edge, dtype=jnp.int32),
            "fp": acc["fp"] + jnp.sum(pred & ~edge, dtype=jnp.int32),
            "fn": acc["fn"] + jnp.sum(~pred & edge & valid, dtype=jnp.int32)}

  def result(self, acc) -> dict:
    tp, fp, fn = (float(np.asarray(acc[k])) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f = 2 * p * r / (p + r) if tp else 0.0 if (tp + fp) and (tp + fn) else float("nan")
    return {f"{self.name}/precision": p, f"{self.name}/recall": r, f"{self.name}/f1": f}

  def summary_keys(self):
    return {f"{self.name}/f1": f"{self.name} F1"}

  def predict(self, output):
    return jax.nn.sigmoid(jnp.asarray(output, jnp.float32))

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    prediction = np.asarray(prediction)
    h, w = np.shape(image)[:2]
    edge, _ = boundary_map(np.asarray(example[self.label_key])[None], self.ignore_label)
    truth = np.asarray(centre_crop(edge, prediction.shape[:2])[0], np.float32)
    grey = lambda x: np.repeat(np.asarray(x, np.float32)[..., None], 3, -1)
    return [(f"{self.name} truth", viz.place_centred(grey(truth), (h, w))),
            (f"{self.name} prediction", viz.place_centred(grey(prediction), (h, w)))]
