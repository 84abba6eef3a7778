"""Segmentation cross-entropy with the ignore label: a hand case, torch's ignore_index, an all-ignored
batch, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import losses


def test_cross_entropy_matches_hand_computation():
  logits = np.zeros((1, 1, 3, 2), np.float32)
  logits[0, 0, 0] = [2.0, 0.0]
  logits[0, 0, 1] = [0.0, 1.0]
  logits[0, 0, 2] = [5.0, -5.0]                  # ignored pixel: must not count
  labels = np.array([[[0, 0, 255]]], np.int32)
  loss, count = losses.segmentation_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(1.0))) / 2
  assert float(count) == 2
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


@pytest.mark.torch
def test_matches_torch_ignore_index():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.int32)
  labels[rng.uniform(size=labels.shape) < 0.3] = 255
  ours = float(losses.segmentation_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))[0])
  theirs = torch.nn.functional.cross_entropy(torch.from_numpy(logits).permute(0, 3, 1, 2),
                                             torch.from_numpy(labels).long(), ignore_index=255)
  np.testing.assert_allclose(ours, float(theirs), rtol=1e-5)


def test_all_ignored_gives_zero_loss_and_gradient():
  logits = jnp.ones((1, 2, 2, 3))
  labels = jnp.full((1, 2, 2), 255, jnp.int32)
  loss, grad = jax.value_and_grad(lambda l: losses.segmentation_cross_entropy(l, labels)[0])(logits)
  assert float(loss) == 0.0 and not np.any(np.asarray(grad))


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="labels"):
    losses.segmentation_cross_entropy(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 5), jnp.int32))
