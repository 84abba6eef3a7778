"""Colorization as classification over quantized ab colours (Zhang, Isola & Efros, ECCV 2016).

The label is the image itself: the model sees its lightness L (the colorization models take the [0, 1]
RGB batch and convert it to L inside), and the target is its ab in CIE Lab.

Model output `outputs[name]`: logits `(B, h, w, Q)` over the Q ab bins of `dense_jax.data.color.AbBins`
(h, w = the input size / 4 for the ECCV network). Labels: `batch['image']` `(B, H, W, 3)` in [0, 1];
optional `batch['has_colour']` `(B,)` (partial labels, see `dense_jax.tasks._labels`).

Targets are built inside the program (static shapes): sRGB -> Lab (`rgb_to_lab`, the formulas of
`data.color.rgb_to_lab` in float32), ab averaged over each output cell (H/h × W/w blocks; a bilinear
resize when the sizes do not divide), then soft-encoded over the `num_neighbours` (5) nearest bin
centres with Gaussian weights σ = 5 (`soft_encode`, equal to `AbBins.soft_encode`).

Loss: `dense_jax.losses.colorization_loss`, the class-rebalanced multinomial cross-entropy with the
rebalancing weights v(q) of `data.color.rebalancing_weights` (λ = 0.5, σ = 5, expectation 1) from the
ab prior of the training split: `data.color.dataset_ab_prior` over its first `prior_examples` images,
computed once and cached as .npy under `$DENSE_JAX_CACHE` (default `~/.cache/dense_jax`)/ab_prior/.
`rebalance=False` (or a task built without a dataset) uses v = 1.

Evaluation: the annealed-mean decoding (temperature T = 0.38: `softmax(logits / T) @ centres`, which
equals `AbBins.decode`), bilinearly upsampled to the image size and compared with the image's ab at
full resolution: `<name>/auc` (the AuC of `dense_jax.metrics.colorization.ab_auc` over thresholds 0..150)
and `<name>/auc_rebalanced` (each pixel weighted by v of its true nearest bin), as the paper reports.

TTA: the mean of the bin probabilities, as log-probabilities (like semantic classes).
Drawing: the grayscale input, the prediction (the input's L with the predicted ab) and the truth.
"""

from __future__ import annotations

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import losses, paths
from dense_jax.data import color
from dense_jax.metrics import colorization as color_metrics
from dense_jax.tasks import _labels
from dense_jax.tasks.base import Task, merge_probabilities
from dense_jax.tasks.registry import register_task

PRESENCE_LABEL = "colour"   # has_colour: the per-example flag of partial-label datasets


def rgb_to_lab(rgb):
  """CIE Lab (D65) `(..., 3)` float32 of sRGB `(..., 3)` in [0, 1] (jit-able; `data.color.rgb_to_lab`)."""
  rgb = jnp.clip(jnp.asarray(rgb, jnp.float32), 0.0, 1.0)
  lin = jnp.where(rgb <= 0.04045, rgb / 12.92, ((jnp.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4)
  xyz = lin @ jnp.asarray((color.SRGB_TO_XYZ / color.D65_WHITE[:, None]).T, jnp.float32)
  delta = 6.0 / 29.0
  f = jnp.where(xyz > delta ** 3, jnp.cbrt(jnp.maximum(xyz, delta ** 3)), xyz / (3 * delta ** 2) + 4.0 / 29.0)
  return jnp.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                   axis=-1)


def _sq_dist(ab, centres):
  """`(..., Q)` squared distances of ab `(..., 2)` to the bin centres `(Q, 2)`."""
  diff = ab[..., None, :] - centres
  return jnp.sum(diff * diff, axis=-1)


def soft_encode(ab, centres, num_neighbours: int = 5, sigma: float = 5.0):
  """`(bins int32 (..., k), weights float32 (..., k))`: the k nearest centres (nearest first) with weights
  `exp(-d² / 2σ²)` normalised to 1 — `AbBins.soft_encode` under `jit`."""
  d2 = _sq_dist(ab, centres)
  neg, bins = jax.lax.top_k(-d2, num_neighbours)
  w = jnp.exp((neg - neg[..., :1]) / (2.0 * sigma ** 2))   # shifted by the nearest: no underflow
  return bins.astype(jnp.int32), w / jnp.sum(w, axis=-1, keepdims=True)


def resize_to(x, size: tuple[int, int]):
  """`(B, H, W, C)` -> `(B, h, w, C)`: the mean over each block when H/h and W/w are whole, else bilinear."""
  b, hh, ww, c = x.shape
  h, w = size
  if (hh, ww) == (h, w):
    return x
  if hh % h == 0 and ww % w == 0:
    return x.reshape(b, h, hh // h, w, ww // w, c).mean(axis=(2, 4))
  return jax.image.resize(x, (b, h, w, c), "linear", antialias=False)


def _cache_dir() -> paths.Path:
  return paths.as_path(os.environ.get("DENSE_JAX_CACHE") or "~/.cache/dense_jax")


def training_prior(dataset: str, bins: color.AbBins, *, split: str = "train", max_examples: int = 512,
                   data_dir: str | None = None) -> np.ndarray:
  """The ab prior `(Q,)` of the first `max_examples` images of `dataset`'s `split`, cached on disk."""
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  key = hashlib.sha1(np.ascontiguousarray(bins.centres).tobytes()).hexdigest()[:10]
  path = _cache_dir() / "ab_prior" / f"{dataset.replace('/', '_')}-{split}-{max_examples}-{key}.npy"
  if path.exists():
    try:
      with path.open("rb") as f:
        prior = np.load(f)
      if prior.shape == (bins.num_bins,):
        return prior
    except (OSError, ValueError):
      pass   # damaged cache file: recompute it
  prior = color.dataset_ab_prior(data_lib.get_source(dataset, split, data_dir), bins, max_examples)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    with tmp.open("wb") as f:
      np.save(f, prior)
    tmp.replace(path)
  except Exception:  # pylint: disable=broad-except  # OSError; a remote cache raises its backend's errors
    pass   # a read-only home: the prior is simply recomputed next time
  return prior


@register_task("colorization")
class ColorizationTask(Task):
  """Colorization over quantized ab (see the module docstring)."""

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0, rebalance: bool = True,
               prior_examples: int = 512, prior_split: str = "train", data_dir: str | None = None,
               temperature: float = 0.38, max_threshold: float = 150.0, lam: float = 0.5, sigma: float = 5.0,
               num_neighbours: int = 5, class_weights=None):
    super().__init__(info=info, name=name, weight=weight)
    if not temperature > 0:
      raise ValueError(f"config.tasks.{self.name}.temperature: expected > 0, got {temperature!r}")
    if isinstance(prior_examples, bool) or not isinstance(prior_examples, int) or prior_examples < 1:
      raise ValueError(f"config.tasks.{self.name}.prior_examples: expected an int >= 1, got {prior_examples!r}")
    self.bins = color.AbBins(num_neighbours=num_neighbours, sigma=sigma)
    self.temperature, self.max_threshold = float(temperature), float(max_threshold)
    color_metrics._num_thresholds(max_threshold)  # pylint: disable=protected-access  # ValueError early
    q = self.bins.num_bins
    if class_weights is not None:
      weights = np.asarray(class_weights, np.float32)
      if weights.shape != (q,):
        raise ValueError(f"config.tasks.{self.name}.class_weights: expected shape ({q},), got {weights.shape}")
    elif rebalance and info is not None:
      prior = training_prior(info.name, self.bins, split=prior_split, max_examples=prior_examples,
                             data_dir=data_dir)
      weights = color.rebalancing_weights(prior, self.bins, lam=lam, sigma=sigma)
    else:
      weights = np.ones((q,), np.float32)
    self.class_weights = weights
    self.batch_keys = _labels.presence_keys(info, PRESENCE_LABEL)
    self.pixel_keys = ()

  # ---- targets --------------------------------------------------------------------------------
  def _check(self, logits, batch):
    q = self.bins.num_bins
    if logits.ndim != 4 or logits.shape[-1] != q:
      raise ValueError(f"outputs[{self.name!r}]: expected logits (B, h, w, {q}) over the ab bins, got "
                       f"{logits.shape}")
    image = batch["image"]
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"batch['image']: expected RGB images (B, H, W, 3), got {image.shape}")
    return image

  def targets(self, logits, batch):
    """`(bins (B, h, w, k), weights (B, h, w, k), has (B,))` at the output's size."""
    image = self._check(logits, batch)
    ab = resize_to(rgb_to_lab(image)[..., 1:], logits.shape[1:3])
    bins, w = soft_encode(ab, jnp.asarray(self.bins.centres, jnp.float32), self.bins.num_neighbours,
                          self.bins.sigma)
    return bins, w, _labels.has_label(batch, PRESENCE_LABEL, image.shape[0])

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs, batch):
    logits = outputs[self.name]
    bins, w, has = self.targets(logits, batch)
    loss, _ = losses.colorization_loss(logits, bins, w, jnp.asarray(self.class_weights), example_mask=has)
    return loss, {}

  # ---- evaluation -----------------------------------------------------------------------------
  def decode(self, logits):
    """ab `(B, h, w, 2)`: the annealed mean `softmax(logits / T) @ centres`."""
    p = jax.nn.softmax(jnp.asarray(logits, jnp.float32) / self.temperature, axis=-1)
    return p @ jnp.asarray(self.bins.centres, jnp.float32)

  def init(self):
    n = color_metrics._num_thresholds(self.max_threshold)  # pylint: disable=protected-access
    empty = {"hist": jnp.zeros((n + 2,), jnp.float32), "total": jnp.zeros((), jnp.float32)}
    return {"plain": empty, "rebalanced": dict(empty)}

  def update(self, acc, outputs, batch):
    logits = outputs[self.name]
    image = self._check(logits, batch)
    b, h, w, _ = image.shape
    gt_ab = rgb_to_lab(image)[..., 1:]
    pred_ab = jax.image.resize(self.decode(logits), (b, h, w, 2), "linear", antialias=False)
    has = _labels.has_label(batch, PRESENCE_LABEL, b)
    valid = jnp.broadcast_to(has[:, None, None], (b, h, w))
    nearest = jnp.argmin(_sq_dist(gt_ab, jnp.asarray(self.bins.centres, jnp.float32)), axis=-1)
    pixel_weights = jnp.asarray(self.class_weights)[nearest]
    plain = color_metrics.ab_auc_totals(pred_ab, gt_ab, valid, None, self.max_threshold)
    rebalanced = color_metrics.ab_auc_totals(pred_ab, gt_ab, valid, pixel_weights, self.max_threshold)
    return {"plain": jax.tree.map(jnp.add, acc["plain"], plain),
            "rebalanced": jax.tree.map(jnp.add, acc["rebalanced"], rebalanced)}

  def result(self, acc) -> dict:
    out = {}
    for kind, key in (("plain", "auc"), ("rebalanced", "auc_rebalanced")):
      totals = {k: np.asarray(v, np.float64) for k, v in acc[kind].items()}
      out[f"{self.name}/{key}"] = float(color_metrics.ab_auc_from_totals(totals, self.max_threshold))
    return out

  def summary_keys(self):
    return {f"{self.name}/auc": f"{self.name} AuC", f"{self.name}/auc_rebalanced": f"{self.name} AuC (rebal.)"}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    """ab `(B, h, w, 2)` (annealed mean), at the output's resolution."""
    return self.decode(output)

  def merge(self, outputs):
    """log of the mean bin probabilities."""
    return merge_probabilities(outputs)

  def draw(self, image, prediction, example):
    from dense_jax import viz  # pylint: disable=g-import-not-at-top
    from dense_jax.data import augment  # pylint: disable=g-import-not-at-top
    image = np.asarray(image, np.float32)
    lab = color.rgb_to_lab(np.clip(image, 0.0, 1.0))
    grey = np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], axis=-1)
    ab = augment.resize_bilinear(np.asarray(prediction, np.float32), image.shape[:2])
    predicted = np.concatenate([lab[..., :1], ab], axis=-1)
    del example
    return [(f"{self.name} input (L)", viz.to_uint8(color.lab_to_rgb(grey))),
            (f"{self.name} prediction", viz.to_uint8(color.lab_to_rgb(predicted))),
            (f"{self.name} truth", viz.to_uint8(image))]
