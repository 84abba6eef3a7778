"""Analytic thing shapes of `dense_shapes`: silhouette, depth, unit normals and corners of one object.

Every object is drawn at pixel centres (x + 0.5, y + 0.5), so a pixel belongs to an object iff its centre
lies inside the silhouette (no anti-aliasing: image, masks and every label agree pixel for pixel).
Camera and units are those of `stuff.py` (orthographic, y down, z towards the camera, `px` scene units
per pixel). An object's nearest point is at depth `obj.depth`; its surface bulges towards the camera:

  disc      a sphere of radius R:            h = sqrt(R^2 - r^2),  n = (u, v, h) / R
  ring      a torus, tube radius t around the circle of radius c = R - t:
            q = r - c, h = sqrt(t^2 - q^2),  n = (q u / r, q v / r, h) / t
  bar       a cylinder of radius w and length L along angle a; with s the signed distance across the
            axis and p the unit vector across it:  h = sqrt(w^2 - s^2),  n = (s p_x, s p_y, h) / w
  square, triangle   flat, facing the camera: h = 0, n = (0, 0, 1)

where (u, v) is the pixel offset from the centre and r = |(u, v)|. Depth is `obj.depth + px * (H - h)`
with H the bulge height (R, t or w), which is exactly the surface whose depth gradient gives n
(n ∝ (dd/dX, dd/dY, 1)). `thickness(obj)` = px * H is how far behind its front the object reaches, so
objects placed at least that far apart in depth never interpenetrate.
"""

from __future__ import annotations

import dataclasses

import numpy as np


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
  inner: float = 0.5        # ring: inner / outer radius
  width: float = 1.5        # bar: cylinder radius, pixels

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


def thickness(obj: SceneObject, px: float) -> float:
  return px * obj.bulge()


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


def rasterize(obj: SceneObject, size: int, px: float):
  """(mask (size, size) bool, depth (size, size) float64 with inf outside, normals (size, size, 3)).

  Only the object's bounding window is evaluated; the rest is filled with inf depth / zero normals.
  """
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
    h = np.zeros_like(u)
    n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), u.shape + (3,))
  else:
    raise ValueError(f"kind: expected one of disc/square/triangle/ring/bar, got {obj.kind!r}")
  # Renormalise: exact up to rounding, and the sqrt clamp at the silhouette.
  n = n / np.linalg.norm(n, axis=-1, keepdims=True)
  mask[y0:y1, x0:x1] = inside
  depth[y0:y1, x0:x1] = np.where(inside, obj.depth + px * (big_h - h), np.inf)
  normals[y0:y1, x0:x1] = np.where(inside[..., None], n, 0.0)
  return mask, depth, normals
