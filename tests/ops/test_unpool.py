"""Nearest and bed-of-nails unpooling: the lecture's examples, NumPy references, gradients, no scatter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from dense_jax.ops._hlo import has_scatter
from dense_jax.ops.unpool import unpool_bed_of_nails, unpool_nearest


def _plane(a):
  """A 2-D list as a (1, H, W, 1) float32 array."""
  return jnp.asarray(a, jnp.float32)[None, :, :, None]


def test_lecture_nearest_neighbor():
  got = unpool_nearest(_plane([[1, 2], [3, 4]]), 2)[0, :, :, 0]
  np.testing.assert_array_equal(got, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_lecture_bed_of_nails():
  got = unpool_bed_of_nails(_plane([[1, 2], [3, 4]]), 2)[0, :, :, 0]
  np.testing.assert_array_equal(got, [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("factor", [1, 3, (2, 3), (3, 1)])
def test_against_numpy_definitions(factor):
  fh, fw = (factor, factor) if isinstance(factor, int) else factor
  x = np.random.default_rng(fh * 10 + fw).standard_normal((2, 3, 4, 5)).astype(np.float32)
  near = np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)
  nails = np.zeros_like(near)
  nails[:, ::fh, ::fw] = x
  np.testing.assert_array_equal(unpool_nearest(jnp.asarray(x), factor), near)
  np.testing.assert_array_equal(unpool_bed_of_nails(jnp.asarray(x), factor), nails)


def test_gradients_block_sum_and_subsample():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 2, 2)), jnp.float32)
  g = jnp.asarray(np.random.default_rng(1).standard_normal((1, 6, 6, 2)), jnp.float32)
  _, vjp = jax.vjp(lambda v: unpool_nearest(v, (2, 3)), x)
  np.testing.assert_allclose(vjp(g)[0], np.asarray(g).reshape(1, 3, 2, 2, 3, 2).sum((2, 4)), rtol=1e-6)
  _, vjp = jax.vjp(lambda v: unpool_bed_of_nails(v, (2, 3)), x)
  np.testing.assert_array_equal(vjp(g)[0], np.asarray(g)[:, ::2, ::3])
  with jax.enable_x64(True):
    x64 = jnp.asarray(np.random.default_rng(2).standard_normal((2, 2, 3, 1)))
    jtu.check_grads(lambda v: unpool_nearest(v, 2), (x64,), order=2, modes=("fwd", "rev"))
    jtu.check_grads(lambda v: unpool_bed_of_nails(v, 2), (x64,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("fn", [unpool_nearest, unpool_bed_of_nails])
def test_compiled_forward_and_backward_have_no_scatter(fn):
  x = jnp.ones((2, 4, 4, 3))

  def loss(v):
    return jnp.sum(fn(v, 2) ** 2)

  assert not has_scatter(jax.jit(jax.value_and_grad(loss)), x)


def test_jit_vmap():
  xs = jnp.asarray(np.random.default_rng(4).standard_normal((3, 1, 2, 2, 1)), jnp.float32)
  out = jax.jit(jax.vmap(lambda v: unpool_bed_of_nails(v, 2)))(xs)
  np.testing.assert_array_equal(out[2], unpool_bed_of_nails(xs[2], 2))


@pytest.mark.parametrize("fn", [unpool_nearest, unpool_bed_of_nails])
@pytest.mark.parametrize("x,factor,match", [
    (jnp.ones((2, 2, 1)), 2, "x: expected a rank-4"),
    (jnp.ones((1, 2, 2, 1)), 0, "factor: expected values >= 1"),
    (jnp.ones((1, 2, 2, 1)), (2, -1), "factor: expected values >= 1"),
    (jnp.ones((1, 2, 2, 1)), 1.5, "factor: expected an int or a pair"),
])
def test_bad_input(fn, x, factor, match):
  with pytest.raises(ValueError, match=match):
    fn(x, factor)
