"""Inference modes: tiles with blending and multi-scale/flip TTA agree with whole-image prediction
where they must (pointwise models, constant images), at input resolution, and reject bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models.inference import predict_tiled, predict_tta, predict_whole, tile_starts

W = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
pointwise = lambda x: jnp.tanh(x @ W)  # a "model" whose output at a pixel depends on that pixel only


def test_tile_starts_cover_and_end_at_the_border():
  assert tile_starts(10, 4, 3) == [0, 3, 6]
  assert tile_starts(11, 4, 4) == [0, 4, 7]
  assert tile_starts(4, 8, 2) == [0]


@pytest.mark.parametrize("blend", ["uniform", "tent"])
@pytest.mark.parametrize("shape, tile, stride", [((2, 37, 50, 3), 16, 11), ((1, 10, 7, 3), 16, 8),
                                                 ((1, 32, 32, 3), (16, 8), (16, 8))])
def test_tiled_equals_whole_for_a_pointwise_model(blend, shape, tile, stride):
  x = jax.random.normal(jax.random.key(1), shape)
  got = jax.jit(lambda x: predict_tiled(pointwise, x, tile, stride, blend))(x)
  assert got.shape == shape[:3] + (4,)
  np.testing.assert_allclose(got, predict_whole(pointwise, x), rtol=1e-5, atol=1e-6)


def test_tiled_blends_overlaps():
  """A model that returns each tile's own index shows the blend: overlaps get the weighted mean."""
  counter = lambda x: jnp.broadcast_to(jnp.arange(x.shape[0], dtype=jnp.float32)[:, None, None, None],
                                       x.shape[:3] + (1,))
  x = jnp.zeros((1, 4, 6, 3))
  y = predict_tiled(counter, x, (4, 4), (4, 2), "uniform")  # tiles at columns 0 and 2
  np.testing.assert_allclose(y[0, 0, :, 0], [0, 0, 0.5, 0.5, 1, 1])


def test_tta_identity_cases():
  x = jax.random.normal(jax.random.key(2), (2, 12, 10, 3))
  expected = jax.nn.log_softmax(pointwise(x), axis=-1)
  np.testing.assert_allclose(predict_tta(pointwise, x, scales=(1.0,), flip=True), expected, rtol=1e-5, atol=1e-6)
  constant = jnp.ones((1, 12, 10, 3)) * jnp.asarray([0.3, -0.2, 0.5])
  got = predict_tta(pointwise, constant, scales=(0.5, 1.0, 1.75), flip=True)
  np.testing.assert_allclose(got, jax.nn.log_softmax(pointwise(constant), axis=-1), rtol=1e-5, atol=1e-5)


def test_tta_rounds_sizes_to_the_model_multiple():
  seen = []

  def needs_32(x):
    seen.append(x.shape[1:3])
    assert x.shape[1] % 32 == 0 and x.shape[2] % 32 == 0
    return pointwise(x)

  out = predict_tta(needs_32, jnp.zeros((1, 64, 96, 3)), scales=(0.75, 1.25), flip=False, size_multiple=32)
  assert out.shape == (1, 64, 96, 4) and seen == [(64, 96), (96, 128)]


def test_with_a_zoo_model():
  from dense_jax.models._random import random_variables
  from dense_jax.models.registry import get_model
  model = get_model("sliding_window_narrow", num_classes=3)
  x = jax.random.normal(jax.random.key(3), (1, 40, 40, 3))
  v = random_variables(model, (1, 16, 16, 3))
  predict = lambda x: model.apply(v, x, train=False)
  tiled = jax.jit(lambda x: predict_tiled(predict, x, 24, 16, "tent"))(x)
  whole = predict_whole(predict, x)
  assert tiled.shape == whole.shape == (1, 40, 40, 3)
  # The patch classifier sees 18x18 around a pixel: pixels whose patch lies inside one tile agree.
  np.testing.assert_allclose(tiled[0, 9:15, 9:15], whole[0, 9:15, 9:15], rtol=1e-4, atol=1e-5)


def test_bad_arguments():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="stride"):
    predict_tiled(pointwise, x, 4, 5)
  with pytest.raises(ValueError, match="blend"):
    predict_tiled(pointwise, x, 4, 2, "gauss")
  with pytest.raises(ValueError, match="scales"):
    predict_tta(pointwise, x, scales=())
  with pytest.raises(ValueError, match="images"):
    predict_whole(pointwise, jnp.zeros((8, 8, 3)))
