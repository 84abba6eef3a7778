"""Stuff of a `dense_shapes` scene: the region layout, procedural textures, and the planes' depth/normals.

Geometry (shared with `shapes.py`): orthographic camera, pixel (x, y) with x right, y down; the image is
`SCENE_WIDTH` scene units wide, so a pixel is `SCENE_WIDTH / image_size` units. Depth is the distance
along the viewing axis in scene units; normals are unit (x right, y down, z towards the camera). For a
surface of depth d(X, Y) (X, Y in scene units) the normal is (dd/dX, dd/dY, 1) normalised.

Stuff planes lie behind every object (objects stay nearer than `OBJECT_MAX_DEPTH`):
  sky         depth 30, facing the camera
  background  depth 14, facing the camera
  wall        depth 10, facing the camera
  grass       a ground plane, depth 12 at the top row falling linearly to 9 at the bottom row, so its
              normal is (0, -1.5, 1)/|.| = (0, -0.832, 0.555): up and towards the camera.
"""

from __future__ import annotations

import colorsys

import numpy as np

SCENE_WIDTH = 2.0
OBJECT_MAX_DEPTH = 8.5
PLANE_DEPTH = {"sky": 30.0, "background": 14.0, "wall": 10.0}
GRASS_TOP, GRASS_BOTTOM = 12.0, 9.0


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
  """Value noise in [-1, 1]: a (cells+1)^2 random grid bilinearly upsampled to (h, w)."""
  grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1))
  ys = (np.arange(h) + 0.5) / h * cells
  xs = (np.arange(w) + 0.5) / w * cells
  y0 = np.minimum(ys.astype(int), cells - 1)
  x0 = np.minimum(xs.astype(int), cells - 1)
  fy = (ys - y0)[:, None]
  fx = (xs - x0)[None, :]
  g00 = grid[y0][:, x0]
  g01 = grid[y0][:, x0 + 1]
  g10 = grid[y0 + 1][:, x0]
  g11 = grid[y0 + 1][:, x0 + 1]
  return (g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64)


def texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
  """An RGB float texture in [0, 1] of shape (size, size, 3) for stuff `kind`.

  Each kind has a characteristic colour family and pattern, so stuff is recognisable from local
  appearance (and colorization has something to learn): background grey with soft blotches, sky blue
  with a vertical gradient and clouds, grass green with fine vertical streaks, wall red-brown bricks.
  """
  n = size
  if kind == "background":
    base = _hsv(rng.uniform(), rng.uniform(0.0, 0.15), rng.uniform(0.4, 0.7))
    shade = 1.0 + 0.12 * smooth_noise(rng, n, n, 5)
    img = base * shade[..., None]
  elif kind == "sky":
    base = _hsv(rng.uniform(0.55, 0.63), rng.uniform(0.35, 0.65), rng.uniform(0.75, 0.95))
    grad = 0.85 + 0.25 * (np.arange(n) / n)[:, None, None]
    img = base * grad * np.ones((1, n, 1))
    cloud = np.clip(smooth_noise(rng, n, n, 4) * 2.0 - 0.6, 0.0, 1.0)[..., None]
    img = img * (1 - cloud) + 0.97 * cloud
  elif kind == "grass":
    base = _hsv(rng.uniform(0.22, 0.36), rng.uniform(0.5, 0.85), rng.uniform(0.35, 0.6))
    # Short vertical streaks: one random value per column and 4-row band.
    streaks = np.repeat(rng.uniform(-1, 1, size=(n // 4 + 1, n)), 4, axis=0)[:n, :, None]
    img = base * (1.0 + 0.22 * streaks)
  elif kind == "wall":
    base = _hsv(rng.uniform(-0.03, 0.07), rng.uniform(0.5, 0.8), rng.uniform(0.45, 0.7))
    bh = max(3, round(n / 10.0))                      # brick height in pixels
    bw = 2 * bh
    mortar = max(1, round(n / 64.0))
    yy, xx = np.mgrid[0:n, 0:n]
    row = yy // bh
    xs = xx + (row % 2) * (bw // 2) + int(rng.integers(0, bw))
    col = xs // bw
    jitter = rng.uniform(0.85, 1.15, size=(n // bh + 2, n // bw + 3))
    img = base * jitter[row, col][..., None]
    is_mortar = ((yy % bh) < mortar) | ((xs % bw) < mortar)
    img = np.where(is_mortar[..., None], np.array([0.78, 0.76, 0.72]), img)
  else:
    raise ValueError(f"stuff kind: expected one of background/sky/grass/wall, got {kind!r}")
  return np.clip(img, 0.0, 1.0)


def plane_geometry(kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Depth (size, size) and unit normals (size, size, 3) of stuff `kind`'s plane (see module doc)."""
  n = size
  if kind == "grass":
    yc = (np.arange(n) + 0.5) / n
    depth = np.broadcast_to((GRASS_TOP + (GRASS_BOTTOM - GRASS_TOP) * yc)[:, None], (n, n))
    # dd/dY in scene units: (bottom - top) depth over the image height of SCENE_WIDTH units.
    ddy = (GRASS_BOTTOM - GRASS_TOP) / SCENE_WIDTH
    normal = np.array([0.0, ddy, 1.0]) / np.hypot(ddy, 1.0)
  else:
    depth = np.full((n, n), PLANE_DEPTH[kind])
    normal = np.array([0.0, 0.0, 1.0])
  return depth.astype(np.float64), np.broadcast_to(normal, (n, n, 3)).astype(np.float64)


def _half_plane(size: int, angle: float, offset: float) -> np.ndarray:
  """Pixels whose centre lies on the positive side of a line through the image centre + offset."""
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  c = size / 2.0
  return (np.cos(angle) * (xx - c) + np.sin(angle) * (yy - c)) > offset * size


def standard_layout(rng: np.random.Generator, size: int) -> np.ndarray:
  """Stuff kind index map (size, size) into STUFF_KINDS order [background, sky, grass, wall].

  A slightly tilted horizon splits an upper region (sky 60%, wall 25%, background 15%) from a lower
  one (grass 60%, background 40%); over a sky, a wall block rises from the horizon 35% of the time.
  """
  order = ("background", "sky", "grass", "wall")
  idx = {k: i for i, k in enumerate(order)}
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  horizon = rng.uniform(0.25, 0.65) * size + np.tan(rng.uniform(-0.25, 0.25)) * (xx - size / 2)
  top = order[rng.choice([1, 3, 0], p=[0.6, 0.25, 0.15])]
  bottom = order[rng.choice([2, 0], p=[0.6, 0.4])]
  layout = np.where(yy < horizon, idx[top], idx[bottom])
  if top == "sky" and rng.uniform() < 0.35:
    x0, x1 = np.sort(rng.uniform(0, size, size=2))
    if x1 - x0 > 0.15 * size:
      ytop = rng.uniform(0.05, 0.2) * size
      block = (xx >= x0) & (xx < x1) & (yy >= ytop) & (yy < horizon)
      layout = np.where(block, idx["wall"], layout)
  return layout.astype(np.int32)


def context_layout(rng: np.random.Generator, size: int, kinds: tuple[str, ...]) -> tuple[np.ndarray, tuple]:
  """Two regions split by a line of random angle and offset, of two different kinds from `kinds`.

  Returns (index map into `kinds`, (angle, offset)) so objects can be kept inside one region.
  """
  angle = rng.uniform(0, 2 * np.pi)
  offset = rng.uniform(-0.15, 0.15)
  a, b = rng.choice(len(kinds), size=2, replace=False)
  side = _half_plane(size, angle, offset)
  return np.where(side, a, b).astype(np.int32), (angle, offset)


def signed_distance_to_line(size: int, angle: float, offset: float, x: float, y: float) -> float:
  """Signed pixel distance of point (x, y) from the context split line (positive side = region a)."""
  c = size / 2.0
  return np.cos(angle) * (x - c) + np.sin(angle) * (y - c) - offset * size
