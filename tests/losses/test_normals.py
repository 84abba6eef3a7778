"""Normals loss: hand-computed values, masking (exactly zero, finite gradients at masked pixels and for
examples without the label), the float64 reference, errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import losses
from tests.losses.conftest import grad_at_masked


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
  fn = lambda p: losses.normals_loss(p, jnp.asarray(gt), example_mask=jnp.array([False, True]))[0]
  grad_at_masked(fn, jnp.asarray(pred), masked)


def test_normals_loss_against_float64_reference():
  rng = np.random.default_rng(3)
  gt = rng.normal(size=(2, 3, 4, 3))
  pred = rng.normal(size=gt.shape)
  ref = -np.mean(np.sum(pred * gt, -1) / np.linalg.norm(pred, axis=-1) / np.linalg.norm(gt, axis=-1))
  loss, _ = losses.normals_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32))
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: losses.normals_loss(jnp.zeros((1, 2, 2, 2)), jnp.ones((1, 2, 2, 2))), "pred: expected 3 components"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
