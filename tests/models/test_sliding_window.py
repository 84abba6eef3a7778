"""Sliding-window patch classifier: the fully convolutional form computes exactly the same output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model
from dense_jax.models.sliding_window import SlidingWindow


@pytest.mark.parametrize("shape, patch_size", [((2, 20, 24, 3), 18), ((1, 13, 9, 2), 12), ((1, 16, 16, 3), 22)])
def test_dense_form_equals_sliding_window(shape, patch_size):
  dense = SlidingWindow(num_classes=5, patch_size=patch_size, width=0.25, mode="dense")
  sliding = SlidingWindow(num_classes=5, patch_size=patch_size, width=0.25, mode="sliding", chunk=97)
  x = jax.random.normal(jax.random.key(1), shape)
  v = random_variables(dense, shape)
  a = jax.jit(dense.apply)(v, x)["semantic"]
  b = jax.jit(sliding.apply)(v, x)["semantic"]
  assert a.shape == b.shape == shape[:3] + (5,)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _patch_classifier(p, patch):
  """The patch classifier written out for one (P, P, C) patch with NumPy (the reference)."""
  def conv_valid(x, w, b):
    k = w.shape[0]
    h, wd = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((h, wd, w.shape[-1]))
    for a in range(k):
      for c in range(k):
        out += x[a:a + h, c:c + wd] @ w[a, c]
    return out + b
  relu = lambda t: np.maximum(t, 0)
  g = lambda name: (np.asarray(p[f"{name}_kernel"], np.float64), np.asarray(p[f"{name}_bias"], np.float64))
  x = relu(conv_valid(patch, *g("conv1")))
  x = relu(conv_valid(x, *g("conv2")))
  h, w, c = x.shape
  x = x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
  x = relu(conv_valid(x, *g("conv3")))
  wfc, bfc = g("fc")
  x = relu(x.reshape(-1) @ wfc.reshape(-1, wfc.shape[-1]) + bfc)  # the fc layer on the flattened map
  wo, bo = g("out")
  return x @ wo[0, 0] + bo


def test_each_output_is_the_classifier_of_its_own_patch():
  """Pixel (i, j) = the patch classifier on the zero-padded image's rows i-P/2 .. i+P/2-1."""
  model = SlidingWindow(num_classes=3, patch_size=14, width=0.25, mode="dense")
  x = np.asarray(jax.random.normal(jax.random.key(2), (1, 11, 10, 3)), np.float64)
  v = random_variables(model, x.shape, seed=4)
  y = np.asarray(jax.jit(model.apply)(v, jnp.asarray(x, jnp.float32))["semantic"])
  xp = np.pad(x, ((0, 0), (7, 6), (7, 6), (0, 0)))
  for i, j in [(0, 0), (5, 4), (10, 9), (3, 9)]:
    np.testing.assert_allclose(_patch_classifier(v["params"], xp[0, i:i + 14, j:j + 14]), y[0, i, j],
                               rtol=1e-4, atol=1e-4)


def test_param_count():
  # conv 3x3x3x32, 3x3x32x64, 3x3x64x128, fc 5x5x128x256, out 256x21 (+ biases).
  expected = (27 * 32 + 32) + (288 * 64 + 64) + (576 * 128 + 128) + (25 * 128 * 256 + 256) + (256 * 21 + 21)
  assert param_counts(get_model("sliding_window"), (1, 32, 32, 3))["params"] == expected


def test_bad_arguments():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="patch_size"):
    SlidingWindow(patch_size=17).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="patch_size"):
    SlidingWindow(patch_size=8).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="mode"):
    SlidingWindow(mode="tiles").init(jax.random.key(0), x)
