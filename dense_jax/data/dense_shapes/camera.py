"""The pinhole camera of `dense_shapes`: intrinsics, pixel rays, and normals of a surface given by its depth map.

Frames. The 3-D camera frame is OpenCV's: x right, y down, z forward (into the scene); depth is the z
coordinate of the surface point a pixel sees (the NYU convention), not the length of the ray. Normals
are stored in the frame of the data contract, x right, y down, z *towards* the camera, i.e. the camera
frame with z negated: `label = (n_x, n_y, -n_z)` for a camera-frame normal n that faces the camera.

Intrinsics (pixels). K = [[f, 0, S/2], [0, f, S/2], [0, 0, 1]] with f = S / (2 tan 30°) (a 60° field of
view) maps a camera-frame point P to continuous pixel coordinates (u, v) = (f P_x / P_z + S/2, ...) in
the convention of `dense_jax.data.augment`: pixel (row i, column j) spans [j, j + 1) x [i, i + 1) and its
centre is (j + 0.5, i + 0.5). (OpenCV's convention puts centres at integers: c_opencv = c - 0.5.)
So the ray of pixel (i, j) is r = K^-1 (j + 0.5, i + 0.5, 1) = (a, b, 1), and the point it sees at depth
Z is P = Z r.

A surface given by its depth map Z(u, v) has the points P(u, v) = Z(u, v) (a(u), b(v), 1), a = (u - c) / f;
its tangents are P_u = Z_u r + (Z / f) e_x and P_v = Z_v r + (Z / f) e_y, and their cross product gives
the normal facing the camera, in the label frame,

  n ∝ (Z_u, Z_v, Z / f + a Z_u + b Z_v)                                 (Z_u = dZ/du per pixel)

which always satisfies n · (-a, -b, 1) = Z / f > 0 (it faces the camera). `surface_normals` evaluates
it; the generator uses it for the curved objects, whose depth maps are analytic.
"""

from __future__ import annotations

import numpy as np

FIELD_OF_VIEW_DEG = 60.0


def focal_length(size: int) -> float:
  """f in pixels for an S x S image with a 60° horizontal (and vertical) field of view."""
  return size / (2.0 * np.tan(np.radians(FIELD_OF_VIEW_DEG) / 2.0))


def intrinsics(size: int) -> np.ndarray:
  """K (3, 3) float64 in pixels (see the module doc for the pixel-centre convention)."""
  f = focal_length(size)
  return np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])


def pixel_rays(size: int) -> tuple[np.ndarray, np.ndarray]:
  """(a, b), each (S, S) float64: the ray of pixel (i, j) is (a[i, j], b[i, j], 1) in the camera frame."""
  f = focal_length(size)
  c = (np.arange(size) + 0.5 - size / 2.0) / f
  return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(c[:, None], (size, size))


def surface_normals(z, z_u, z_v, a, b, f) -> np.ndarray:
  """Unit label-frame normals (..., 3) of the surface with depth z and per-pixel slopes z_u, z_v."""
  n = np.stack([z_u, z_v, z / f + a * z_u + b * z_v], axis=-1)
  return n / np.linalg.norm(n, axis=-1, keepdims=True)


def to_label_frame(n_camera) -> np.ndarray:
  """Camera-frame (z forward) normals -> label frame (z towards the camera)."""
  n = np.array(n_camera, dtype=np.float64, copy=True)
  n[..., 2] = -n[..., 2]
  return n


def plane_depth(m, c: float, a, b) -> np.ndarray:
  """Depth of the plane {P : m . P = c} (camera frame) along the rays (a, b, 1): Z = c / (m . r)."""
  return c / (m[0] * a + m[1] * b + m[2])


def plane_normal(m, c: float) -> np.ndarray:
  """Label-frame unit normal of the plane {P : m . P = c} on the camera's side (the camera is at 0)."""
  m = np.asarray(m, np.float64) / np.linalg.norm(m)
  return to_label_frame(-np.sign(c) * m)
