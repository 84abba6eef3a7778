"""sRGB <-> Lab against hand-computed values, the quantized ab bins (encode / decode) and the class-
rebalancing weights of the colorization loss."""

import numpy as np
import pytest

from dense_jax.data import color


def _lab_by_hand(r, g, b):
  """The CIE formulas written out for one colour, in plain Python floats (an independent reference)."""
  def lin(c):
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
  rl, gl, bl = lin(r), lin(g), lin(b)
  x = (0.412453 * rl + 0.357580 * gl + 0.180423 * bl) / 0.95047
  y = (0.212671 * rl + 0.715160 * gl + 0.072169 * bl) / 1.0
  z = (0.019334 * rl + 0.119193 * gl + 0.950227 * bl) / 1.08883

  def f(t):
    return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29
  return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


# Published values (skimage.color.rgb2lab, D65/2°) rounded to 3 decimals.
KNOWN = [((1, 0, 0), (53.241, 80.092, 67.203)), ((0, 1, 0), (87.735, -86.183, 83.180)),
         ((0, 0, 1), (32.297, 79.186, -107.857)), ((1, 1, 1), (100.0, 0.0, 0.0)),
         ((0, 0, 0), (0.0, 0.0, 0.0)), ((1, 1, 0), (97.139, -21.554, 94.478))]


@pytest.mark.parametrize("rgb,lab", KNOWN)
def test_known_values(rgb, lab):
  np.testing.assert_allclose(color.rgb_to_lab(np.array(rgb, float)), lab, atol=0.01)


def test_matches_the_hand_written_formula_in_float64():
  rng = np.random.default_rng(0)
  rgb = np.concatenate([rng.uniform(size=(200, 3)), rng.uniform(0, 0.04, size=(20, 3))])  # both branches
  ours = color.rgb_to_lab(rgb)
  assert ours.dtype == np.float64
  ref = np.array([_lab_by_hand(*c) for c in rgb])
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)


def test_uint8_and_shapes():
  img = np.random.default_rng(1).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
  np.testing.assert_allclose(color.rgb_to_lab(img), color.rgb_to_lab(img / 255.0))
  assert color.rgb_to_lab(img).shape == (4, 5, 3)
  with pytest.raises(ValueError, match="rgb"):
    color.rgb_to_lab(np.zeros((4, 5)))


def test_round_trip():
  rgb = np.random.default_rng(2).uniform(size=(1000, 3))
  np.testing.assert_allclose(color.lab_to_rgb(color.rgb_to_lab(rgb)), rgb, atol=1e-12)
  # Out-of-gamut Lab is clipped into [0, 1].
  out = color.lab_to_rgb(np.array([50.0, 120.0, -120.0]))
  assert out.min() >= 0 and out.max() <= 1


def test_gamut_bins():
  bins = color.gamut_bins()
  assert bins.shape == (262, 2)
  assert np.all(bins % 10 == 0) and len(np.unique(bins, axis=0)) == len(bins)
  # Every sRGB colour's ab lies in the cell of some bin (cells are +-5 around a centre).
  ab = color.rgb_to_lab(np.random.default_rng(3).uniform(size=(20000, 3)))[:, 1:]
  cells = {tuple(c) for c in (np.round(ab / 10) * 10)}
  assert cells <= {tuple(b) for b in bins}
  assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
  assert bins[:, 1].min() == -110 and bins[:, 1].max() == 90


def test_soft_encoding_follows_the_paper():
  bins = color.AbBins()
  ab = color.rgb_to_lab(np.random.default_rng(4).uniform(size=(500, 3)))[:, 1:]
  idx, w = bins.soft_encode(ab)
  assert idx.shape == (500, 5) and w.dtype == np.float32
  np.testing.assert_allclose(w.sum(-1), 1, atol=1e-6)
  # Brute force: the 5 nearest centres, Gaussian weights with sigma 5.
  d2 = ((ab[:, None, :] - bins.centres[None]) ** 2).sum(-1)
  nearest = np.argsort(d2, -1)[:, :5]
  np.testing.assert_array_equal(np.sort(idx, -1), np.sort(nearest, -1))
  ref = np.exp(-np.take_along_axis(d2, idx.astype(int), -1) / (2 * 25.0))
  np.testing.assert_allclose(w, ref / ref.sum(-1, keepdims=True), rtol=1e-5)
  assert np.all(np.diff(np.take_along_axis(d2, idx.astype(int), -1), axis=-1) >= 0)   # nearest first
  np.testing.assert_array_equal(bins.hard_encode(ab), nearest[:, 0])


def test_grid_search_equals_brute_force_far_out_of_gamut():
  fast = color.AbBins()
  brute = color.AbBins(centres=fast.centres + 1e-3)   # off the grid -> brute-force path
  ab = np.random.default_rng(5).uniform(-140, 140, size=(3000, 2))
  np.testing.assert_array_equal(fast.hard_encode(ab), brute.hard_encode(ab))


def test_dense_encoding_and_decoding():
  bins = color.AbBins()
  ab = color.rgb_to_lab(np.random.default_rng(6).uniform(size=(8, 8, 3)))[..., 1:]
  dense = bins.soft_encode_dense(ab)
  assert dense.shape == (8, 8, bins.num_bins)
  np.testing.assert_allclose(dense.sum(-1), 1, atol=1e-6)
  # The mean (T = 1) of the soft encoding lands within a bin of the true colour; the mode on the
  # nearest centre; smaller T moves the annealed mean towards the mode.
  assert np.abs(bins.decode(dense, temperature=1.0) - ab).max() < 5.0
  np.testing.assert_array_equal(bins.decode_mode(dense), bins.centres[bins.hard_encode(ab)])
  gaps = [np.abs(bins.decode(dense, t) - bins.decode_mode(dense)).mean() for t in (1.0, 0.38, 0.1)]
  assert gaps[0] > gaps[1] > gaps[2]
  peaked = np.full((3, bins.num_bins), 0.5 / (bins.num_bins - 1))
  peaked[np.arange(3), [0, 100, 200]] = 0.5
  np.testing.assert_allclose(bins.decode(peaked, 0.05), bins.centres[[0, 100, 200]], atol=1e-6)
  with pytest.raises(ValueError, match="temperature"):
    bins.decode(dense, 0.0)
  with pytest.raises(ValueError, match="probs"):
    bins.decode(dense[..., :10])


def test_custom_centres_like_the_papers_313():
  grid = np.stack(np.meshgrid(np.arange(-110, 111, 10), np.arange(-110, 111, 10), indexing="ij"), -1)
  centres = grid.reshape(-1, 2)[:313].astype(float)
  bins = color.AbBins(centres=centres)
  assert bins.num_bins == 313
  with pytest.raises(ValueError, match="centres"):
    color.AbBins(centres=np.zeros((5, 3)))
  with pytest.raises(ValueError, match="num_neighbours"):
    color.AbBins(num_neighbours=0)


def test_colorization_inputs_split_lab():
  batch = np.random.default_rng(7).uniform(size=(2, 6, 5, 3)).astype(np.float32)
  lum, ab = color.colorization_inputs(batch)
  assert lum.shape == (2, 6, 5, 1) and ab.shape == (2, 6, 5, 2) and lum.dtype == ab.dtype == np.float32
  np.testing.assert_allclose(color.lab_to_rgb(np.concatenate([lum, ab], -1)), batch, atol=1e-4)


def test_rebalancing_weights_follow_the_paper():
  bins = color.AbBins()
  rng = np.random.default_rng(0)
  ab = np.concatenate([rng.normal(0, 5, (5000, 2)), rng.uniform(-80, 80, (500, 2))])   # mostly grey
  prior = color.ab_prior(ab, bins)
  assert prior.shape == (bins.num_bins,) and prior.sum() == pytest.approx(1.0)
  w = color.rebalancing_weights(prior, bins)
  # Independent float64 formula: Gaussian smoothing of each bin's mass, mix with uniform, invert.
  d2 = ((bins.centres[:, None] - bins.centres[None]) ** 2).sum(-1)
  k = np.exp(-d2 / 50.0)
  smooth = (k / k.sum(0)) @ prior
  ref = 1 / (0.5 * smooth + 0.5 / bins.num_bins)
  ref /= (smooth * ref).sum()
  np.testing.assert_allclose(w, ref, rtol=1e-5)
  assert np.sum(smooth * w) == pytest.approx(1.0, rel=1e-5)
  grey = bins.hard_encode(np.zeros(2))
  assert w[grey] < 1.0 < w.max()                           # common colours down, rare ones up
  assert w.max() / w.min() <= 2 * bins.num_bins            # bounded by λ: at most 1/λ · Q / ... ratio
  with pytest.raises(ValueError, match="prior: expected"):
    color.rebalancing_weights(np.ones(3), bins)


def test_colorization_encode_decode_round_trip():
  bins = color.AbBins()
  _, ab = color.colorization_inputs(np.random.default_rng(0).uniform(0, 1, (400, 3)))   # in-gamut colours
  ab = ab.astype(np.float64)
  dense = bins.soft_encode_dense(ab)
  # The annealed mean (T = 0.38) of the soft encoding returns the colour up to the quantisation: within
  # half a cell's diagonal (5 sqrt 2) of it, and on average much closer.
  err = np.linalg.norm(bins.decode(dense) - ab, axis=-1)
  assert err.max() < 5 * np.sqrt(2) and err.mean() < 2.5
  # The mode (hard decoding) is the nearest centre; bin centres themselves come back exactly.
  np.testing.assert_array_equal(bins.decode_mode(dense), bins.centres[bins.hard_encode(ab)])
  np.testing.assert_array_equal(bins.decode_mode(bins.soft_encode_dense(bins.centres)), bins.centres)
