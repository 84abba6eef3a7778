"""Zhang, Isola & Efros (ECCV 2016) colorization network: the released model's parameter count by layer
arithmetic, shapes, L from RGB against data.color, annealed-mean decoding, bad input, and a short run that
learns a tiny batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dense_jax.data import color
from dense_jax.models._random import random_variables
from dense_jax.models.colorization import decode_ab, default_num_bins, rgb_to_lightness
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model

FAST_KEY = lambda: jax.random.key(0, impl="unsafe_rbg")  # Compiles much faster than threefry.


def conv_params(k, c_in, c_out):
  return k * k * c_in * c_out + c_out


def released_model_params(num_bins, width=1.0):
  """colorization_deploy_v2.prototxt, layer by layer (BatchNorm without Scale: no learned parameters)."""
  s = lambda c: max(1, round(c * width))
  blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3), (512, 3), (512, 3)]
  total, c_in = 0, 1                                        # input: the L channel
  for channels, n in blocks:
    for _ in range(n):
      total += conv_params(3, c_in, s(channels))
      c_in = s(channels)
  total += conv_params(4, c_in, s(256))                     # conv8_1: 4x4 transposed conv
  total += 2 * conv_params(3, s(256), s(256))               # conv8_2, conv8_3
  total += conv_params(1, s(256), num_bins)                 # conv8_313
  return total


def test_param_count_equals_the_released_model():
  counts = param_counts(get_model("colorization", num_bins=313), (1, 224, 224, 1))
  # The released colorization_release_v2.caffemodel: about 32.2M learned parameters.
  assert counts["params"] == released_model_params(313) == 32_230_393
  # Batch-norm moving mean and variance of blocks 1-7 only (no scale, no offset).
  assert counts["state"] == 2 * (64 + 128 + 256 + 4 * 512)


@pytest.mark.parametrize("name, width", [("colorization", 1.0), ("colorization_narrow", 0.125)])
def test_default_bins_are_data_colors(name, width):
  q = default_num_bins()
  assert q == len(color.gamut_bins())
  assert param_counts(get_model(name), (1, 64, 64, 1))["params"] == released_model_params(q, width)


def test_output_at_quarter_resolution_and_rgb_input_equals_its_lightness():
  model = get_model("colorization_narrow")
  rgb = jax.random.uniform(jax.random.key(1), (2, 32, 48, 3))
  lightness = jnp.asarray(color.rgb_to_lab(np.asarray(rgb, np.float64))[..., :1], jnp.float32)
  variables = random_variables(model, (2, 32, 48, 1))
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  from_rgb, from_l = apply(variables, rgb), apply(variables, lightness)
  assert set(from_rgb) == {"colorization"}
  assert from_rgb["colorization"].shape == (2, 8, 12, default_num_bins())
  np.testing.assert_allclose(from_rgb["colorization"], from_l["colorization"], rtol=1e-4, atol=1e-4)


def test_rgb_to_lightness_matches_data_color():
  rgb = np.random.default_rng(0).uniform(size=(500, 3))
  rgb[:3] = [[0, 0, 0], [1, 1, 1], [0.02, 0.03, 0.01]]       # black, white, the linear segment
  np.testing.assert_allclose(rgb_to_lightness(jnp.asarray(rgb, jnp.float32))[..., 0],
                             color.rgb_to_lab(rgb)[..., 0], atol=2e-3)


def test_decode_ab_is_the_annealed_mean():
  bins = color.AbBins()
  q = bins.num_bins
  logits = np.full((1, 1, 3, q), -50.0)
  logits[0, 0, 0, 7] = 50.0                                 # certain: that bin's centre
  logits[0, 0, 1, [3, 11]] = 50.0                           # two equal bins: their midpoint
  logits[0, 0, 2, 3], logits[0, 0, 2, 11] = 1.0, 0.0        # p = (e, 1) / (e + 1): annealed towards bin 3
  ab = decode_ab(logits, bins)
  np.testing.assert_allclose(ab[0, 0, 0], bins.centres[7], atol=1e-9)
  np.testing.assert_allclose(ab[0, 0, 1], (bins.centres[3] + bins.centres[11]) / 2, atol=1e-9)
  w = np.exp(np.array([1.0, 0.0]) / 0.38)
  w /= w.sum()
  np.testing.assert_allclose(ab[0, 0, 2], w[0] * bins.centres[3] + w[1] * bins.centres[11], atol=1e-6)
  assert decode_ab(np.zeros((2, 4, 5, q)), bins, size=(16, 20)).shape == (2, 16, 20, 2)


def test_bad_input():
  model = get_model("colorization_narrow")
  with pytest.raises(ValueError, match=r"images: expected L \(B, H, W, 1\) or sRGB"):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 2)))
  with pytest.raises(ValueError, match="images: expected height and width divisible by 8"):
    model.init(jax.random.key(0), jnp.zeros((1, 30, 32, 1)))
  with pytest.raises(ValueError, match="logits: expected"):
    decode_ab(np.zeros((1, 4, 4, 313)))                     # 313 logits, but data.color has 262 bins


@pytest.mark.slow
def test_narrow_model_learns_a_tiny_batch():
  """30 Adam steps: the soft-encoded ab cross-entropy (a distribution target) falls below half its start.

  Colour follows lightness here (bright quadrants reddish, dark ones bluish), so L determines ab."""
  rng = np.random.default_rng(0)
  checker = np.array([[1, 0], [0, 1]])
  labels = np.repeat(np.repeat(np.stack([checker, 1 - checker]), 16, 1), 16, 2)
  rgb = np.where(labels[..., None] == 1, [0.9, 0.5, 0.4], [0.2, 0.25, 0.6])
  rgb = np.clip(rgb + 0.02 * rng.normal(size=rgb.shape), 0, 1)
  lightness, ab = color.colorization_inputs(rgb)
  bins = color.AbBins()
  target = jnp.asarray(bins.soft_encode_dense(ab[:, 2::4, 2::4]))   # the ab at each 1/4 cell
  images = jnp.asarray(rgb, jnp.float32)
  model = get_model("colorization_narrow")
  variables = jax.jit(lambda x: model.init(FAST_KEY(), x))(images)
  params, stats = variables["params"], variables["batch_stats"]
  opt = optax.adam(3e-3)

  def loss_fn(p, stats):
    out, updates = model.apply({"params": p, "batch_stats": stats}, images, train=True, mutable=["batch_stats"])
    return optax.softmax_cross_entropy(out["colorization"], target).mean(), updates["batch_stats"]

  @jax.jit
  def step(p, stats, s):
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p, stats)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), stats, s, loss

  state = opt.init(params)
  losses = []
  for _ in range(30):
    params, stats, state, loss = step(params, stats, state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert min(losses[-5:]) < 0.5 * losses[0], losses


def test_figure_panels_grey_prediction_truth():
  from dense_jax.models.colorization import figure_panels
  rgb = np.zeros((16, 16, 3))
  rgb[:, :8] = [0.8, 0.2, 0.2]
  rgb[:, 8:] = [0.2, 0.3, 0.8]
  lightness, ab = color.colorization_inputs(rgb)
  bins = color.AbBins()
  # A "perfect" prediction: logits peaked at each 1/4 cell's nearest bin.
  logits = 20.0 * np.eye(bins.num_bins)[bins.hard_encode(ab[2::4, 2::4])]
  panels = dict(figure_panels(lightness, logits, ab, bins))
  assert list(panels) == ["grayscale input", "prediction", "truth"]
  assert all(p.shape == (16, 16, 3) and p.dtype == np.uint8 for p in panels.values())
  grey = panels["grayscale input"].astype(int)
  assert np.abs(grey - grey.mean(-1, keepdims=True)).max() <= 2              # no colour
  np.testing.assert_allclose(panels["truth"] / 255.0, rgb, atol=2 / 255)      # the image itself
  # Away from the colour edge the prediction is within a bin (10 ab units) of the truth's colour.
  np.testing.assert_allclose(panels["prediction"][:, :4] / 255.0, rgb[:, :4], atol=0.08)
  with pytest.raises(ValueError, match="ab_true: expected"):
    figure_panels(lightness, logits, ab[:8], bins)
