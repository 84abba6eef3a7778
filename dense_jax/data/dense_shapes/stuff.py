"""Stuff of a `dense_shapes` scene: the region layout, procedural textures, and the stuff's 3-D geometry.

Geometry (camera and frames in `camera.py`: perspective, 60° field of view, depth = camera-frame z):

Standard scenes are a ground plane and a backdrop seen by a camera pitched down and rolled. The layout's
horizon line (row `H0` at the centre column, slope tan(phi)) is the image of the line where the
ground meets the backdrop; below it every pixel sees the ground, above it the backdrop:

  backdrop  a vertical plane (perpendicular to the ground) at horizontal distance D in front of the
            camera; D = BACKDROP_DISTANCE[kind of the upper region] (sky 60, background 40, wall 30;
            a wall block over a sky is part of the sky's backdrop). Its depth varies over the image
            because the camera is pitched.
  ground    the plane `CAMERA_ELEVATION_DEG` below the ground-backdrop line as seen from the camera
            (camera height h = D tan 30°): depth grows from about D/2 at the bottom of the image to D
            at the horizon line (the ground's own vanishing line lies above it, hidden by the backdrop).

The camera: roll phi (the horizon's slope); pitch beta chosen so that the ground-backdrop line,
30° below the horizontal, projects onto the layout's horizon: beta = 30° - atan(d / f) with d the
signed distance of the horizon line below the principal point. Every stuff pixel is thus at least
`STUFF_MIN_DEPTH` away (the nearest over the layout's whole parameter range is the bottom corner of a
wall scene's ground, 14.5), behind every object (objects start nearer than `OBJECT_MAX_DEPTH` and reach
less than 2 behind their front, see `scene.py` and `shapes.thickness`).

Context scenes: both regions lie on one plane at depth CONTEXT_DISTANCE at the image centre, tilted
by up to CONTEXT_MAX_TILT_DEG in a random direction.
"""

from __future__ import annotations

import colorsys

import numpy as np

from dense_jax.data.dense_shapes import camera

OBJECT_MAX_DEPTH = 8.5       # no object starts farther than this (scene.py)
STUFF_MIN_DEPTH = 12.0       # ... and no stuff pixel is nearer than this (checked in tests)
BACKDROP_DISTANCE = {"sky": 60.0, "background": 40.0, "wall": 30.0}
CAMERA_ELEVATION_DEG = 30.0  # the ground-backdrop line seen this far below the horizontal
CONTEXT_DISTANCE = 30.0
CONTEXT_MAX_TILT_DEG = 30.0


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


def _camera_axes(pitch: float, roll: float) -> np.ndarray:
  """Rows: the camera's x, y, z axes in the world frame (X right, Y down, Z forward horizontal)."""
  x0 = np.array([1.0, 0.0, 0.0])
  y0 = np.array([0.0, np.cos(pitch), -np.sin(pitch)])     # pitched down by `pitch`
  z0 = np.array([0.0, np.sin(pitch), np.cos(pitch)])
  # Rolled so that a world-horizontal line (X) projects with image slope +tan(roll).
  return np.stack([np.cos(roll) * x0 - np.sin(roll) * y0, np.sin(roll) * x0 + np.cos(roll) * y0, z0])


def standard_camera(size: int, horizon_row: float, roll: float, top_kind: str) -> dict:
  """The camera and planes of a standard scene (see module doc): pitch, roll, height h, distance D and
  the two planes as (m, c) with m a unit camera-frame vector, the plane being {P : m . P = c}."""
  f = camera.focal_length(size)
  dist = BACKDROP_DISTANCE[top_kind]
  elev = np.radians(CAMERA_ELEVATION_DEG)
  below = (horizon_row - size / 2.0) * np.cos(roll)         # horizon's distance below the principal point
  pitch = elev - np.arctan(below / f)
  axes = _camera_axes(pitch, roll)
  # Camera-frame coordinates of the world's down (Y) and forward (Z) directions.
  down, forward = axes @ np.array([0.0, 1.0, 0.0]), axes @ np.array([0.0, 0.0, 1.0])
  return {"pitch": pitch, "roll": roll, "height": dist * np.tan(elev), "distance": dist,
          "ground": (down, dist * np.tan(elev)), "backdrop": (forward, dist)}


def plane_maps(plane: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Depth (S, S) and label-frame normals (S, S, 3) of plane (m, c) at every pixel."""
  m, c = plane
  a, b = camera.pixel_rays(size)
  depth = camera.plane_depth(m, c, a, b)
  return depth, np.broadcast_to(camera.plane_normal(m, c), (size, size, 3)).copy()


def standard_geometry(size: int, horizon: tuple, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
  """(depth, normals, camera dict) of the stuff of a standard scene; `upper` marks backdrop pixels."""
  cam = standard_camera(size, *horizon)
  gd, gn = plane_maps(cam["ground"], size)
  bd, bn = plane_maps(cam["backdrop"], size)
  # Lower pixels whose centre lies (by a rounding hair) above the ground-backdrop line see the ground at
  # depth > D, or on the far side of its vanishing line (negative): clamp to the backdrop's depth there.
  gd = np.where((gd > 0) & (gd <= bd), gd, bd)
  return np.where(upper, bd, gd), np.where(upper[..., None], bn, gn), cam


def context_geometry(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, dict]:
  """(depth, normals, plane dict) of a context scene: one plane, depth CONTEXT_DISTANCE at the image
  centre, label-frame normal tilted by U(0, CONTEXT_MAX_TILT_DEG) in a uniform direction."""
  tilt = np.radians(rng.uniform(0.0, CONTEXT_MAX_TILT_DEG))
  azimuth = rng.uniform(0.0, 2 * np.pi)
  n_label = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt)])
  m = camera.to_label_frame(-n_label)                    # camera-frame m with the camera on the -m side
  c = CONTEXT_DISTANCE * m[2]                            # passes through (0, 0, CONTEXT_DISTANCE)
  depth, normals = plane_maps((m, c), size)
  return depth, normals, {"plane": (m, c)}


def _half_plane(size: int, angle: float, offset: float) -> np.ndarray:
  """Pixels whose centre lies on the positive side of a line through the image centre + offset."""
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  c = size / 2.0
  return (np.cos(angle) * (xx - c) + np.sin(angle) * (yy - c)) > offset * size


def standard_layout(rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple, np.ndarray]:
  """(layout, horizon, upper): the stuff kind index map (size, size) into STUFF_KINDS order [background,
  sky, grass, wall], horizon = (row at the centre column, roll angle, upper kind), and the boolean map of
  the upper region (the backdrop in 3-D).

  A slightly tilted horizon splits an upper region (sky 60%, wall 25%, background 15%) from a lower
  one (grass 60%, background 40%); over a sky, a wall block rises from the horizon 35% of the time.
  """
  order = ("background", "sky", "grass", "wall")
  idx = {k: i for i, k in enumerate(order)}
  yy, xx = np.mgrid[0:size, 0:size] + 0.5
  row, roll = rng.uniform(0.25, 0.65) * size, rng.uniform(-0.25, 0.25)
  horizon = row + np.tan(roll) * (xx - size / 2)
  top = order[rng.choice([1, 3, 0], p=[0.6, 0.25, 0.15])]
  bottom = order[rng.choice([2, 0], p=[0.6, 0.4])]
  layout = np.where(yy < horizon, idx[top], idx[bottom])
  if top == "sky" and rng.uniform() < 0.35:
    x0, x1 = np.sort(rng.uniform(0, size, size=2))
    if x1 - x0 > 0.15 * size:
      ytop = rng.uniform(0.05, 0.2) * size
      block = (xx >= x0) & (xx < x1) & (yy >= ytop) & (yy < horizon)
      layout = np.where(block, idx["wall"], layout)
  return layout.astype(np.int32), (row, roll, top), yy < horizon


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
