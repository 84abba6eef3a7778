"""Colour spaces for colorization: sRGB <-> CIE L*a*b* (D65) and the quantized ab bins of Zhang et al. 2016.

sRGB -> Lab (the formulas of IEC 61966-2-1 and CIE 15, with the matrix and white point skimage uses):
  1. linearise each channel c in [0, 1]:  c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
  2. XYZ = M @ rgb_linear with M = SRGB_TO_XYZ, then divide by the D65 white (0.95047, 1, 1.08883)
  3. f(t) = t ** (1/3) if t > (6/29) ** 3 else t / (3 (6/29) ** 2) + 4/29
     L = 116 f(Y) - 16,  a = 500 (f(X) - f(Y)),  b = 200 (f(Y) - f(Z))
Lab -> sRGB inverts each step (gamma 1/2.4 above 0.0031308) and clips to [0, 1].
L is in [0, 100]; a, b are about [-86, 98] and [-108, 94] over the sRGB gamut.

Quantized ab (Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016): the ab plane is cut into
cells of grid size 10 centred on multiples of 10; a bin is kept if it is *in gamut*, i.e. some sRGB colour
has its ab in that cell. We compute that set by sampling sRGB (the faces of the RGB cube at 257 levels
per axis, plus a 33^3 interior grid; the ab projection of the cube is that of its surface) and keeping
every cell hit: this gives Q = 262 bins (`gamut_bins()`), not the paper's 313. The paper's set (their
`pts_in_hull.npy`) is larger than what exact sRGB sampling yields, with either rounding or floor cells,
or with a convex hull; where their 313 bins are needed (e.g. to load their weights) pass those centres
to `AbBins(centres)` instead. Encoding a colour follows the paper: soft-encoding over the 5 nearest bin
centres with Gaussian weights, sigma = 5; decoding is the annealed mean with temperature T = 0.38.
Class rebalancing (`ab_prior`, `dataset_ab_prior`, `rebalancing_weights`): the training split's bin
distribution, smoothed (sigma = 5), mixed with uniform (lambda = 0.5), inverted, expectation 1.
"""

from __future__ import annotations

import functools

import numpy as np

SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0
GRID_SIZE = 10.0
_WINDOW = 3          # grid search half-width (cells) for nearest centres
_CHUNK = 16384


def _check_last_dim(x: np.ndarray, name: str, n: int = 3) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim < 1 or x.shape[-1] != n:
    raise ValueError(f"{name}: expected shape (..., {n}), got {x.shape}")
  return x


def rgb_to_lab(rgb) -> np.ndarray:
  """sRGB in [0, 1] (..., 3) -> Lab (..., 3), computed in float64 and returned as float64.

  uint8 input is divided by 255 first.
  """
  rgb = _check_last_dim(rgb, "rgb")
  rgb = rgb / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
  lin = np.where(rgb <= 0.04045, rgb / 12.92, ((np.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4)
  xyz = lin @ SRGB_TO_XYZ.T / D65_WHITE
  f = np.where(xyz > _DELTA ** 3, np.cbrt(xyz), xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
  return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                   200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab, clip: bool = True) -> np.ndarray:
  """Lab (..., 3) -> sRGB (..., 3) float64, clipped to [0, 1] unless `clip=False`."""
  lab = _check_last_dim(lab, "lab").astype(np.float64)
  fy = (lab[..., 0] + 16.0) / 116.0
  f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
  xyz = np.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0)) * D65_WHITE
  lin = xyz @ XYZ_TO_SRGB.T
  rgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.maximum(lin, 0.0031308) ** (1 / 2.4) - 0.055)
  return np.clip(rgb, 0.0, 1.0) if clip else rgb


@functools.cache
def _gamut_bins_cached() -> bytes:
  levels = np.linspace(0.0, 1.0, 257)
  a, b = np.meshgrid(levels, levels, indexing="ij")
  faces = []
  for axis in range(3):
    for value in (0.0, 1.0):
      cols = [a.ravel(), b.ravel()]
      cols.insert(axis, np.full(a.size, value))
      faces.append(np.stack(cols, axis=-1))
  inner = np.linspace(0.0, 1.0, 33)
  faces.append(np.stack(np.meshgrid(inner, inner, inner, indexing="ij"), -1).reshape(-1, 3))
  ab = rgb_to_lab(np.concatenate(faces))[:, 1:]
  cells = np.unique(np.round(ab / GRID_SIZE).astype(np.int64), axis=0)
  return (cells * int(GRID_SIZE)).astype(np.float64).tobytes()


def gamut_bins() -> np.ndarray:
  """(Q, 2) float64 ab centres of the in-gamut bins (see module doc; Q = 262), sorted by (a, b)."""
  return np.frombuffer(_gamut_bins_cached(), np.float64).reshape(-1, 2).copy()


class AbBins:
  """Quantized ab space: hard and soft encoding of ab values, and decoding of bin distributions.

  Args:
    centres: (Q, 2) ab bin centres; default `gamut_bins()`.
    num_neighbours, sigma: soft-encoding with this many nearest centres, Gaussian width (ab units).
  """

  def __init__(self, centres=None, num_neighbours: int = 5, sigma: float = 5.0):
    centres = gamut_bins() if centres is None else np.asarray(centres, np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2:
      raise ValueError(f"centres: expected shape (Q, 2), got {centres.shape}")
    if not 1 <= num_neighbours <= len(centres):
      raise ValueError(f"num_neighbours: expected 1..{len(centres)}, got {num_neighbours}")
    if sigma <= 0:
      raise ValueError(f"sigma: expected > 0, got {sigma}")
    self.centres = centres
    self.num_neighbours = num_neighbours
    self.sigma = float(sigma)
    self._grid = self._grid_table(centres)

  @staticmethod
  def _grid_table(centres: np.ndarray):
    """(table, offset): table[i, j] = bin of centre (10 (i - off), 10 (j - off)), -1 if none; None
    when the centres are not all on the grid (then searches are brute force)."""
    cells = centres / GRID_SIZE
    if not np.allclose(cells, np.round(cells)):
      return None
    cells = np.round(cells).astype(np.int64)
    off = -cells.min() + _WINDOW + 1
    size = cells.max() + off + _WINDOW + 2
    table = np.full((size, size), -1, np.int64)
    table[cells[:, 0] + off, cells[:, 1] + off] = np.arange(len(cells))
    return table, off

  @property
  def num_bins(self) -> int:
    return len(self.centres)

  def _sq_dist(self, ab: np.ndarray) -> np.ndarray:
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, (P, Q) in float64.
    return (np.sum(ab ** 2, -1, keepdims=True) - 2.0 * ab @ self.centres.T
            + np.sum(self.centres ** 2, -1)[None])

  def hard_encode(self, ab) -> np.ndarray:
    """Index of the nearest bin centre, int32 (...)."""
    ab = _check_last_dim(ab, "ab", 2).astype(np.float64)
    flat = ab.reshape(-1, 2)
    parts = [self._nearest(flat[i:i + _CHUNK], 1)[0][:, 0] for i in range(0, len(flat), _CHUNK)]
    out = np.concatenate(parts) if parts else np.zeros((0,), np.int64)
    return out.astype(np.int32).reshape(ab.shape[:-1])

  def _nearest(self, flat: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (P, k), squared distances (P, k)) of the k nearest centres, nearest first.

    Centres on the 10-grid are searched in the (2W+1)^2 cells around the point's own cell; any centre
    outside that window is at least (W + 0.5) * 10 away, so where the k-th found one is nearer the
    answer is exact, and the few other points (gamut tips) fall back to the full search.
    """
    def brute(x):
      d2 = self._sq_dist(x)
      idx = np.argpartition(d2, k - 1, axis=-1)[:, :k]
      return idx, np.take_along_axis(d2, idx, -1)

    if self._grid is None:
      idx, d2 = brute(flat)
    else:
      table, off = self._grid
      r = np.round(flat / GRID_SIZE).astype(np.int64)
      span = np.arange(-_WINDOW, _WINDOW + 1)
      ia = np.clip(r[:, 0:1, None] + span[None, :, None] + off, 0, table.shape[0] - 1)
      ib = np.clip(r[:, 1:2, None] + span[None, None, :] + off, 0, table.shape[1] - 1)
      cand = table[ia, ib].reshape(len(flat), -1)
      diff = self.centres[np.maximum(cand, 0)] - flat[:, None, :]
      d2 = np.where(cand >= 0, np.sum(diff ** 2, -1), np.inf)
      sel = np.argpartition(d2, k - 1, axis=-1)[:, :k]
      idx, d2 = np.take_along_axis(cand, sel, -1), np.take_along_axis(d2, sel, -1)
      bad = ~(np.max(d2, -1) <= ((_WINDOW + 0.5) * GRID_SIZE) ** 2)
      if bad.any():
        idx[bad], d2[bad] = brute(flat[bad])
    order = np.argsort(d2, axis=-1, kind="stable")
    return np.take_along_axis(idx, order, -1), np.take_along_axis(d2, order, -1)

  def soft_encode(self, ab) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32 (..., k), weights float32 (..., k)): the k nearest centres, nearest first, with
    weights exp(-d^2 / (2 sigma^2)) normalised to sum to 1."""
    ab = _check_last_dim(ab, "ab", 2).astype(np.float64)
    flat = ab.reshape(-1, 2)
    k = self.num_neighbours
    idx_parts, w_parts = [], []
    for i in range(0, len(flat), _CHUNK):
      idx, d2 = self._nearest(flat[i:i + _CHUNK], k)
      d2 = np.maximum(d2, 0.0)
      w = np.exp(-(d2 - d2[:, :1]) / (2 * self.sigma ** 2))   # shifted by the nearest: no underflow
      idx_parts.append(idx)
      w_parts.append(w / w.sum(-1, keepdims=True))
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros((0, k), np.int64)
    w = np.concatenate(w_parts) if w_parts else np.zeros((0, k))
    return (idx.astype(np.int32).reshape(ab.shape[:-1] + (k,)),
            w.astype(np.float32).reshape(ab.shape[:-1] + (k,)))

  def soft_encode_dense(self, ab) -> np.ndarray:
    """The soft encoding as a distribution over all bins, float32 (..., Q)."""
    idx, w = self.soft_encode(ab)
    dense = np.zeros(idx.shape[:-1] + (self.num_bins,), np.float32)
    np.put_along_axis(dense, idx.astype(np.int64), w, axis=-1)
    return dense

  def decode(self, probs, temperature: float = 0.38) -> np.ndarray:
    """ab (..., 2) from bin probabilities (..., Q): the annealed mean, E[c] under p^(1/T) renormalised.

    T = 1 is the mean, T -> 0 the mode; the paper uses T = 0.38.
    """
    probs = _check_last_dim(probs, "probs", self.num_bins).astype(np.float64)
    if temperature <= 0:
      raise ValueError(f"temperature: expected > 0, got {temperature}")
    logp = np.log(np.maximum(probs, 1e-30)) / temperature
    logp -= logp.max(-1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(-1, keepdims=True)
    return p @ self.centres

  def decode_mode(self, probs) -> np.ndarray:
    """ab (..., 2) of the most probable bin."""
    probs = _check_last_dim(probs, "probs", self.num_bins)
    return self.centres[np.argmax(probs, -1)]


def colorization_inputs(images) -> tuple[np.ndarray, np.ndarray]:
  """(L, ab) float32 of sRGB `images` (..., H, W, 3) in [0, 1] (or uint8): L (..., H, W, 1) in
  [0, 100] is the network input, ab (..., H, W, 2) the target (encode it with `AbBins`)."""
  lab = rgb_to_lab(images).astype(np.float32)
  return lab[..., :1], lab[..., 1:]


# ----------------------------------------------------------------------------------------- rebalancing

def ab_prior(ab, bins: AbBins, valid=None) -> np.ndarray:
  """Empirical distribution (Q,) float64 of the nearest bin of the ab values `ab (..., 2)` (where `valid`)."""
  ab = _check_last_dim(ab, "ab", 2)
  idx = bins.hard_encode(ab)
  if valid is not None:
    valid = np.asarray(valid, bool)
    if valid.shape != idx.shape:
      raise ValueError(f"valid: expected shape {idx.shape} (ab's without the last axis), got {valid.shape}")
    idx = idx[valid]
  counts = np.bincount(idx.ravel(), minlength=bins.num_bins).astype(np.float64)
  if counts.sum() == 0:
    raise ValueError("ab: expected at least one valid pixel to estimate the prior, got none")
  return counts / counts.sum()


def dataset_ab_prior(source, bins: AbBins, max_examples: int | None = None) -> np.ndarray:
  """`ab_prior` of the `image`s of the first `max_examples` examples of a source (the training split)."""
  n = len(source) if max_examples is None else min(len(source), int(max_examples))
  counts = np.zeros(bins.num_bins)
  for i in range(n):
    _, ab = colorization_inputs(source[i]["image"])
    counts += np.bincount(bins.hard_encode(ab).ravel(), minlength=bins.num_bins)
  if counts.sum() == 0:
    raise ValueError(f"source: expected at least one example, got {n}")
  return counts / counts.sum()


def rebalancing_weights(prior, bins: AbBins, lam: float = 0.5, sigma: float = 5.0) -> np.ndarray:
  """Class-rebalancing weights (Q,) float32 of Zhang et al. (2016), eq. 3-4:

    p~ = the prior smoothed by a Gaussian of width `sigma` over the bin centres (mass-preserving),
    w  ∝ ((1 - lam) p~ + lam / Q)^-1,  normalised so that E_{p~}[w] = Σ_q p~_q w_q = 1.

  lam = 0.5 and sigma = 5 are the paper's: rare (saturated) colours weigh more, common (greyish) less.
  """
  prior = np.asarray(prior, np.float64)
  q = bins.num_bins
  if prior.shape != (q,) or not (prior >= 0).all() or not prior.sum() > 0:
    raise ValueError(f"prior: expected a non-negative ({q},) distribution, got shape {prior.shape}")
  if not 0 <= lam <= 1:
    raise ValueError(f"lam: expected a mixing weight in [0, 1], got {lam}")
  if not sigma > 0:
    raise ValueError(f"sigma: expected > 0, got {sigma}")
  d2 = np.sum((bins.centres[:, None, :] - bins.centres[None, :, :]) ** 2, -1)
  kernel = np.exp(-d2 / (2.0 * sigma ** 2))
  kernel /= kernel.sum(0, keepdims=True)          # column r spreads bin r's mass, summing to 1
  smooth = kernel @ (prior / prior.sum())
  w = 1.0 / ((1.0 - lam) * smooth + lam / q)
  w /= np.sum(smooth * w)
  return w.astype(np.float32)
