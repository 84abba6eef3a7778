"""Paired augmentations in NumPy that keep every label of an example consistent (no TF, no JAX).

An example is a dict with any of the standard keys of `dense_jax.data.sources`; each function returns a
new dict and leaves keys it does not know (and `segment_classes`, `segment_is_thing`, the per-example
scalar `image_id`) unchanged.
Coordinates are continuous pixel coordinates in which pixel i spans [i, i + 1) (boxes half-open,
keypoints at pixel centres i + 0.5); a geometric map x -> a x + b is applied to boxes and keypoints
exactly as to the pixel grid.

How each key is transformed:

  key          resize / scale        crop & pad (pad value)          horizontal flip
  image        bilinear (half-pixel)  0                                mirrored
  semantic     nearest                `ignore_label` (255)             mirrored
  depth        nearest, values kept   0 (= invalid)                    mirrored
  normals      nearest, values kept   0 (= invalid)                    mirrored, x component negated
  masks        nearest                0                                mirrored
  panoptic     nearest                0 (= void)                       mirrored
  boxes        scaled                 shifted, clipped to the window   x0, x1 -> W - x1, W - x0
  keypoints    scaled                 shifted; outside -> (0, 0, 0)    x -> W - x, slots permuted
  intrinsics   f, c scaled            c shifted                        c_x -> W - c_x
  classes, num_instances: instances with no pixel left (or, without masks, an empty box) are dropped
  and the rest moved up (order kept), so rows [0, num_instances) stay the valid ones.

Depth and normals values do not change under scaling or cropping: resizing the image changes the
camera's focal length (and cropping its principal point), not where the camera is, so depth (the
camera-frame z) and the surface orientations stay; `intrinsics` (K in the continuous pixel coordinates
above, so the map x -> s x + t gives f -> s f, c -> s c + t exactly) carries the change. A horizontal
flip mirrors the scene (x -> -x in the camera frame): normals' x is negated, K's c_x becomes W - c_x
(f stays positive). The flip permutation of keypoint slots is per class
(`DatasetInfo.keypoint_flip_perm`): row c applies to instances of class c, a single row to all.
Photometric jitter touches only the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SPATIAL_NEAREST = ("semantic", "depth", "normals", "panoptic")


# ----------------------------------------------------------------------------------------- resampling

def _nearest_index(out_len: int, in_len: int, start: int = 0, stop: int | None = None) -> np.ndarray:
  """Source index of output pixels [start, stop) for nearest resampling with half-pixel centres."""
  j = np.arange(start, out_len if stop is None else stop)
  return np.minimum(np.floor((j + 0.5) * in_len / out_len).astype(np.int64), in_len - 1)


def _linear_weights(out_len: int, in_len: int, start: int = 0, stop: int | None = None):
  """(i0, i1, frac) of output pixels [start, stop) for linear resampling with half-pixel centres."""
  j = np.arange(start, out_len if stop is None else stop)
  src = np.clip((j + 0.5) * in_len / out_len - 0.5, 0.0, in_len - 1)
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, in_len - 1)
  return i0, i1, (src - i0).astype(np.float32)


def _bilinear_window(image, size, rows, cols):
  """Rows [rows) x cols [cols) of `image` (H, W, C) bilinearly resized to `size`, float32."""
  y0, y1, fy = _linear_weights(size[0], image.shape[0], *rows)
  x0, x1, fx = _linear_weights(size[1], image.shape[1], *cols)
  hgt, wid, ch = image.shape
  # Work on (H, W*C) rows: both gathers then move whole contiguous rows / flat column indices.
  img = image.astype(np.float32, copy=False).reshape(hgt, wid * ch)
  top, bottom = img[y0], img[y1]
  r = top + (bottom - top) * fy[:, None]
  c = np.arange(ch)
  left, right = r[:, (x0[:, None] * ch + c).ravel()], r[:, (x1[:, None] * ch + c).ravel()]
  out = left + (right - left) * np.repeat(fx, ch)[None, :]
  return out.reshape(len(y0), len(x0), ch)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of (H, W, C) with half-pixel centres (PyTorch align_corners=False, no antialias)."""
  return _bilinear_window(image, size, (0, size[0]), (0, size[1]))


def resize_nearest(x: np.ndarray, size: tuple[int, int], axes: tuple[int, int] = (0, 1)) -> np.ndarray:
  """Nearest resize of the two spatial `axes` of `x` to `size`."""
  iy = _nearest_index(size[0], x.shape[axes[0]])
  ix = _nearest_index(size[1], x.shape[axes[1]])
  return np.take(np.take(x, iy, axis=axes[0]), ix, axis=axes[1])


def example_size(ex: dict) -> tuple[int, int]:
  """`(H, W)` of an example: the size of its first spatial key (image, semantic, depth, panoptic, masks)."""
  for key in ("image", "semantic", "depth", "panoptic"):
    if key in ex:
      return tuple(np.shape(ex[key])[:2])
  if "masks" in ex:
    return tuple(np.shape(ex["masks"])[1:3])
  raise ValueError(f"example: expected one of image/semantic/depth/panoptic/masks, got keys {sorted(ex)}")


# ----------------------------------------------------------------------------------------- instances

def drop_empty_instances(ex: dict) -> dict:
  """Removes instances with no pixel in `masks` (or an empty box when there are no masks); compacts rows."""
  if "num_instances" not in ex:
    return ex
  n = int(ex["num_instances"])
  if "masks" in ex:
    alive = ex["masks"][:n].any(axis=(1, 2))   # (reshape(n, -1) fails for an image with no instance)
  elif "boxes" in ex:
    b = ex["boxes"][:n]
    alive = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
  else:
    return ex
  if alive.all():
    return ex
  out = dict(ex)
  keep = np.nonzero(alive)[0]
  for key in ("masks", "boxes", "classes", "keypoints"):
    if key in ex:
      arr = np.zeros_like(ex[key])
      arr[:len(keep)] = ex[key][keep]
      out[key] = arr
  out["num_instances"] = np.asarray(len(keep), np.int32)
  return out


def _affine_instances(ex: dict, sy: float, sx: float, ty: float, tx: float, hw: tuple[int, int]) -> dict:
  """Applies y -> sy y + ty, x -> sx x + tx to boxes/keypoints and clips them to [0, H) x [0, W)."""
  out = dict(ex)
  h, w = hw
  n = int(ex.get("num_instances", 0))
  if "boxes" in ex:
    b = ex["boxes"].astype(np.float32).copy()
    b[:n, [0, 2]] = np.clip(b[:n, [0, 2]] * sy + ty, 0, h)
    b[:n, [1, 3]] = np.clip(b[:n, [1, 3]] * sx + tx, 0, w)
    out["boxes"] = b
  if "keypoints" in ex:
    k = ex["keypoints"].astype(np.float32).copy()
    k[..., 0] = k[..., 0] * sx + tx
    k[..., 1] = k[..., 1] * sy + ty
    inside = (k[..., 0] >= 0) & (k[..., 0] < w) & (k[..., 1] >= 0) & (k[..., 1] < h) & (k[..., 2] > 0)
    k[~inside] = 0.0
    out["keypoints"] = k
  return out


# ----------------------------------------------------------------------------------------- geometry

_PAD = {"image": 0, "depth": 0, "normals": 0, "panoptic": 0, "masks": 0}


def resize_crop(ex: dict, scaled_size: tuple[int, int], y0: int, x0: int, size: tuple[int, int],
                ignore_label: int = 255) -> dict:
  """Resizes to `scaled_size`, then takes the window [y0, y0 + h) x [x0, x0 + w) (parts outside the
  resized image padded, see the module table), computing only the pixels inside the window.

  Equal to `crop(resize(ex, scaled_size), y0, x0, size)`; `resize` and `crop` are its special cases.
  """
  h0, w0 = example_size(ex)
  hs, ws = int(scaled_size[0]), int(scaled_size[1])
  h, w = int(size[0]), int(size[1])
  if min(hs, ws, h, w) < 1:
    raise ValueError(f"size: expected positive sizes, got scaled_size={scaled_size}, size={size}")
  y0, x0 = int(y0), int(x0)
  # Overlap of the window with the resized image, in resized and in window coordinates.
  sy0, sy1 = max(y0, 0), min(y0 + h, hs)
  sx0, sx1 = max(x0, 0), min(x0 + w, ws)
  dy, dx = slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0)
  inside = sy1 > sy0 and sx1 > sx0
  same = (hs, ws) == (h0, w0)
  if inside and not same:
    iy, ix = _nearest_index(hs, h0, sy0, sy1), _nearest_index(ws, w0, sx0, sx1)

  def window(arr, fill, axes=(0, 1)):
    arr = np.asarray(arr)
    shape = list(arr.shape)
    shape[axes[0]], shape[axes[1]] = h, w
    res = np.full(shape, fill, dtype=arr.dtype)
    if inside:
      dst = [slice(None)] * arr.ndim
      dst[axes[0]], dst[axes[1]] = dy, dx
      if same:
        src = [slice(None)] * arr.ndim
        src[axes[0]], src[axes[1]] = slice(sy0, sy1), slice(sx0, sx1)
        block = arr[tuple(src)]
      else:
        block = np.take(np.take(arr, iy, axis=axes[0]), ix, axis=axes[1])
      res[tuple(dst)] = block
    return res

  out = dict(ex)
  if "image" in ex:
    if same:
      out["image"] = window(ex["image"], 0)
    else:   # bilinear (float32) inside, 0 outside
      img = np.zeros((h, w) + ex["image"].shape[2:], np.float32)
      if inside:
        img[dy, dx] = _bilinear_window(ex["image"], (hs, ws), (sy0, sy1), (sx0, sx1))
      out["image"] = img
  for key in SPATIAL_NEAREST:
    if key in ex:
      out[key] = window(ex[key], ignore_label if key == "semantic" else _PAD[key])
  if "masks" in ex:
    out["masks"] = window(ex["masks"], 0, axes=(1, 2))
  if "intrinsics" in ex:
    out["intrinsics"] = affine_intrinsics(ex["intrinsics"], hs / h0, ws / w0, -y0, -x0)
  out = _affine_instances(out, hs / h0, ws / w0, -y0, -x0, (h, w))
  return drop_empty_instances(out)


def affine_intrinsics(k, sy: float, sx: float, ty: float, tx: float) -> np.ndarray:
  """K after the pixel map y -> sy y + ty, x -> sx x + tx (rows 0 and 1 of K scaled, c shifted)."""
  k = np.asarray(k)
  out = k.astype(np.float64).copy()
  out[0] = sx * out[0] + tx * out[2]
  out[1] = sy * out[1] + ty * out[2]
  return out.astype(k.dtype)


def resize(ex: dict, size: tuple[int, int]) -> dict:
  """Resizes every spatial key to `size` = (h, w) (see the module table)."""
  if tuple(size) == example_size(ex):
    return dict(ex)
  return resize_crop(ex, size, 0, 0, size)


def scale(ex: dict, factor: float) -> dict:
  """Resizes by `factor` (output size rounded to whole pixels; boxes use the exact size ratio)."""
  return resize(ex, scaled_size(example_size(ex), factor))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:  # pylint: disable=redefined-outer-name
  """`(round(s·H), round(s·W))`, at least 1 (Python's round: halves to even): the size `scale` resizes an
  example to, and the size `dense_jax.inference.predict_multiscale` resizes an image to."""
  return max(1, int(round(size[0] * scale))), max(1, int(round(size[1] * scale)))


def crop(ex: dict, y0: int, x0: int, size: tuple[int, int], ignore_label: int = 255) -> dict:
  """The window [y0, y0 + h) x [x0, x0 + w); parts outside the image are padded (see module table)."""
  return resize_crop(ex, example_size(ex), y0, x0, size, ignore_label)


def _flip_perm_rows(perm) -> np.ndarray | None:
  if perm is None or len(perm) == 0:
    return None
  perm = np.asarray(perm, dtype=np.int64)
  if perm.ndim == 1:
    perm = perm[None]
  return perm


def hflip(ex: dict, keypoint_flip_perm=None) -> dict:
  """Mirrors left-right: normals' x negated, boxes and keypoints mirrored, keypoint slots permuted,
  intrinsics' c_x -> W - c_x.

  keypoint_flip_perm: (K,) or (C, K) int; row c is the permutation for instances of class c (new slot k
    takes old slot perm[k]); None or () keeps the slots.
  """
  _, w = example_size(ex)
  out = dict(ex)
  for key in ("image", "semantic", "depth", "panoptic"):
    if key in ex:
      out[key] = ex[key][:, ::-1].copy()
  if "normals" in ex:
    nrm = ex["normals"][:, ::-1].copy()
    nrm[..., 0] = -nrm[..., 0]
    out["normals"] = nrm
  if "masks" in ex:
    out["masks"] = ex["masks"][:, :, ::-1].copy()
  if "intrinsics" in ex:   # the mirrored scene seen by a camera with c_x -> W - c_x (see module doc)
    k = np.asarray(ex["intrinsics"]).copy()
    k[0, 2] = w * k[2, 2] - k[0, 2]
    out["intrinsics"] = k
  n = int(ex.get("num_instances", 0))
  if "boxes" in ex:
    b = ex["boxes"].copy()
    b[:n, 1], b[:n, 3] = w - ex["boxes"][:n, 3], w - ex["boxes"][:n, 1]
    out["boxes"] = b
  if "keypoints" in ex:
    k = ex["keypoints"].copy()
    present = k[..., 2] > 0
    k[..., 0] = np.where(present, w - k[..., 0], 0.0)
    perm = _flip_perm_rows(keypoint_flip_perm)
    if perm is not None:
      classes = ex.get("classes", np.zeros((k.shape[0],), np.int32))
      for i in range(n):
        row = perm[0] if perm.shape[0] == 1 else perm[int(classes[i])]
        k[i] = k[i][row]
    out["keypoints"] = k
  return out


# ----------------------------------------------------------------------------------------- photometric

def photometric(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.15,
                contrast: float = 0.2, saturation: float = 0.2) -> np.ndarray:
  """Random brightness (additive), contrast and saturation (around the mean / grey) of a float image
  in [0, 1], applied in a random order; returns float32 clipped to [0, 1]."""
  img = image.astype(np.float32)
  ops = rng.permutation(3)
  b = rng.uniform(-brightness, brightness)
  c = rng.uniform(1 - contrast, 1 + contrast)
  s = rng.uniform(1 - saturation, 1 + saturation)
  for op in ops:
    if op == 0:
      img = img + b
    elif op == 1:
      img = (img - img.mean()) * c + img.mean()
    else:
      grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
      img = (img - grey[..., None]) * s + grey[..., None]
  return np.clip(img, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------- recipes

@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """The training augmentation: photometric jitter, random scale, random crop (with padding), flip."""
  scale_range: tuple[float, float] = (0.75, 1.5)
  flip_prob: float = 0.5
  photometric: bool = True
  brightness: float = 0.15
  contrast: float = 0.2
  saturation: float = 0.2

  def __post_init__(self):
    lo, hi = self.scale_range
    if not 0 < lo <= hi:
      raise ValueError(f"scale_range: expected 0 < low <= high, got {self.scale_range}")
    if not 0 <= self.flip_prob <= 1:
      raise ValueError(f"flip_prob: expected a probability in [0, 1], got {self.flip_prob}")
    for name in ("brightness", "contrast", "saturation"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"{name}: expected a jitter amplitude in [0, 1), got {getattr(self, name)}")


def to_float_image(ex: dict) -> dict:
  """`image` uint8 [0, 255] -> float32 [0, 1] (other keys untouched)."""
  out = dict(ex)
  if "image" in ex and ex["image"].dtype == np.uint8:
    out["image"] = ex["image"].astype(np.float32) / np.float32(255.0)
  return out


def random_augment(ex: dict, rng: np.random.Generator, size: tuple[int, int],
                   config: AugmentConfig = AugmentConfig(), *, keypoint_flip_perm=None,
                   ignore_label: int = 255) -> dict:
  """Training transform: float image, photometric jitter, scale by U(scale_range), a random `size`
  window (padded where the scaled image is smaller), horizontal flip with probability `flip_prob`."""
  ex = to_float_image(ex)
  if config.photometric and "image" in ex:
    ex["image"] = photometric(ex["image"], rng, config.brightness, config.contrast, config.saturation)
  lo, hi = config.scale_range
  h, w = scaled_size(example_size(ex), rng.uniform(lo, hi)) if (lo, hi) != (1.0, 1.0) else example_size(ex)
  th, tw = size
  y0 = int(rng.integers(min(0, h - th), max(0, h - th) + 1))
  x0 = int(rng.integers(min(0, w - tw), max(0, w - tw) + 1))
  ex = resize_crop(ex, (h, w), y0, x0, (th, tw), ignore_label)   # scale + crop in one pass
  if rng.uniform() < config.flip_prob:
    ex = hflip(ex, keypoint_flip_perm)
  return ex


def eval_resized_size(hw: tuple[int, int], size: tuple[int, int] | None) -> tuple[int, int]:
  """`(new_h, new_w)` of an `hw = (h, w)` image in `eval_transform` to `size = (H, W)`: scaled by
  `f = min(H / h, W / w)` (it fits inside `size`, aspect ratio kept), `(round(h f), round(w f))`
  clamped to [1, H] x [1, W]; `hw` itself when `size` is None or equal to it. The resize maps
  continuous pixel coordinates by `y -> y * new_h / h`, `x -> x * new_w / w` (the one rule that
  `dense_jax.metrics.coco` inverts to write results in the original image's pixels)."""
  h, w = (int(v) for v in hw)
  if h < 1 or w < 1:
    raise ValueError(f"hw: expected a positive (h, w), got {tuple(hw)!r}")
  if size is None:
    return h, w
  th, tw = (int(v) for v in size)
  if (h, w) == (th, tw):
    return h, w
  f = min(th / h, tw / w)
  return max(1, min(th, int(round(h * f)))), max(1, min(tw, int(round(w * f))))


def eval_transform(ex: dict, size: tuple[int, int] | None, ignore_label: int = 255) -> dict:
  """Evaluation transform: float image; if `size` differs, resize so the image fits inside `size`
  keeping its aspect ratio (`eval_resized_size`), then pad bottom/right (padding as in `crop`)."""
  ex = to_float_image(ex)
  if size is None:
    return ex
  h, w = example_size(ex)
  th, tw = size
  if (h, w) == (th, tw):
    return ex
  ex = resize(ex, eval_resized_size((h, w), (th, tw)))
  return crop(ex, 0, 0, (th, tw), ignore_label)
