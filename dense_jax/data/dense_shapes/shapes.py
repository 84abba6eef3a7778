"""Analytic thing shapes of `dense_shapes`: silhouette, depth, unit normals and corners of one object.

Every object is drawn at pixel centres (x + 0.5, y + 0.5), so a pixel belongs to an object iff its centre
lies inside the silhouette (no anti-aliasing: image, masks and every label agree pixel for pixel).
Silhouettes are laid out in pixels (centre, radius, angle); the camera is the perspective one of
`camera.py` (focal length f pixels; depth = camera-frame z; label normals x right, y down, z towards
the camera). An object's nearest point is at depth `obj.depth` (Z0).

Curved objects bulge towards the camera with a height field h(u, v) (pixels) over the silhouette, H its
maximum, (u, v) the pixel offset from the centre and r = |(u, v)|:

  disc      a sphere of radius R:            h = sqrt(R^2 - r^2)
  ring      a torus, tube radius t around the circle of radius c = R - t:  q = r - c, h = sqrt(t^2 - q^2)
  bar       a cylinder of radius w and length L along angle a; s the signed distance across the axis:
            h = sqrt(w^2 - s^2)

and their depth map is Z = Z0 + (Z0 / f) (H - h): the profile of a sphere / torus / cylinder whose size
in scene units is its size in pixels times Z0 / f (the width of a pixel at depth Z0). Their normals are
the exact normals of that depth-map surface under the perspective camera (`camera.surface_normals`):
with m = (G_u, G_v, h) / |.|, G = -h grad h (the orthographic normal, (u, v, h) / R for the disc),

  n ∝ (Z0 m_x, Z0 m_y, Z m_z + Z0 (a m_x + b m_y)),   (a, b, 1) the pixel's ray.

Flat objects (square, triangle) are planar polygons whose image is the 2-D polygon, tilted: the plane
through the centre's ray with label-frame unit normal `obj.normal` (tilt up to `MAX_TILT_DEG` from
facing the camera); depth Z = c / (m . r) (exact plane, so depth is not linear in the pixel
coordinates), placed so that its nearest corner is at Z0. `thickness(obj, size)` is how far behind its
front the object reaches, so objects placed at least that far apart in depth never interpenetrate.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dense_jax.data.dense_shapes import camera

MAX_TILT_DEG = 35.0


@dataclasses.dataclass
class SceneObject:
  kind: str                 # one of config.THING_KINDS
  cx: float                 # centre, pixels (continuous; pixel i spans [i, i + 1))
  cy: float
  radius: float             # pixels: sphere/torus outer radius, polygon circumradius, half bar length
  angle: float              # radians
  depth: float              # scene units, of the nearest point
  colour: np.ndarray        # RGB in [0, 1]
  class_id: int = -1
  image_size: int = 64      # pixels (the camera's focal length follows from it)
  inner: float = 0.5        # ring: inner / outer radius
  width: float = 1.5        # bar: cylinder radius, pixels
  normal: tuple = (0.0, 0.0, 1.0)   # square/triangle: unit label-frame normal of their plane

  def extent(self) -> float:
    """Radius (pixels) of a circle around the centre that contains the silhouette."""
    if self.kind == "bar":
      return float(np.hypot(self.radius, self.width))
    return float(self.radius)

  def bulge(self) -> float:
    """Bulge height H in pixels (see module doc)."""
    if self.kind == "disc":
      return self.radius
    if self.kind == "ring":
      return self.radius * (1 - self.inner) / 2
    if self.kind == "bar":
      return self.width
    return 0.0


def _plane_factors(obj: SceneObject, a, b) -> np.ndarray:
  """Depth of a flat object's plane along rays (a, b, 1), per unit depth at its centre's ray."""
  m = camera.to_label_frame(obj.normal)      # the camera-frame normal (m . r < 0: it faces the camera)
  ac, bc = _centre_ray(obj)
  return (m[0] * ac + m[1] * bc + m[2]) / (m[0] * a + m[1] * b + m[2])


def _centre_ray(obj: SceneObject) -> tuple[float, float]:
  size = obj.image_size
  f = camera.focal_length(size)
  return (obj.cx - size / 2.0) / f, (obj.cy - size / 2.0) / f


def _flat_depth_range(obj: SceneObject) -> tuple[float, float]:
  """(min, max) of `_plane_factors` over the polygon (at its corners: 1 / (m . r) is monotone along lines)."""
  f = camera.focal_length(obj.image_size)
  pts = corners(obj)
  k = _plane_factors(obj, (pts[:, 0] - obj.image_size / 2.0) / f, (pts[:, 1] - obj.image_size / 2.0) / f)
  return float(k.min()), float(k.max())


def thickness(obj: SceneObject) -> float:
  """Depth extent (scene units) of the object behind its nearest point `obj.depth`."""
  if obj.kind in ("square", "triangle"):
    lo, hi = _flat_depth_range(obj)
    return obj.depth * (hi / lo - 1.0)
  return obj.depth / camera.focal_length(obj.image_size) * obj.bulge()


def corners(obj: SceneObject) -> np.ndarray:
  """Polygon corners (k, 2) as (x, y) in pixels, in keypoint slot order (see config), k = 0 if none."""
  if obj.kind == "square":
    phis = obj.angle + np.pi / 4 + np.arange(4) * np.pi / 2
  elif obj.kind == "triangle":
    phis = obj.angle + np.arange(3) * 2 * np.pi / 3
  else:
    return np.zeros((0, 2))
  pts = np.stack([obj.cx + obj.radius * np.cos(phis), obj.cy + obj.radius * np.sin(phis)], axis=1)
  if obj.kind == "square":
    # Slots by direction from the centre: sorted by atan2 in [-pi, pi) gives up-left, up-right,
    # down-right, down-left, because the four corners are 90 degrees apart.
    order = np.argsort(np.arctan2(pts[:, 1] - obj.cy, pts[:, 0] - obj.cx))
    return pts[order]
  apex = int(np.argmin(pts[:, 1]))
  rest = [i for i in range(3) if i != apex]
  rest.sort(key=lambda i: pts[i, 0])
  return pts[[apex] + rest]


def _inside_polygon(pts: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
  """Centres inside a convex polygon (any winding): on the same side of every edge."""
  signs = []
  k = len(pts)
  for i in range(k):
    (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % k]
    signs.append((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0))
  signs = np.stack(signs)
  return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def rasterize(obj: SceneObject, size: int):
  """(mask (size, size) bool, depth (size, size) float64 with inf outside, normals (size, size, 3)).

  Only the object's bounding window is evaluated; the rest is filled with inf depth / zero normals.
  """
  if size != obj.image_size:
    raise ValueError(f"size: expected the object's image_size {obj.image_size}, got {size}")
  f = camera.focal_length(size)
  mask = np.zeros((size, size), bool)
  depth = np.full((size, size), np.inf)
  normals = np.zeros((size, size, 3))
  e = obj.extent() + 1
  y0, y1 = max(0, int(np.floor(obj.cy - e))), min(size, int(np.ceil(obj.cy + e)) + 1)
  x0, x1 = max(0, int(np.floor(obj.cx - e))), min(size, int(np.ceil(obj.cx + e)) + 1)
  if y0 >= y1 or x0 >= x1:
    return mask, depth, normals
  yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
  u, v = xx - obj.cx, yy - obj.cy
  r2 = u * u + v * v
  big_h = obj.bulge()
  if obj.kind == "disc":
    inside = r2 < obj.radius ** 2
    h = np.sqrt(np.maximum(obj.radius ** 2 - r2, 0.0))
    n = np.stack([u, v, h], -1) / obj.radius
  elif obj.kind == "ring":
    t = big_h
    c = obj.radius - t
    r = np.sqrt(r2)
    q = r - c
    inside = np.abs(q) < t
    h = np.sqrt(np.maximum(t * t - q * q, 0.0))
    rs = np.maximum(r, 1e-9)
    n = np.stack([q * u / rs, q * v / rs, h], -1) / t
  elif obj.kind == "bar":
    ax, ay = np.cos(obj.angle), np.sin(obj.angle)
    along = u * ax + v * ay
    across = -u * ay + v * ax          # signed distance along p = (-sin a, cos a)
    w = obj.width
    inside = (np.abs(along) < obj.radius) & (np.abs(across) < w)
    h = np.sqrt(np.maximum(w * w - across * across, 0.0))
    n = np.stack([across * -ay, across * ax, h], -1) / w
  elif obj.kind in ("square", "triangle"):
    inside = _inside_polygon(corners(obj), xx, yy)
  else:
    raise ValueError(f"kind: expected one of disc/square/triangle/ring/bar, got {obj.kind!r}")
  a, b = (xx - size / 2.0) / f, (yy - size / 2.0) / f
  if obj.kind in ("square", "triangle"):
    lo, _ = _flat_depth_range(obj)
    z = obj.depth / lo * _plane_factors(obj, a, b)
    n = np.broadcast_to(np.asarray(obj.normal, np.float64), u.shape + (3,))
  else:
    # The orthographic normal m (exact up to rounding, and the sqrt clamp at the silhouette) turned into
    # the perspective normal of the depth map z (module doc).
    m = n / np.linalg.norm(n, axis=-1, keepdims=True)
    z0 = obj.depth
    z = z0 + z0 / f * (big_h - h)
    n = np.stack([z0 * m[..., 0], z0 * m[..., 1], z * m[..., 2] + z0 * (a * m[..., 0] + b * m[..., 1])], -1)
  n = n / np.linalg.norm(n, axis=-1, keepdims=True)
  mask[y0:y1, x0:x1] = inside
  depth[y0:y1, x0:x1] = np.where(inside, z, np.inf)
  normals[y0:y1, x0:x1] = np.where(inside[..., None], n, 0.0)
  return mask, depth, normals
