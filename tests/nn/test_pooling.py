"""The Flax argmax-pooling / max-unpooling pair: no parameters, the ops' results, a SegNet-style round trip."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.nn import MaxPoolWithArgmax, MaxUnpool
from dense_jax.ops import max_pool_with_argmax, max_unpool


class _EncoderDecoder(nn.Module):
  """pool -> (identity) -> unpool with the encoder's indices, as SegNet's decoder does."""

  def setup(self):
    self.pool = MaxPoolWithArgmax(window=3, stride=2, padding=1)
    self.unpool = MaxUnpool(window=3, stride=2, padding=1)

  def __call__(self, x):
    y, idx = self.pool(x)
    return self.unpool(y, idx, x.shape[1:3])


def test_modules_have_no_parameters_and_match_the_ops():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 6, 3)), jnp.float32)
  pool = MaxPoolWithArgmax(window=2)
  variables = pool.init(jax.random.key(0), x)
  assert jax.tree.leaves(variables) == []
  y, idx = pool.apply(variables, x)
  ref_y, ref_idx = max_pool_with_argmax(x, 2, 2)
  np.testing.assert_array_equal(y, ref_y)
  np.testing.assert_array_equal(idx, ref_idx)
  unpool = MaxUnpool(window=2)
  out = unpool.apply({}, y, idx, (7, 6))
  np.testing.assert_array_equal(out, max_unpool(ref_y, ref_idx, 2, output_size=(7, 6)))
  assert unpool.apply({}, y, idx).shape == (2, 6, 6, 3)  # PyTorch's default output size


@pytest.mark.slow
def test_round_trip_keeps_each_windows_maximum_in_place_and_trains():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 9, 2)), jnp.float32)
  model = _EncoderDecoder()
  out = jax.jit(model.apply)({}, x)
  kept = np.asarray(out) != 0
  # Every nonzero output is the input value at that position, and every window maximum survives.
  np.testing.assert_array_equal(np.asarray(out)[kept], np.asarray(x)[kept])
  pooled, idx = max_pool_with_argmax(x, 3, 2, 1)
  assert set(np.asarray(pooled).ravel()) <= set(np.asarray(out).ravel())
  # PyTorch's gradients: unpooling reads d/d out back at every index, pooling adds it at the
  # argmax, so a position that is the maximum of m overlapping windows gets m times 2·out.
  times_max = np.zeros((2, 81, 2))
  for n in range(2):
    for c in range(2):
      times_max[n, :, c] = np.bincount(np.asarray(idx)[n, :, :, c].ravel(), minlength=81)
  grad = jax.grad(lambda v: jnp.sum(model.apply({}, v) ** 2))(x)
  np.testing.assert_allclose(grad, 2 * np.asarray(out) * times_max.reshape(2, 9, 9, 2), rtol=1e-6)
  assert times_max.max() > 1  # the case above really has shared maxima


def test_bad_configuration_raises():
  with pytest.raises(ValueError, match="window: expected values >= 1"):
    MaxPoolWithArgmax(window=0).init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
  with pytest.raises(ValueError, match="output_size"):
    MaxUnpool(window=2).apply({}, jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1), jnp.int32), (7, 4))
