"""Inference modes: tiles equal the whole image where they must (translation-equivariant conv nets with the
receptive field inside the margin; a tile covering the image), multi-scale/flip TTA reduces to the whole
image for flip-equivariant models, outputs are at input resolution for odd sizes, bad input is rejected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import inference as inf

_DN = ("NHWC", "HWIO", "NHWC")
_RNG = np.random.default_rng(0)
_K1 = jnp.asarray(_RNG.normal(size=(3, 3, 3, 5)) / 3, jnp.float32)
_K2 = jnp.asarray(_RNG.normal(size=(3, 3, 5, 4)) / 3, jnp.float32)


def conv_net(x):
  """Two 'same' 3x3 convs: translation-equivariant with zero padding, receptive radius 2."""
  y = jnp.tanh(jax.lax.conv_general_dilated(x, _K1, (1, 1), "SAME", dimension_numbers=_DN))
  return jax.lax.conv_general_dilated(y, _K2, (1, 1), "SAME", dimension_numbers=_DN)


def strided_net(x):
  """2x2 average pool, a 'same' 3x3 conv, nearest 2x upsampling: equivariant to shifts by 2 only."""
  n, h, w, c = x.shape
  y = x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
  y = jax.lax.conv_general_dilated(y, _K1, (1, 1), "SAME", dimension_numbers=_DN)
  return jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)


def mirror_net(x):
  """A conv whose kernel is symmetric left-right: flip-equivariant."""
  k = _K1 + _K1[:, ::-1]
  return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=_DN)


def images(shape, seed=1):
  return jax.random.uniform(jax.random.key(seed), shape)


def test_tile_starts_cover_and_end_at_the_border():
  assert inf.tile_starts(10, 4, 3) == [0, 3, 6]
  assert inf.tile_starts(11, 4, 4) == [0, 4, 7]
  assert inf.tile_starts(12, 4, 4) == [0, 4, 8]
  assert inf.tile_starts(4, 8, 2) == [0]
  for size, tile, stride in [(37, 16, 11), (50, 16, 5), (17, 16, 16)]:
    starts = inf.tile_starts(size, tile, stride)
    assert starts[0] == 0 and starts[-1] == size - tile
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


def test_tile_window_by_hand():
  # an inner tile of 8 with margin 1: centres at 0.5 .. 7.5, d = 0.5 1.5 2.5 3.5 3.5 2.5 1.5 0.5
  np.testing.assert_array_equal(inf.tile_window(8, 4, 20, 1, "uniform"), [0, 1, 1, 1, 1, 1, 1, 0])
  np.testing.assert_allclose(inf.tile_window(8, 4, 20, 1, "triangular"),
                             [0, 1 / 6, 1 / 2, 5 / 6, 5 / 6, 1 / 2, 1 / 6, 0])
  hann = inf.tile_window(8, 4, 20, 0, "hann")
  np.testing.assert_allclose(hann, np.sin(np.pi / 2 * np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 8) ** 2)
  # a tile on the image's left border is not down-weighted towards that border
  np.testing.assert_allclose(inf.tile_window(8, 0, 20, 0, "triangular"),
                             [1, 1, 1, 1, 7 / 8, 5 / 8, 3 / 8, 1 / 8])
  np.testing.assert_array_equal(inf.tile_window(8, 0, 8, 3, "hann"), np.ones(8))


@pytest.mark.parametrize("shape, tile, stride, tile_batch, window", [
    ((2, 37, 50, 3), 16, 11, None, "hann"),
    ((2, 37, 50, 3), 16, 11, None, "triangular"),
    ((1, 23, 31, 3), (12, 9), (7, 5), 4, "uniform"),
    ((1, 40, 17, 3), 16, 10, 1, "hann"),        # width 17 > tile 16: two columns with a 15-pixel overlap
    ((1, 10, 41, 3), 16, 9, None, "triangular"),  # height below the tile: one row, clipped to the image
])
def test_sliding_equals_whole_for_a_conv_net(shape, tile, stride, tile_batch, window):
  x = images(shape)
  got = jax.jit(lambda x: inf.predict_sliding(conv_net, x, tile=tile, stride=stride, window=window,
                                              margin=2, tile_batch=tile_batch))(x)
  assert got.shape == shape[:3] + (4,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, inf.predict_whole(conv_net, x), rtol=1e-5, atol=2e-6)


def test_sliding_blends_a_map_without_channel_axis():
  """A depth-like `(B, h, w)` output is blended as one channel and comes back without the axis."""
  x = images((2, 37, 50, 3))
  depth_net = lambda t: conv_net(t)[..., 0]
  got = inf.predict_sliding(depth_net, x, tile=16, stride=11, margin=2)
  assert got.shape == (2, 37, 50)
  np.testing.assert_allclose(got, inf.predict_whole(depth_net, x), rtol=1e-5, atol=2e-6)


def test_margin_below_the_receptive_radius_breaks_equality():
  """The test above can fail: with margin 1 < radius 2, inner tile edges leak zero padding."""
  x = images((1, 37, 50, 3))
  got = inf.predict_sliding(conv_net, x, tile=16, stride=11, window="uniform", margin=1)
  assert float(jnp.max(jnp.abs(got - inf.predict_whole(conv_net, x)))) > 1e-3


def test_sliding_equals_whole_for_a_strided_net_on_its_grid():
  x = images((1, 40, 48, 3))
  got = inf.predict_sliding(strided_net, x, tile=16, stride=8, margin=4)  # starts: multiples of 2
  np.testing.assert_allclose(got, strided_net(x), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("tile", [(37, 50), (64, 64), (40, 128)])
def test_tile_covering_the_image_is_exactly_whole(tile):
  x = images((2, 37, 50, 3))
  got = inf.predict_sliding(conv_net, x, tile=tile, stride=(8, 8))
  np.testing.assert_array_equal(got, inf.predict_whole(conv_net, x))
  padded = inf.predict_sliding(strided_net, x, tile=tile, pad_to_multiple=2)
  np.testing.assert_array_equal(padded, inf.predict_whole(strided_net, x, pad_to_multiple=2))


def test_sliding_blends_overlaps():
  """A model that returns each tile's index shows the blend: uniform averages the overlap."""
  def counter(x):
    return jnp.broadcast_to(jnp.arange(x.shape[0], dtype=jnp.float32)[:, None, None, None], x.shape[:3] + (1,))

  x = jnp.zeros((1, 4, 6, 3))
  y = inf.predict_sliding(counter, x, tile=(4, 4), stride=(4, 2), window="uniform")  # columns 0 and 2
  np.testing.assert_allclose(y[0, 0, :, 0], [0, 0, 0.5, 0.5, 1, 1])
  y = inf.predict_sliding(counter, x, tile=(4, 4), stride=(4, 2), window="triangular")
  # column 2: tile 0 at d=1.5 from its inner edge (weight 3/4), tile 1 at d=0.5 (weight 1/4)
  np.testing.assert_allclose(y[0, 0, :, 0], [0, 0, 0.25, 0.75, 1, 1])


def test_overlap_sets_the_stride():
  seen = []

  def recorder(x):
    seen.append(x.shape)
    return conv_net(x)

  inf.predict_sliding(recorder, images((1, 28, 28, 3)), tile=12, overlap=0.5)  # stride 6: starts 0 6 12 16
  assert seen[-1] == (16, 12, 12, 3)
  inf.predict_sliding(recorder, images((1, 28, 28, 3)), tile=12)  # default overlap 1/3: stride 8: 0 8 16
  assert seen[-1] == (9, 12, 12, 3)


@pytest.mark.parametrize("h, w", [(1, 1), (33, 17)])
def test_whole_pads_to_a_multiple_and_crops_back(h, w):
  seen = []

  def needs_8(x):
    seen.append(x.shape)
    assert x.shape[1] % 8 == 0 and x.shape[2] % 8 == 0
    return strided_net(x)

  x = images((2, h, w, 3))
  out = inf.predict_whole(needs_8, x, pad_to_multiple=8)
  assert out.shape == (2, h, w, 5)
  assert seen[-1] == (2, -(-h // 8) * 8, -(-w // 8) * 8, 3)
  padded = jnp.pad(x, ((0, 0), (0, seen[-1][1] - h), (0, seen[-1][2] - w), (0, 0)))
  np.testing.assert_array_equal(out, strided_net(padded)[:, :h, :w])


def test_required_multiple():
  def needs_8(x):
    if x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError("images: expected multiples of 8")
    return strided_net(x)

  assert inf.required_multiple(conv_net, [(13, 7)]) == 1
  assert inf.required_multiple(strided_net, [(13, 7), (4, 4)]) == 2   # odd sizes fail inside (reshape)
  assert inf.required_multiple(needs_8, [(13, 7), (30, 36)]) == 8   # 36 -> 40, not 36 (m=4)
  with pytest.raises(ValueError, match="apply_fn"):
    inf.required_multiple(lambda x: x[:, 1:-1, 1:-1], [(8, 8)])     # output smaller than the input
  assert inf.scaled_size((13, 21), 0.75) == (10, 16) and inf.scaled_size((1, 3), 0.1) == (1, 1)


def test_multiscale_identity_cases():
  x = images((2, 12, 10, 3))
  whole = inf.predict_whole(mirror_net, x)
  got = inf.predict_multiscale(mirror_net, x, scales=(1.0,), flip=True)
  np.testing.assert_allclose(got, jax.nn.log_softmax(whole, -1), rtol=1e-5, atol=1e-5)
  got = inf.predict_multiscale(mirror_net, x, scales=(1,), flip=True, average="logits")
  np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(inf.predict_multiscale(conv_net, x, scales=(1.0,), flip=False, average="logits"),
                                inf.predict_whole(conv_net, x))


def test_multiscale_flips_back():
  x = images((1, 9, 11, 3))
  expected = (conv_net(x) + conv_net(x[:, :, ::-1])[:, :, ::-1]) / 2
  got = inf.predict_multiscale(conv_net, x, scales=(1.0,), flip=True, average="logits")
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(got - conv_net(x)))) > 1e-3  # conv_net is not flip-equivariant


def test_multiscale_of_a_constant_image():
  pointwise = lambda x: jnp.tanh(x @ _K1[1, 1])
  x = jnp.ones((1, 12, 10, 3)) * jnp.asarray([0.3, 0.2, 0.5])
  got = jax.jit(lambda x: inf.predict_multiscale(pointwise, x, scales=(0.5, 1.0, 1.75)))(x)
  np.testing.assert_allclose(got, jax.nn.log_softmax(pointwise(x), -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h, w", [(13, 21)])
def test_multiscale_sizes_and_padding(h, w):
  seen = []

  def needs_8(x):
    seen.append(x.shape[1:3])
    assert x.shape[1] % 8 == 0 and x.shape[2] % 8 == 0
    return strided_net(x)

  out = inf.predict_multiscale(needs_8, images((1, h, w, 3)), scales=(0.75, 1.25), flip=True, pad_to_multiple=8)
  assert out.shape == (1, h, w, 5)
  up = lambda n, s: -(-round(n * s) // 8) * 8
  assert seen == [(up(h, 0.75), up(w, 0.75))] * 2 + [(up(h, 1.25), up(w, 1.25))] * 2


def test_multiscale_sliding():
  x = images((1, 30, 26, 3))
  got = inf.predict_multiscale(conv_net, x, scales=(1.0,), flip=False, average="logits", mode="sliding",
                               tile=12, stride=8, margin=2)
  np.testing.assert_allclose(got, inf.predict_sliding(conv_net, x, tile=12, stride=8, margin=2), rtol=1e-6)
  got = inf.predict_multiscale(conv_net, x, scales=(1.5,), flip=False, mode="sliding", tile=12, margin=2)
  assert got.shape == (1, 30, 26, 4) and bool(jnp.all(jnp.isfinite(got)))


def test_with_a_zoo_model():
  from dense_jax.models._random import random_variables
  from dense_jax.models.registry import get_model
  model = get_model("unet", num_classes=3, width=4, depth=2, padding="same", norm="batch")
  v = random_variables(model, (1, 16, 16, 3))
  apply_fn = lambda x: model.apply(v, x, train=False)["semantic"]
  x = images((1, 30, 27, 3))
  out = jax.jit(lambda x: inf.predict_multiscale(apply_fn, x, scales=(1.25,), mode="sliding", tile=16,
                                                 pad_to_multiple=4))(x)
  assert out.shape == (1, 30, 27, 3) and bool(jnp.all(jnp.isfinite(out)))
  with pytest.raises(ValueError, match="divisible"):
    inf.predict_whole(apply_fn, x)


def test_bad_arguments():
  x = images((1, 8, 8, 3))
  with pytest.raises(ValueError, match="images"):
    inf.predict_whole(conv_net, jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match="images"):
    inf.predict_sliding(conv_net, jnp.zeros((1, 8, 8, 3), jnp.int32), tile=4)
  with pytest.raises(ValueError, match="pad_to_multiple"):
    inf.predict_whole(conv_net, x, pad_to_multiple=0)
  with pytest.raises(ValueError, match="apply_fn"):
    inf.predict_whole(lambda x: x[:, 1:-1, 1:-1], x)   # a 'valid' model
  with pytest.raises(ValueError, match="stride"):
    inf.predict_sliding(conv_net, x, tile=4, stride=5)
  with pytest.raises(ValueError, match="stride"):
    inf.predict_sliding(conv_net, x, tile=4, stride=0)
  with pytest.raises(ValueError, match="stride, overlap"):
    inf.predict_sliding(conv_net, x, tile=4, stride=2, overlap=0.5)
  with pytest.raises(ValueError, match="overlap"):
    inf.predict_sliding(conv_net, x, tile=4, overlap=1.0)
  with pytest.raises(ValueError, match="tile"):
    inf.predict_sliding(conv_net, x, tile=(4, 0))
  with pytest.raises(ValueError, match="margin"):
    inf.predict_sliding(conv_net, x, tile=4, stride=2, margin=2)
  with pytest.raises(ValueError, match="window"):
    inf.predict_sliding(conv_net, x, tile=4, window="gauss")
  with pytest.raises(ValueError, match="tile_batch"):
    inf.predict_sliding(conv_net, x, tile=4, tile_batch=0)
  with pytest.raises(ValueError, match="num_classes"):
    inf.predict_sliding(conv_net, x, tile=4, num_classes=3)
  for scales in [(), (0.5, 0.0), (float("nan"),), 1.0]:
    with pytest.raises(ValueError, match="scales"):
      inf.predict_multiscale(conv_net, x, scales=scales)
  with pytest.raises(ValueError, match="mode"):
    inf.predict_multiscale(conv_net, x, mode="tiled")
  with pytest.raises(ValueError, match="mode"):
    inf.predict_multiscale(conv_net, x, tile=4)
  with pytest.raises(ValueError, match="average"):
    inf.predict_multiscale(conv_net, x, average="votes")
