"""VGG16 / VGG16-BN trunk: parameter counts, feature shapes, removed poolings, ceil mode, argmax indices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.backbones import VGG16
from dense_jax.models.flops import param_counts


@pytest.mark.parametrize("batch_norm, expected", [
    # torchvision vgg16 / vgg16_bn (weights meta num_params 138,357,544 / 138,365,992) minus the
    # classifier's 123,642,856 (25088·4096 + 4096 + 4096² + 4096 + 4096·1000 + 1000).
    pytest.param(False, 14_714_688, id="vgg16"),
    pytest.param(True, 14_723_136, id="vgg16_bn"),
])
def test_param_count_matches_torchvision(batch_norm, expected):
  assert param_counts(VGG16(batch_norm=batch_norm), (1, 64, 64, 3))["params"] == expected


def _shapes(model, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  return jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


def test_feature_shapes_full_size():
  out = _shapes(VGG16(), (2, 224, 160, 3))
  for b, (c, s) in enumerate([(64, 2), (128, 4), (256, 8), (512, 16), (512, 32)], start=1):
    assert out[f"pool{b}"].shape == (2, 224 // s, 160 // s, c)
    assert out[f"conv{b}"].shape == (2, 224 * 2 // s, 160 * 2 // s, c)


def test_removed_poolings_keep_resolution_and_dilate():
  model = VGG16(width=0.125, pools=(True, True, True, False, False))
  assert model.output_stride == 8 and model.output_dilation == 4
  out = _shapes(model, (1, 64, 64, 3))
  assert out["pool5"].shape == (1, 8, 8, 64)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  # Dilation does not change the kernels' shapes: the same parameters as the strided trunk.
  assert variables["params"]["conv5_1"]["kernel"].shape == (3, 3, 64, 64)


def test_ceil_mode_pooling_sizes():
  out = _shapes(VGG16(width=0.125, ceil_mode=True, first_padding=100), (1, 5, 7, 3))
  # Caffe: 5 + 198 = 203 -> 102 -> 51 -> 26 -> 13 -> 7 ; 7 + 198 = 205 -> 103 -> 52 -> 26 -> 13 -> 7.
  assert [out[f"pool{b}"].shape[1:3] for b in range(1, 6)] == [(102, 103), (51, 52), (26, 26), (13, 13), (7, 7)]


def test_return_indices_point_at_the_maxima():
  model = VGG16(width=0.0625, batch_norm=True, return_indices=True)
  x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
  out = jax.jit(model.apply)(random_variables(model, x.shape), x)
  for b in range(1, 6):
    conv, pool, idx = out[f"conv{b}"], out[f"pool{b}"], out[f"indices{b}"]
    assert idx.shape == pool.shape and jnp.issubdtype(idx.dtype, jnp.integer)
    n, h, w, c = conv.shape
    flat = np.asarray(conv).transpose(0, 3, 1, 2).reshape(n, c, h * w)
    picked = np.take_along_axis(flat, np.asarray(idx).transpose(0, 3, 1, 2).reshape(n, c, -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(n, c, *pool.shape[1:3]).transpose(0, 2, 3, 1), pool)


def test_bad_input():
  with pytest.raises(ValueError, match="x: expected a rank-4"):
    VGG16().init(jax.random.key(0), jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match="pools"):
    VGG16(pools=(True, False)).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="width"):
    VGG16(width=0).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
