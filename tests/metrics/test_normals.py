"""Normal errors: a known rotation, hand-computed angles, a float64 reference, jit's histogram median."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.metrics import normals


def _random_unit(rng, shape):
  v = rng.normal(size=shape + (3,))
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotate_by(gt, degrees, rng):
  """Each normal rotated by exactly `degrees` about a random axis perpendicular to it."""
  axis = np.cross(gt, _random_unit(rng, gt.shape[:-1]))
  axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
  t = np.radians(degrees)
  return np.cos(t) * gt + np.sin(t) * np.cross(axis, gt)    # Rodrigues with axis . gt = 0


def test_every_prediction_off_by_ten_degrees():
  rng = np.random.default_rng(0)
  gt = _random_unit(rng, (2, 8, 8))
  pred = 3.0 * _rotate_by(gt, 10.0, rng)                     # length does not matter
  out = normals.normal_errors(pred, gt)
  assert out["mean"] == pytest.approx(10.0, abs=1e-9) and out["median"] == pytest.approx(10.0, abs=1e-9)
  assert out["rmse"] == pytest.approx(10.0, abs=1e-9)
  assert (out["within_11_25"], out["within_22_5"], out["within_30"]) == (1.0, 1.0, 1.0)
  jitted = jax.jit(normals.normal_errors)(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32))
  assert float(jitted["median"]) == pytest.approx(10.0, abs=180 / normals.HIST_BINS)
  assert float(jitted["mean"]) == pytest.approx(10.0, abs=1e-3) and float(jitted["within_11_25"]) == 1.0


def test_hand_computed_angles_and_invalid_pixels():
  gt = np.array([[[[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]]]], np.float64)
  pred = np.array([[[[0, 0, 2], [1, 0, 1], [0, 1, 0], [0, 0, -1], [5, 5, 5]]]], np.float64)
  # Angles 0, 45, 90, 180; the last pixel's gt is zero: invalid.
  out = normals.normal_errors(pred, gt)
  assert out["mean"] == pytest.approx((0 + 45 + 90 + 180) / 4)
  assert out["median"] == pytest.approx((45 + 90) / 2)
  assert out["rmse"] == pytest.approx(np.sqrt((45 ** 2 + 90 ** 2 + 180 ** 2) / 4))
  assert (out["within_11_25"], out["within_22_5"], out["within_30"]) == (0.25, 0.25, 0.25)
  valid = np.array([[True, True, False, False, False]])[None]
  assert normals.normal_errors(pred, gt, valid)["mean"] == pytest.approx(22.5)


def test_matches_float64_acos_reference_and_accumulates_under_jit():
  rng = np.random.default_rng(1)
  gt = _random_unit(rng, (4, 6, 5))
  pred = gt + rng.normal(0, 0.3, gt.shape)
  cos = np.sum(pred * gt, -1) / np.linalg.norm(pred, axis=-1)
  ang = np.degrees(np.arccos(np.clip(cos, -1, 1))).ravel()
  out = normals.normal_errors(pred, gt)
  assert out["mean"] == pytest.approx(ang.mean(), rel=1e-10)
  assert out["median"] == pytest.approx(np.median(ang), rel=1e-10)
  assert out["within_22_5"] == pytest.approx(np.mean(ang < 22.5))
  fn = jax.jit(chex.assert_max_traces(normals.normal_error_totals, n=1))
  parts = [fn(jnp.asarray(pred[i:i + 2], jnp.float32), jnp.asarray(gt[i:i + 2], jnp.float32)) for i in (0, 2)]
  acc = normals.normal_errors_from_totals(jax.tree.map(jnp.add, *parts))
  for k in ("mean", "rmse", "within_11_25", "within_22_5", "within_30"):
    assert float(acc[k]) == pytest.approx(out[k], rel=1e-4), k
  # Histogram median: exact up to the 0.01 degree bins and the interpolation between the two middle
  # angles of an even count (np.median averages them).
  srt = np.sort(ang)
  assert srt[len(srt) // 2 - 1] - 0.01 <= float(acc["median"]) <= srt[len(srt) // 2] + 0.01


def test_histogram_median_resolution():
  hist = np.zeros(18000)
  hist[1234] = 1.0                                           # every value in [12.34, 12.35)
  assert 12.34 <= normals.histogram_median(hist, 0.01) <= 12.35


@pytest.mark.parametrize("pred, gt, match", [
    (np.zeros((1, 2, 2, 3)), np.ones((1, 2, 2, 3)), "pred: expected non-zero normals"),
    (np.ones((1, 2, 2, 3)), np.ones((1, 2, 2, 2)), r"gt: expected normals of shape \(\.\.\., 3\)"),
    (np.ones((1, 2, 3, 3)), np.ones((1, 2, 2, 3)), "pred: expected shape"),
])
def test_bad_input(pred, gt, match):
  with pytest.raises(ValueError, match=match):
    normals.normal_errors(pred, gt)


def test_zero_length_gt_at_a_pixel_marked_valid_is_an_error():
  gt = np.zeros((1, 1, 2, 3))
  gt[..., 0, 2] = 1.0
  with pytest.raises(ValueError, match="gt: expected non-zero normals"):
    normals.normal_errors(np.ones_like(gt), gt, valid=np.ones((1, 1, 2), bool))
