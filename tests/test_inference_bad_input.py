"""Bad input to the inference modes: 0..255 images (values outside [0, 1]), NaN images, integer images,
a single or grayscale image where a batch is expected, and a 1-channel batch a 3-channel model cannot
take: each our own ValueError naming `images`, what was expected and what came. Traced images are not
value-checked (no error, one compilation)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import inference

IMAGES = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype(np.float32)


def _rgb_only(x):
  """A model that, like the registered ones, takes RGB: a 3-channel 1x1 'conv' (fails inside on 1 channel)."""
  return jnp.tensordot(x, jnp.ones((3, 2), x.dtype), axes=1)


MODES = {
    "whole": lambda x: inference.predict_whole(_rgb_only, x),
    "sliding": lambda x: inference.predict_sliding(_rgb_only, x, tile=4),
    "multiscale": lambda x: inference.predict_multiscale(_rgb_only, x, scales=(1.0, 0.5)),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_0_255_images(mode):
  with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\] \(value_range\), got min \d.*, max "
                                       r"25[0-5](\.\d+)?.*divide by 255"):
    MODES[mode](IMAGES * 255)


def test_negative_and_nan_images():
  with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\] .*got min -1\.5"):
    inference.predict_whole(_rgb_only, IMAGES.clip(0.1, 1) - 1.6)
  bad = IMAGES.copy()
  bad[0, 1, 1, 0] = np.nan
  with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\] .* and NaN"):
    inference.predict_whole(_rgb_only, bad)


def test_value_range_is_configurable_and_unchecked_under_jit():
  inference.predict_whole(_rgb_only, IMAGES * 255, value_range=(0, 255))
  inference.predict_whole(_rgb_only, IMAGES * 255, value_range=None)
  fn = jax.jit(chex.assert_max_traces(lambda x: inference.predict_whole(_rgb_only, x), n=1))
  fn(IMAGES * 255)   # traced: not checked (documented)
  fn(IMAGES)


def test_integer_images():
  with pytest.raises(ValueError, match=r"images: expected a floating dtype with values in \[0, 1\], got uint8 "
                                       r"\(0\.\.255 pixels: images.astype\(np.float32\) / 255\)"):
    inference.predict_whole(_rgb_only, (IMAGES * 255).astype(np.uint8))


@pytest.mark.parametrize("shape, looks", [((8, 8), "one grayscale image \\(H, W\\)"),
                                          ((8, 8, 1), "one image \\(H, W, C\\)"),
                                          ((8, 8, 3), "one image \\(H, W, C\\)"),
                                          ((2, 8, 8), "a batch of grayscale images \\(N, H, W\\)")])
def test_single_or_grayscale_image_shapes(shape, looks):
  with pytest.raises(ValueError, match=rf"images: expected a batch \(N, H, W, C\) .*got shape "
                                       rf"{re_shape(shape)}, which looks like {looks}"):
    inference.predict_whole(_rgb_only, np.zeros(shape, np.float32))


def re_shape(shape):
  return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_grayscale_batch_to_an_rgb_model():
  with pytest.raises(ValueError, match=r"images: apply_fn failed on images with 1 channels \(shape \(1, 8, 8, 1\)\); "
                                       r"the registered models take \(N, H, W, 3\).*repeat\(3, axis=-1\)"):
    inference.predict_whole(_rgb_only, IMAGES[..., :1])
  # A 1-channel apply_fn (not a registered model) is fine.
  assert inference.predict_whole(lambda x: x * 2, IMAGES[..., :1]).shape == (1, 8, 8, 1)
