"""Bad input to roi_align / multilevel_roi_align: batch indices outside the batch, most RoIs outside the
feature map (an NCHW map read as NHWC, a wrong spatial_scale), a bad spatial_scale; traced calls unchecked."""

import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.ops.roi_align import multilevel_roi_align, roi_align

FEATURES = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
BOXES = np.array([[0, 0, 4, 4], [2, 2, 6, 7]], np.float32)


@pytest.mark.parametrize("indices, got", [([0, 2], "got 2 at index (1,)"), ([-1, 0], "got -1 at index (0,)")])
def test_batch_indices_outside_the_batch(indices, got):
  with pytest.raises(ValueError, match=r"batch_indices: expected indices into the features' batch \(N=2\) in "
                                       rf"\[0, 2\), {re.escape(got)}"):
    roi_align(FEATURES, BOXES, 2, batch_indices=np.array(indices, np.int32))


def test_multilevel_batch_indices_outside_the_batch():
  feats = [np.zeros((2, 16, 16, 4), np.float32), np.zeros((2, 8, 8, 4), np.float32)]
  with pytest.raises(ValueError, match=r"batch_indices: expected .* \(N=2\) in \[0, 2\), got 5"):
    multilevel_roi_align(feats, BOXES, 2, (64, 64), batch_indices=jnp.array([0, 5]))


def test_batch_indices_under_jit_are_unchecked_and_compile_once():
  fn = jax.jit(chex.assert_max_traces(lambda f, b, i: roi_align(f, b, 2, batch_indices=i), n=1))
  ok = fn(FEATURES, BOXES, jnp.array([0, 1]))
  clamped = fn(FEATURES, BOXES, jnp.array([0, 7]))   # documented: clamped to N - 1 under jit
  np.testing.assert_allclose(clamped, ok)


def test_nchw_map_read_as_nhwc_warns():
  # A torch (N, C, H, W) = (1, 16, 4, 6) map: as NHWC it is 16 x 4 with 6 channels, and boxes spanning the
  # real width 6 at stride 1 lie beyond "W" = 4.
  nchw = np.zeros((1, 16, 4, 6), np.float32)
  boxes = np.array([[[5.5, 0, 6, 1], [5.2, 1, 6, 3], [0, 0, 1, 1]]], np.float32)
  with pytest.warns(UserWarning, match=r"boxes: 2 of 3 RoIs lie entirely outside the feature map \(16, 4\).*"
                                       r"NHWC.*transpose\(0, 2, 3, 1\)"):
    roi_align(nchw, boxes, 2)


def test_wrong_spatial_scale_warns_but_one_stray_roi_does_not():
  boxes = np.array([[40, 40, 60, 60], [50, 50, 64, 64]], np.float32)   # image pixels of a stride-8 map
  with pytest.warns(UserWarning, match=r"boxes: 2 of 2 RoIs .*spatial_scale 1.0"):
    roi_align(FEATURES, boxes, 2, 1.0, batch_indices=np.array([0, 1]))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    roi_align(FEATURES, boxes, 2, 1 / 8, batch_indices=np.array([0, 1]))             # the right scale
    roi_align(FEATURES, np.array([[0, 0, 4, 4], [20, 20, 30, 30], [1, 1, 2, 2]], np.float32), 2,
              batch_indices=np.array([0, 1, 1]))                                      # one stray RoI: legal


@pytest.mark.parametrize("scale", [0.0, -0.5, "1/8"])
def test_bad_spatial_scale(scale):
  with pytest.raises(ValueError, match=rf"spatial_scale: expected a positive number .*got {re.escape(repr(scale))}"):
    roi_align(FEATURES, BOXES[None].repeat(2, 0), 2, scale)
