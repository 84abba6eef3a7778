"""Depth loss: the float64 reference and a hand case, scale invariance, masking (exactly zero, finite
gradients at masked pixels and for examples without the label), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import losses
from tests.losses.conftest import grad_at_masked


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


def test_depth_loss_masks_pixels_and_examples():
  log_pred, gt = _depth_batch(2)
  log_pred = log_pred.at[gt == 0].set(jnp.inf)            # garbage where masked must not leak
  example_mask = jnp.array([1.0, 0.0, 1.0])
  fn = lambda lp: losses.depth_loss(lp, gt, example_mask=example_mask)[0]
  masked = np.asarray(gt == 0) | (np.asarray(example_mask) == 0)[:, None, None]
  grad_at_masked(fn, log_pred, masked)
  keep = np.array([0, 2])
  np.testing.assert_allclose(float(fn(log_pred)), float(losses.depth_loss(log_pred[keep], gt[keep])[0]),
                             rtol=1e-6)
  loss, g = jax.value_and_grad(lambda lp: losses.depth_loss(lp, gt * 0)[0])(log_pred)
  assert float(loss) == 0.0 and not np.any(np.asarray(g))


@pytest.mark.parametrize("call, match", [
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), -jnp.ones((1, 2, 2))), "gt: expected depths >= 0"),
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), jnp.ones((1, 2, 3))), "gt: expected shape"),
    (lambda: losses.depth_loss(jnp.zeros((1, 2, 2)), jnp.ones((1, 2, 2)), example_mask=jnp.ones(2)),
     "example_mask: expected shape"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
