"""Colorization AuC: hand-computed curves, a float64 reference, weights, jit accumulation, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.metrics import colorization


def _reference(pred, gt, valid, weights, tmax):
  err = np.linalg.norm(pred - gt, axis=-1)[valid]
  w = weights[valid]
  ts = np.arange(tmax + 1.0)
  acc = np.array([np.sum(w * (err <= t)) / np.sum(w) for t in ts])
  return np.trapezoid(acc, ts) / tmax if hasattr(np, "trapezoid") else np.trapz(acc, ts) / tmax


def test_hand_computed():
  gt = np.zeros((1, 1, 2, 2))
  pred = np.array([[[[0.0, 0.0], [3.0, 4.0]]]])             # errors 0 and 5
  # T = 10: acc(t) = 0.5 at t = 0..4, 1 at t = 5..10. Trapezoids: 4 x 0.5 + (0.5 + 1) / 2 + 5 x 1 = 7.75.
  assert colorization.ab_auc(pred, gt, max_threshold=10) == pytest.approx(0.775)
  # Weighting the error-5 pixel 3x: acc = 0.25 at t <= 4 -> 4 x 0.25 + 0.625 + 5 = 6.625.
  w = np.array([[[1.0, 3.0]]])
  assert colorization.ab_auc(pred, gt, weights=w, max_threshold=10) == pytest.approx(0.6625)
  assert colorization.ab_auc(gt, gt) == pytest.approx(1.0)
  # Only the error-5 pixel: acc = 0 at t <= 4 -> 0.5 + 5 = 5.5.
  assert colorization.ab_auc(pred, gt, valid=np.array([[[False, True]]]), max_threshold=10) == pytest.approx(0.55)


def test_matches_float64_reference_and_jit_accumulation():
  rng = np.random.default_rng(0)
  gt = rng.uniform(-80, 80, (4, 5, 6, 2))
  pred = gt + rng.normal(0, 40, gt.shape)
  valid = rng.uniform(size=gt.shape[:3]) < 0.8
  weights = rng.uniform(0.2, 3.0, gt.shape[:3])
  for w in (None, weights):
    ref = _reference(pred, gt, valid, np.ones(gt.shape[:3]) if w is None else w, 150)
    assert colorization.ab_auc(pred, gt, valid, w) == pytest.approx(ref, rel=1e-12)
  fn = jax.jit(chex.assert_max_traces(colorization.ab_auc_totals, n=1))
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  parts = [fn(f32(pred[i:i + 2]), f32(gt[i:i + 2]), valid[i:i + 2], f32(weights[i:i + 2])) for i in (0, 2)]
  acc = colorization.ab_auc_from_totals(jax.tree.map(jnp.add, *parts))
  assert float(acc) == pytest.approx(_reference(pred, gt, valid, weights, 150), rel=1e-4)


@pytest.mark.parametrize("pred_shape, gt_shape, kwargs, match", [
    ((1, 4, 4, 3), (1, 4, 4, 3), {}, r"gt_ab: expected an ab map of shape \(B, H, W, 2\)"),
    ((1, 4, 4, 2), (4, 4, 2), {}, r"gt_ab: expected an ab map"),
    ((1, 4, 5, 2), (1, 4, 4, 2), {}, "pred_ab: expected shape"),
    ((1, 4, 4, 2), (1, 4, 4, 2), {"weights": -np.ones((1, 4, 4))}, "weights: expected non-negative"),
    ((1, 4, 4, 2), (1, 4, 4, 2), {"valid": np.ones((4, 4), bool)}, "valid: expected shape"),
    ((1, 4, 4, 2), (1, 4, 4, 2), {"max_threshold": 0}, "max_threshold: expected a positive whole number"),
])
def test_bad_input(pred_shape, gt_shape, kwargs, match):
  with pytest.raises(ValueError, match=match):
    colorization.ab_auc(np.zeros(pred_shape), np.zeros(gt_shape), **kwargs)


def test_rebalanced_weights_are_the_true_bins_weights():
  from dense_jax.data import color
  bins = color.AbBins()
  cw = np.arange(bins.num_bins, dtype=np.float32)
  gt = np.zeros((1, 1, 2, 2))
  gt[0, 0, 1] = bins.centres[7] + 1.0                       # nearest bin 7
  w = colorization.rebalanced_pixel_weights(gt, cw, bins)
  np.testing.assert_array_equal(w, [[[cw[bins.hard_encode(np.zeros(2))], 7.0]]])
  with pytest.raises(ValueError, match="class_weights: expected shape"):
    colorization.rebalanced_pixel_weights(gt, cw[:5], bins)
