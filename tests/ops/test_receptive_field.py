"""Theoretical receptive fields (published figures) and the gradient-based effective receptive field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dense_jax.ops.receptive_field import ReceptiveField, effective_receptive_field, receptive_field

CONV, POOL = (3, 1, 1, 1), (2, 2, 1)
# VGG16's convolutional part: 13 3x3/pad-1 convs in 5 blocks, each block ending in a 2x2/2 pool.
VGG16 = [CONV] * 2 + [POOL] + [CONV] * 2 + [POOL] + ([CONV] * 3 + [POOL]) * 3


def test_context_module_dilations_of_yu_and_koltun():
  rfs = receptive_field([(3, 1, d) for d in (1, 1, 2, 4, 8, 16, 1)])
  assert [r.size for r in rfs] == [3, 5, 9, 17, 33, 65, 67]
  assert all(r.jump == 1 for r in rfs)


def test_vgg16_and_fcn():
  rfs = receptive_field(VGG16)
  # Araujo et al. (Distill, 2019), Table 1: VGG-16 conv5_3 r = 196, pool5 r = 212 with effective
  # stride 32 and effective padding 90, i.e. the centre of output 0 at (212 - 1) / 2 - 90 = 15.5.
  assert rfs[-2].size == 196 and rfs[-2].jump == 16
  assert rfs[-1] == ReceptiveField(212, 32, 15.5)
  assert [r.jump for r in rfs if r.jump > 1][:4] == [2, 2, 2, 4]
  # FCN's fc6 is a 7x7 conv on pool5: 212 + 6 * 32.
  assert receptive_field(VGG16 + [(7, 1, 1)])[-1].size == 404


def _ones_stack(layers):
  """A conv stack with all-ones 3x3 (or kxk) single-channel kernels and no padding."""
  def apply(x):
    for k, s, d in layers:
      x = lax.conv_general_dilated(x, jnp.ones((k, k, 1, 1), x.dtype), (s, s), "VALID",
                                   rhs_dilation=(d, d), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return x
  return apply


@pytest.mark.parametrize("layers", [
    [(3, 1, 1)] * 4,
    [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
    [(3, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 2)],
    [(5, 1, 1), (2, 2, 1), (3, 1, 3)],
])
def test_erf_support_of_all_ones_stack_is_the_theoretical_field(layers):
  rf = receptive_field(layers)[-1]
  x = jnp.ones((1, 71, 71, 1))
  apply = _ones_stack(layers)
  _, ho, wo, _ = jax.eval_shape(apply, x).shape
  for i, j in [(ho // 2, wo // 2), (1, ho - 1)]:
    erf = np.asarray(jax.jit(lambda v, i=i, j=j: effective_receptive_field(apply, v, (i, j)))(x))
    rows, cols = np.nonzero(erf)
    assert rows.max() - rows.min() + 1 == rf.size and cols.max() - cols.min() + 1 == rf.size
    # With no padding the field of output (i, j) is centred at start + i * jump.
    assert (rows.min() + rows.max()) / 2 == rf.start + i * rf.jump
    assert (cols.min() + cols.max()) / 2 == rf.start + j * rf.jump
    np.testing.assert_allclose(erf.sum(), 1.0, rtol=1e-5)


def test_erf_of_stacked_convs_is_centre_peaked_and_matches_a_manual_gradient():
  apply = _ones_stack([(3, 1, 1)] * 3)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 11, 11, 1)), jnp.float32)
  erf = np.asarray(effective_receptive_field(apply, x))
  assert erf.argmax() == 5 * 11 + 5  # the centre pixel moves the centre output most
  manual = np.abs(np.asarray(jax.grad(lambda v: apply(v)[:, 2, 2, :].sum())(x))).sum((0, 3))
  np.testing.assert_allclose(erf, manual / manual.sum(), rtol=1e-6)


def test_erf_with_traced_position_and_vanishing_gradient():
  apply = _ones_stack([(3, 1, 1)])
  x = jnp.ones((1, 6, 6, 1))
  f = jax.jit(lambda v, i: effective_receptive_field(apply, v, (i, i)))
  np.testing.assert_array_equal(np.nonzero(np.asarray(f(x, 0)))[0], [0, 0, 0, 1, 1, 1, 2, 2, 2])
  zero = effective_receptive_field(lambda v: 0.0 * v, x)
  np.testing.assert_array_equal(zero, np.zeros((6, 6)))


@pytest.mark.parametrize("layers,match", [
    ([(3, 1)], r"layers\[0\]: expected \(kernel, stride, dilation\)"),
    ([(3, 1, 1), (3, 0, 1)], r"layers\[1\]: expected kernel, stride, dilation >= 1"),
    ([(3, 1, 1, -1)], r"layers\[0\]: expected kernel, stride, dilation >= 1 and padding >= 0"),
    ([(3.0, 1, 1)], r"layers\[0\]: expected ints"),
    ("3,1,1", "layers: expected a sequence"),
])
def test_bad_layers(layers, match):
  with pytest.raises(ValueError, match=match):
    receptive_field(layers)


def test_bad_erf_input():
  with pytest.raises(ValueError, match="x: expected a rank-4"):
    effective_receptive_field(lambda v: v, jnp.ones((4, 4, 1)))
  with pytest.raises(ValueError, match=r"output_position: expected a pixel of the \(4, 4\) output"):
    effective_receptive_field(lambda v: v, jnp.ones((1, 4, 4, 1)), (4, 0))
  with pytest.raises(ValueError, match="apply_fn\\(x\\): expected a rank-4"):
    effective_receptive_field(lambda v: v.sum(-1), jnp.ones((1, 4, 4, 1)))
