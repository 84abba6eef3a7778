"""The Flax Unpool module: both modes on the lecture's example, and a bad mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.nn import Unpool


@pytest.mark.parametrize("mode,expected", [
    ("nearest", [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]),
    ("bed_of_nails", [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]),
])
def test_modes_on_the_lecture_example(mode, expected):
  x = jnp.asarray([[1, 2], [3, 4]], jnp.float32)[None, :, :, None]
  module = Unpool(factor=2, mode=mode)
  variables = module.init(jax.random.key(0), x)
  assert jax.tree.leaves(variables) == []
  np.testing.assert_array_equal(module.apply(variables, x)[0, :, :, 0], expected)


def test_rectangular_factor_and_bad_mode():
  assert Unpool(factor=(2, 3)).apply({}, jnp.ones((1, 2, 2, 4))).shape == (1, 4, 6, 4)
  with pytest.raises(ValueError, match="mode: expected one of \\['bed_of_nails', 'nearest'\\], got 'bilinear'"):
    Unpool(mode="bilinear").apply({}, jnp.ones((1, 2, 2, 1)))
