"""Depth, normals and colorization losses: hand-computed values, scale invariance, masking (exactly zero,
finite gradients at masked pixels and for examples without the label), the rebalancing prior, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import losses
from dense_jax.data import color


def _depth_batch(seed=0, shape=(3, 6, 7)):
  rng = np.random.default_rng(seed)
  gt = rng.uniform(0.5, 8.0, shape).astype(np.float32)
  gt[rng.uniform(size=shape) < 0.25] = 0.0
  log_pred = (np.log(np.maximum(gt, 1e-3)) + rng.normal(0, 0.3, shape)).astype(np.float32)
  return jnp.asarray(log_pred), jnp.asarray(gt)


def _depth_reference(log_pred, gt, lam=0.5):
  """Per image in float64: (1/n) Σd² - (λ/n²)(Σd)² + (1/n) Σ over valid neighbour pairs of (Δd)²."""
  log_pred, gt = np.asarray(log_pred, np.float64), np.asarray(gt, np.float64)
  vals = []
  for lp, g in zip(log_pred, gt):
    v = g > 0
    n = v.sum()
    if n == 0:
      continue
    d = np.where(v, lp - np.log(np.where(v, g, 1.0)), 0.0)
    grad = 0.0
    for i in range(d.shape[0]):
      for j in range(d.shape[1]):
        if v[i, j] and j + 1 < d.shape[1] and v[i, j + 1]:
          grad += (d[i, j + 1] - d[i, j]) ** 2
        if v[i, j] and i + 1 < d.shape[0] and v[i + 1, j]:
          grad += (d[i + 1, j] - d[i, j]) ** 2
    vals.append(np.sum(d ** 2) / n - lam * np.sum(d) ** 2 / n ** 2 + grad / n)
  return np.mean(vals)


def test_depth_loss_matches_float64_reference():
  log_pred, gt = _depth_batch()
  loss, parts = losses.depth_loss(log_pred, gt)
  np.testing.assert_allclose(float(loss), _depth_reference(log_pred, gt), rtol=1e-5)
  assert float(parts["num_examples"]) == 3
  # Hand case: one image, two horizontal neighbours, d = (ln 2, 0): (ln²2)/2 - 0.5 (ln 2)²/4 + (ln 2)²/2.
  l2 = np.log(2.0)
  loss, _ = losses.depth_loss(jnp.array([[[l2, 0.0]]]), jnp.array([[[1.0, 1.0]]]))
  np.testing.assert_allclose(float(loss), l2 ** 2 / 2 - 0.5 * l2 ** 2 / 4 + l2 ** 2 / 2, rtol=1e-6)


def test_depth_loss_scale_invariance():
  log_pred, gt = _depth_batch(1)
  _, base = losses.depth_loss(log_pred, gt)
  for c in (0.25, 3.0):                                  # prediction multiplied by c: log shifted
    total, parts = losses.depth_loss(log_pred + np.log(c), gt)
    np.testing.assert_allclose(float(parts["scale_invariant"]), float(base["scale_invariant"]), rtol=1e-4)
    np.testing.assert_allclose(float(parts["gradient"]), float(base["gradient"]), rtol=1e-4)
    assert abs(float(parts["scale"]) - float(base["scale"])) > 1e-3     # the λ < 1 part does see scale
    si1, _ = losses.depth_loss(log_pred + np.log(c), gt, lam=1.0)       # λ = 1: fully invariant
    np.testing.assert_allclose(float(si1), float(losses.depth_loss(log_pred, gt, lam=1.0)[0]), rtol=1e-4)


def _grad_at_masked(loss_fn, pred, masked):
  g = jax.grad(loss_fn)(pred)
  g = np.asarray(g)
  assert np.all(np.isfinite(g))
  assert not np.any(g[masked]), "masked pixels must get an exactly zero gradient"
  assert np.any(g[~masked]), "valid pixels must get a gradient"


def test_depth_loss_masks_pixels_and_examples():
  log_pred, gt = _depth_batch(2)
  log_pred = log_pred.at[gt == 0].set(jnp.inf)            # garbage where masked must not leak
  example_mask = jnp.array([1.0, 0.0, 1.0])
  fn = lambda lp: losses.depth_loss(lp, gt, example_mask=example_mask)[0]  # noqa: E731
  masked = np.asarray(gt == 0) | (np.asarray(example_mask) == 0)[:, None, None]
  _grad_at_masked(fn, log_pred, masked)
  keep = np.array([0, 2])
  np.testing.assert_allclose(float(fn(log_pred)), float(losses.depth_loss(log_pred[keep], gt[keep])[0]),
                             rtol=1e-6)
  loss, g = jax.value_and_grad(lambda lp: losses.depth_loss(lp, gt * 0)[0])(log_pred)
  assert float(loss) == 0.0 and not np.any(np.asarray(g))


def test_normals_loss_values_and_masking():
  gt = np.zeros((2, 2, 2, 3), np.float32)
  gt[..., 2] = 1.0
  gt[1, 1, 1] = 0.0                                      # no label
  pred = np.zeros_like(gt)
  pred[..., 2] = 2.0                                     # same direction, any length
  pred[0, 0, 0] = [1.0, 0.0, 1.0]                        # 45 degrees: dot cos 45
  pred[1, 1, 1] = 0.0                                    # zero-length where masked
  loss, count = losses.normals_loss(jnp.asarray(pred), jnp.asarray(gt))
  assert float(count) == 7
  np.testing.assert_allclose(float(loss), -(6 + np.cos(np.pi / 4)) / 7, rtol=1e-6)
  rng = np.random.default_rng(0)
  pred = rng.normal(size=gt.shape).astype(np.float32)
  pred[1, 1, 1] = 0.0
  masked = np.zeros(gt.shape[:3], bool)
  masked[1, 1, 1] = True
  masked[0] = True                                       # example 0 lacks the label
  fn = lambda p: losses.normals_loss(p, jnp.asarray(gt), example_mask=jnp.array([False, True]))[0]  # noqa: E731
  _grad_at_masked(fn, jnp.asarray(pred), masked)


def test_normals_loss_against_float64_reference():
  rng = np.random.default_rng(3)
  gt = rng.normal(size=(2, 3, 4, 3))
  pred = rng.normal(size=gt.shape)
  ref = -np.mean(np.sum(pred * gt, -1) / np.linalg.norm(pred, axis=-1) / np.linalg.norm(gt, axis=-1))
  loss, _ = losses.normals_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32))
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


def _colour_batch(seed=0):
  rng = np.random.default_rng(seed)
  bins = color.AbBins()
  ab = rng.uniform(-60, 60, (2, 3, 4, 2))
  idx, w = bins.soft_encode(ab)
  logits = rng.normal(size=(2, 3, 4, bins.num_bins)).astype(np.float32)
  return bins, ab, jnp.asarray(logits), jnp.asarray(idx), jnp.asarray(w)


def test_colorization_loss_matches_dense_reference():
  bins, ab, logits, idx, w = _colour_batch()
  prior = np.random.default_rng(1).dirichlet(np.ones(bins.num_bins))
  cw = color.rebalancing_weights(prior, bins)
  loss, count = losses.colorization_loss(logits, idx, w, class_weights=jnp.asarray(cw))
  z = bins.soft_encode_dense(ab).astype(np.float64)
  lg = np.asarray(logits, np.float64)
  logp = lg - lg.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  v = cw[bins.hard_encode(ab)]
  np.testing.assert_allclose(float(loss), np.mean(v * -(z * logp).sum(-1)), rtol=1e-5)
  assert float(count) == 24


def test_colorization_loss_masking():
  _, _, logits, idx, w = _colour_batch(2)
  valid = np.ones((2, 3, 4), bool)
  valid[0, 1, 2] = False
  logits = logits.at[0, 1, 2].set(jnp.inf)
  fn = lambda lg: losses.colorization_loss(lg, idx, w, valid=jnp.asarray(valid),  # noqa: E731
                                           example_mask=jnp.array([1, 0]))[0]
  masked = ~valid
  masked[1] = True
  _grad_at_masked(fn, logits, np.broadcast_to(masked[..., None], logits.shape))


def test_rebalancing_weights_follow_the_paper():
  bins = color.AbBins()
  rng = np.random.default_rng(0)
  ab = np.concatenate([rng.normal(0, 5, (5000, 2)), rng.uniform(-80, 80, (500, 2))])   # mostly grey
  prior = color.ab_prior(ab, bins)
  assert prior.shape == (bins.num_bins,) and prior.sum() == pytest.approx(1.0)
  w = color.rebalancing_weights(prior, bins)
  # Independent float64 formula: Gaussian smoothing of each bin's mass, mix with uniform, invert.
  d2 = ((bins.centres[:, None] - bins.centres[None]) ** 2).sum(-1)
  k = np.exp(-d2 / 50.0)
  smooth = (k / k.sum(0)) @ prior
  ref = 1 / (0.5 * smooth + 0.5 / bins.num_bins)
  ref /= (smooth * ref).sum()
  np.testing.assert_allclose(w, ref, rtol=1e-5)
  assert np.sum(smooth * w) == pytest.approx(1.0, rel=1e-5)
  grey = bins.hard_encode(np.zeros(2))
  assert w[grey] < 1.0 < w.max()                           # common colours down, rare ones up
  assert w.max() / w.min() <= 2 * bins.num_bins            # bounded by λ: at most 1/λ · Q / ... ratio
  with pytest.raises(ValueError, match="prior: expected"):
    color.rebalancing_weights(np.ones(3), bins)


def test_colorization_encode_decode_round_trip():
  bins = color.AbBins()
  _, ab = color.colorization_inputs(np.random.default_rng(0).uniform(0, 1, (400, 3)))   # in-gamut colours
  ab = ab.astype(np.float64)
  dense = bins.soft_encode_dense(ab)
  # The annealed mean (T = 0.38) of the soft encoding returns the colour up to the quantisation: within
  # half a cell's diagonal (5 sqrt 2) of it, and on average much closer.
  err = np.linalg.norm(bins.decode(dense) - ab, axis=-1)
  assert err.max() < 5 * np.sqrt(2) and err.mean() < 2.5
  # The mode (hard decoding) is the nearest centre; bin centres themselves come back exactly.
  np.testing.assert_array_equal(bins.decode_mode(dense), bins.centres[bins.hard_encode(ab)])
  np.testing.assert_array_equal(bins.decode_mode(bins.soft_encode_dense(bins.centres)), bins.centres)


@pytest.mark.parametrize("call, match", [
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), -jnp.ones((1, 2, 2))), "gt: expected depths >= 0"),
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), jnp.ones((1, 2, 3))), "gt: expected shape"),
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), jnp.ones((1, 2, 2)), example_mask=jnp.ones(2)),
     "example_mask: expected shape"),
    (lambda: losses.normals_loss(jnp.zeros((1, 2, 2, 2)), jnp.ones((1, 2, 2, 2))), "pred: expected 3 components"),
    (lambda: losses.colorization_loss(jnp.zeros((1, 2, 2, 4)), jnp.zeros((1, 2, 3, 5), jnp.int32),
                                      jnp.zeros((1, 2, 3, 5))), "target_bins: expected shape"),
    (lambda: losses.colorization_loss(jnp.zeros((1, 2, 2, 4)), jnp.full((1, 2, 2, 1), 4, jnp.int32),
                                      jnp.ones((1, 2, 2, 1))), r"target_bins: expected indices in \[0, 4\)"),
    (lambda: losses.colorization_loss(jnp.zeros((1, 2, 2, 4)), jnp.zeros((1, 2, 2, 1), jnp.int32),
                                      jnp.ones((1, 2, 2, 1)), class_weights=jnp.ones(3)), "class_weights"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
