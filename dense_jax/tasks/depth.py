"""Depth estimation (Eigen & Fergus, ICCV 2015): one depth per pixel, in metres (z in the camera frame).

Model output `outputs[name]`: the natural **log** of the depth, `(B, h, w)` (the `_dense_tasks`
convention; metres are `exp(output)`).
Labels `batch['depth']`: `(B, H, W)` float metres, 0 = invalid; optional `batch['has_depth']` `(B,)`
(partial labels, see `dense_jax.tasks._labels`).

Loss: `dense_jax.losses.depth_loss` — per image, the scale-invariant log error with λ = `lam` (0.5)
plus `gradient_weight` × the gradient-matching term, averaged over the examples that have a valid
pixel (and the label). Train metrics: `<name>/scale_invariant`, `<name>/gradient`.

Evaluation: `dense_jax.metrics.depth` accumulated over the split with its additive totals
(`depth_error_totals`, per batch under `jit`, summed on the host in float64), reported as
`<name>/abs_rel, sq_rel, rmse, rmse_log, log10, silog, delta1, delta2, delta3` with `reduction`
('images': the per-image metrics averaged over images, the Eigen / BTS / AdaBins convention; 'pixels':
pooled). The prediction `exp(output)` is clipped to [min_depth, max_depth] and ground truth outside that
range is invalid; `max_depth` defaults to 10 m on NYU Depth v2 (its convention) and 100 m elsewhere
(dense_shapes' scenes reach ~70 m). `eval_crop='eigen'` adds the Eigen crop (rows 45:471, columns
41:601 of 480×640, scaled to the label size; `dense_jax.metrics.depth.eigen_crop_mask`) as a mask.

TTA: the mean of the log-depths (a geometric mean of depths); a horizontal flip just mirrors.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dense_jax import losses
from dense_jax.metrics import depth as depth_metrics
from dense_jax.tasks import _labels
from dense_jax.tasks.base import Task, centre_crop
from dense_jax.tasks.registry import register_task

DEFAULT_MAX_DEPTH = {"nyu_depth_v2": 10.0}
FALLBACK_MAX_DEPTH = 100.0
EVAL_CROPS = (None, "eigen")


@register_task("depth")
class DepthTask(Task):
  """Depth from log-depth outputs (see the module docstring)."""

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0, lam: float = 0.5,
               gradient_weight: float = 1.0, min_depth: float = 1e-3, max_depth: float | None = None,
               reduction: str = "images", eval_crop: str | None = None):
    super().__init__(info=info, name=name, weight=weight)
    if max_depth is None:
      max_depth = DEFAULT_MAX_DEPTH.get(getattr(info, "name", None), FALLBACK_MAX_DEPTH)
    if not 0 < min_depth < max_depth:
      raise ValueError(f"config.tasks.{self.name}: expected 0 < min_depth < max_depth, got min_depth="
                       f"{min_depth!r}, max_depth={max_depth!r}")
    if not 0 <= lam <= 1:
      raise ValueError(f"config.tasks.{self.name}.lam: expected a number in [0, 1], got {lam!r}")
    if not gradient_weight >= 0:
      raise ValueError(f"config.tasks.{self.name}.gradient_weight: expected a number >= 0, got {gradient_weight!r}")
    if reduction not in ("images", "pixels"):
      raise ValueError(f"config.tasks.{self.name}.reduction: expected 'images' or 'pixels', got {reduction!r}")
    if eval_crop not in EVAL_CROPS:
      raise ValueError(f"config.tasks.{self.name}.eval_crop: expected one of {EVAL_CROPS}, got {eval_crop!r}")
    self.lam, self.gradient_weight = float(lam), float(gradient_weight)
    self.min_depth, self.max_depth = float(min_depth), float(max_depth)
    self.reduction, self.eval_crop = reduction, eval_crop
    self.label_key = "depth"
    self.batch_keys = (self.label_key,) + _labels.presence_keys(info, self.label_key)
    self.pixel_keys = (self.label_key,)

  # ---- labels ---------------------------------------------------------------------------------
  def _labels(self, output, batch):
    """(gt (B, h, w) at the output's size, has (B,) bool)."""
    gt = centre_crop(batch[self.label_key], output.shape[1:3]).astype(jnp.float32)
    return gt, _labels.has_label(batch, self.label_key, gt.shape[0])

  def _check_output(self, output):
    if output.ndim != 3:
      raise ValueError(f"outputs[{self.name!r}]: expected log-depth of shape (B, H, W), got {output.shape}")

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs, batch):
    log_pred = outputs[self.name]
    self._check_output(log_pred)
    gt, has = self._labels(log_pred, batch)
    loss, parts = losses.depth_loss(log_pred, gt, example_mask=has, lam=self.lam,
                                    gradient_weight=self.gradient_weight)
    return loss, {f"{self.name}/scale_invariant": parts["scale_invariant"],
                  f"{self.name}/gradient": parts["gradient"]}

  # ---- evaluation -----------------------------------------------------------------------------
  def init(self):
    keys = (["images"] + [f"image_{k}" for k in depth_metrics.KEYS]
            + [f"pixel_{k}" for k in depth_metrics._SUMS])  # pylint: disable=protected-access
    return {k: jnp.zeros((), jnp.float32) for k in keys}

  def update(self, acc, outputs, batch):
    log_pred = outputs[self.name]
    self._check_output(log_pred)
    gt, has = self._labels(log_pred, batch)
    valid = (gt > 0) & has[:, None, None]
    if self.eval_crop == "eigen":
      # The crop is defined on the full label map; the output may be its centre (valid convolutions).
      full = depth_metrics.eigen_crop_mask(*batch[self.label_key].shape[1:3])
      valid = valid & jnp.asarray(centre_crop(full[None], gt.shape[1:3])[0])[None]
    totals = depth_metrics.depth_error_totals(jnp.exp(log_pred.astype(jnp.float32)), gt, valid,
                                              self.min_depth, self.max_depth)
    return {k: acc[k] + totals[k].astype(jnp.float32) for k in acc}

  def result(self, acc) -> dict:
    totals = {k: np.asarray(v, np.float64) for k, v in acc.items()}
    out = depth_metrics.depth_errors_from_totals(totals, self.reduction)
    return {f"{self.name}/{k}": float(v) for k, v in out.items()}

  def summary_keys(self):
    return {f"{self.name}/abs_rel": f"{self.name} abs rel", f"{self.name}/rmse": f"{self.name} RMSE",
            f"{self.name}/delta1": f"{self.name} δ<1.25"}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    """Depth in metres `(B, h, w)`."""
    return jnp.exp(jnp.asarray(output, jnp.float32))

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    prediction = np.asarray(prediction)
    h, w = np.shape(image)[:2]
    truth = np.asarray(centre_crop(np.asarray(example[self.label_key])[None], prediction.shape[:2])[0])
    return [(f"{self.name} truth", viz.place_centred(viz.depth_colours(truth), (h, w))),
            (f"{self.name} prediction", viz.place_centred(viz.depth_colours(prediction), (h, w)))]
