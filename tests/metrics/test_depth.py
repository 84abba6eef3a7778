"""Depth errors: hand-computed cases, an independent float64 NumPy formula, reductions, jit, accumulation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.metrics import depth


def _reference(pred, gt, valid, reduction, lo=1e-3, hi=10.0):
  """Straight from the definitions, one pixel list per set, float64."""
  pred = np.clip(pred.astype(np.float64), lo, hi)
  gt = gt.astype(np.float64)
  ok = valid & (gt > lo) & (gt <= hi)
  sets = [(pred[b][ok[b]], gt[b][ok[b]]) for b in range(len(gt))] if reduction == "images" else [
      (pred[ok], gt[ok])]
  rows = []
  for p, g in sets:
    if p.size == 0:
      continue
    e = np.log(p) - np.log(g)
    th = np.maximum(p / g, g / p)
    rows.append({"abs_rel": np.mean(np.abs(p - g) / g), "sq_rel": np.mean((p - g) ** 2 / g),
                 "rmse": np.sqrt(np.mean((p - g) ** 2)), "rmse_log": np.sqrt(np.mean(e ** 2)),
                 "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
                 "silog": 100 * np.sqrt(np.mean(e ** 2) - np.mean(e) ** 2),
                 "delta1": np.mean(th < 1.25), "delta2": np.mean(th < 1.25 ** 2), "delta3": np.mean(th < 1.25 ** 3)})
  return {k: np.mean([r[k] for r in rows]) for k in depth.KEYS}


def _batch(seed=0, shape=(3, 7, 9)):
  rng = np.random.default_rng(seed)
  gt = rng.uniform(0.3, 9.0, shape)
  gt[rng.uniform(size=shape) < 0.2] = 0.0                    # holes
  gt[0, 0, :3] = [12.0, 0.0005, 10.0]                        # out of range (x2) and the max itself
  pred = gt * np.exp(rng.normal(0, 0.3, shape)) + (gt == 0) * 3.0
  pred[1, 0, 0] = 0.0                                         # clipped to min_depth
  pred[2, 0, 0] = 50.0                                        # clipped to max_depth
  return pred, gt


def test_hand_computed_single_image():
  gt = np.array([[[1.0, 2.0, 4.0, 0.0]]])
  pred = np.array([[[2.0, 2.0, 2.0, 7.0]]])                  # last pixel invalid (gt = 0)
  out = depth.depth_errors(pred, gt)
  ln2 = np.log(2.0)
  # d = 1, 0, -2; e = ln2, 0, -ln2; ratios 2, 1, 2.
  assert out["abs_rel"] == pytest.approx((1 + 0 + 0.5) / 3)
  assert out["sq_rel"] == pytest.approx((1 + 0 + 1) / 3)
  assert out["rmse"] == pytest.approx(np.sqrt(5 / 3))
  assert out["rmse_log"] == pytest.approx(np.sqrt(2 * ln2 ** 2 / 3))
  assert out["log10"] == pytest.approx(2 * np.log10(2.0) / 3)
  assert out["silog"] == pytest.approx(100 * np.sqrt(2 * ln2 ** 2 / 3))     # mean e = 0
  assert (out["delta1"], out["delta2"], out["delta3"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))   # 2 > 1.25^3
  # Ratios 1.2, 1.5, 1.9: one below each of 1.25, 1.5625, 1.953.
  out = depth.depth_errors(np.array([[[1.2, 1.5, 1.9]]]), np.ones((1, 1, 3)))
  assert (out["delta1"], out["delta2"], out["delta3"]) == pytest.approx((1 / 3, 2 / 3, 1.0))


@pytest.mark.parametrize("reduction", ["images", "pixels"])
def test_matches_float64_reference(reduction):
  pred, gt = _batch()
  valid = gt > 0
  valid[1, 3:] = False
  ours = depth.depth_errors(pred, gt, valid, reduction=reduction)
  ref = _reference(pred, gt, valid, reduction)
  for k in depth.KEYS:
    assert ours[k] == pytest.approx(ref[k], rel=1e-12), k


def test_images_and_pixels_differ_and_empty_images_are_skipped():
  pred, gt = _batch()
  gt[1] = 0.0                                   # an image without a valid pixel does not count
  im = depth.depth_errors(pred, gt, reduction="images")
  px = depth.depth_errors(pred, gt, reduction="pixels")
  ref = _reference(pred, gt, gt > 0, "images")
  assert im["rmse"] == pytest.approx(ref["rmse"], rel=1e-12)
  assert im["rmse"] != pytest.approx(px["rmse"], rel=1e-6)
  assert all(np.isnan(v) for v in depth.depth_errors(pred, np.zeros_like(gt)).values())


def test_jit_and_accumulation_agree_with_host():
  pred, gt = _batch(1, (4, 6, 8))
  host = depth.depth_errors(pred, gt)
  jitted = jax.jit(depth.depth_errors)(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32))
  totals_fn = jax.jit(chex.assert_max_traces(depth.depth_error_totals, n=1))
  parts = [totals_fn(jnp.asarray(pred[i:i + 2], jnp.float32), jnp.asarray(gt[i:i + 2], jnp.float32))
           for i in (0, 2)]
  summed = jax.tree.map(jnp.add, *parts)
  for red in ("images", "pixels"):
    acc = depth.depth_errors_from_totals(summed, red)
    ref = depth.depth_errors(pred, gt, reduction=red)
    for k in depth.KEYS:
      assert float(acc[k]) == pytest.approx(ref[k], rel=2e-5, abs=1e-6), (red, k)
  for k in depth.KEYS:
    assert float(jitted[k]) == pytest.approx(host[k], rel=2e-5, abs=1e-6), k


def test_custom_depth_range():
  gt = np.array([[[20.0, 40.0]]])
  pred = np.array([[[22.0, 40.0]]])
  assert np.isnan(depth.depth_errors(pred, gt)["rmse"])      # NYUv2 range: all invalid
  out = depth.depth_errors(pred, gt, max_depth=80.0)
  assert out["rmse"] == pytest.approx(np.sqrt(2.0))


def test_eigen_crop_mask():
  m = depth.eigen_crop_mask()
  assert m.shape == (480, 640) and m.sum() == (471 - 45) * (601 - 41)
  assert m[45, 41] and m[470, 600] and not m[44, 41] and not m[45, 40] and not m[471, 300] and not m[300, 601]
  assert depth.eigen_crop_mask(240, 320).sum() == (236 - 22) * (300 - 20)   # scaled and rounded


@pytest.mark.parametrize("kwargs, match", [
    ({"gt": -np.ones((1, 2, 2))}, "gt: expected depths >= 0"),
    ({"pred": -np.ones((1, 2, 2))}, "pred: expected depths >= 0"),
    ({"pred": np.ones((1, 2, 3))}, r"pred: expected shape \(1, 2, 2\)"),
    ({"gt": np.ones((2, 2)), "pred": np.ones((2, 2))}, r"gt: expected a \(B, H, W\)"),
    ({"valid": np.ones((1, 2), bool)}, "valid: expected shape"),
    ({"reduction": "mean"}, "reduction: expected 'images' or 'pixels'"),
    ({"min_depth": 0.0}, "min_depth, max_depth"),
])
def test_bad_input(kwargs, match):
  args = {"pred": np.ones((1, 2, 2)), "gt": np.ones((1, 2, 2)), **kwargs}
  with pytest.raises(ValueError, match=match):
    depth.depth_errors(**args)
