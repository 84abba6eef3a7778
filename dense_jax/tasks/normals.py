"""Surface-normal estimation (Eigen & Fergus, ICCV 2015): a unit 3-vector per pixel in the camera frame
(x right, y down, z towards the camera).

Model output `outputs[name]`: `(B, h, w, 3)`, any length (normalised where it is compared or drawn).
Labels `batch['normals']`: `(B, H, W, 3)` unit normals, zero vectors = invalid; optional
`batch['has_normals']` `(B,)` (partial labels, see `dense_jax.tasks._labels`).

Loss: `dense_jax.losses.normals_loss`, the negative mean dot product of unit normals over the valid
pixels of the examples that have the label (in [-1, 1]).

Evaluation: `dense_jax.metrics.normals` accumulated with its additive totals (`normal_error_totals`:
counts, sums and a histogram of 18000 bins over [0°, 180°], so the median's resolution is 0.01°),
reported as `<name>/mean, median, rmse` (degrees) and `<name>/within_11_25, within_22_5, within_30`
(fractions of pixels). A zero-length prediction at a valid pixel counts as 90° (it points nowhere).

TTA: a horizontal flip mirrors the map *and* negates x (`flip_negate_channels = (0,)`); merged
predictions are averaged and renormalised (`unit_vectors`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax import losses
from dense_jax.metrics import normals as normal_metrics
from dense_jax.tasks import _labels
from dense_jax.tasks.base import Task, centre_crop
from dense_jax.tasks.registry import register_task


@register_task("normals")
class NormalsTask(Task):
  """Surface normals (see the module docstring)."""

  flip_negate_channels = (0,)
  unit_vectors = True

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0):
    super().__init__(info=info, name=name, weight=weight)
    self.label_key = "normals"
    self.batch_keys = (self.label_key,) + _labels.presence_keys(info, self.label_key)
    self.pixel_keys = (self.label_key,)

  def _labels(self, output, batch):
    if output.ndim != 4 or output.shape[-1] != 3:
      raise ValueError(f"outputs[{self.name!r}]: expected normals of shape (B, H, W, 3), got {output.shape}")
    gt = centre_crop(batch[self.label_key], output.shape[1:3]).astype(jnp.float32)
    return gt, _labels.has_label(batch, self.label_key, gt.shape[0])

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs, batch):
    pred = outputs[self.name]
    gt, has = self._labels(pred, batch)
    loss, _ = losses.normals_loss(pred, gt, example_mask=has)
    return loss, {}

  # ---- evaluation -----------------------------------------------------------------------------
  def init(self):
    acc = {k: jnp.zeros((), jnp.float32) for k in ("count", "sum", "sum_sq", *normal_metrics.THRESHOLDS)}
    acc["hist"] = jnp.zeros((normal_metrics.HIST_BINS,), jnp.float32)
    return acc

  def update(self, acc, outputs, batch):
    pred = outputs[self.name]
    gt, has = self._labels(pred, batch)
    valid = (jnp.sum(gt * gt, axis=-1) > 0) & has[:, None, None]
    totals = normal_metrics.normal_error_totals(pred.astype(jnp.float32), gt, valid)
    return {k: acc[k] + totals[k].astype(jnp.float32) for k in acc}

  def result(self, acc) -> dict:
    totals = {k: np.asarray(v, np.float64) for k, v in acc.items()}
    out = normal_metrics.normal_errors_from_totals(totals)
    return {f"{self.name}/{k}": float(v) for k, v in out.items()}

  def summary_keys(self):
    return {f"{self.name}/mean": f"{self.name} mean°", f"{self.name}/median": f"{self.name} median°",
            f"{self.name}/within_11_25": f"{self.name} <11.25°"}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    """Unit normals `(B, h, w, 3)` (a zero vector stays zero)."""
    output = jnp.asarray(output, jnp.float32)
    return output / jnp.maximum(jnp.linalg.norm(output, axis=-1, keepdims=True), 1e-12)

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    prediction = np.asarray(prediction)
    h, w = np.shape(image)[:2]
    truth = np.asarray(centre_crop(np.asarray(example[self.label_key])[None], prediction.shape[:2])[0])
    return [(f"{self.name} truth", viz.place_centred(viz.normals_colours(truth), (h, w))),
            (f"{self.name} prediction", viz.place_centred(viz.normals_colours(prediction), (h, w)))]
