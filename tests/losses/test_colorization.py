"""Colorization loss: the dense float64 reference with rebalancing weights, masking (exactly zero, finite
gradients at masked pixels and for examples without the label), errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import losses
from dense_jax.data import color
from tests.losses.conftest import grad_at_masked


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
  fn = lambda lg: losses.colorization_loss(lg, idx, w, valid=jnp.asarray(valid),
                                           example_mask=jnp.array([1, 0]))[0]
  masked = ~valid
  masked[1] = True
  grad_at_masked(fn, logits, np.broadcast_to(masked[..., None], logits.shape))


@pytest.mark.parametrize("call, match", [
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
