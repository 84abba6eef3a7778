"""The `dense_shapes` scene generator: pure NumPy, deterministic from a seed, every label of sources.py.

`generate_example(seed_or_rng, config)` draws one scene and returns the standard example dict:

  image uint8 (S, S, 3); semantic int32 (S, S); depth float32 (S, S); normals float32 (S, S, 3);
  intrinsics float32 (3, 3);
  masks uint8 (N, S, S); boxes float32 (N, 4) (y0, x0, y1, x1) half-open; classes int32 (N,);
  num_instances int32 (); keypoints float32 (N, 4, 3) (x, y, visibility);
  panoptic int32 (S, S); segment_classes int32 (M,); segment_is_thing uint8 (M,)

with S = config.image_size, N = config.max_instances, M = config.num_segments.

How a scene is made:
1. Stuff: a region layout (`stuff.standard_layout` / `stuff.context_layout`), one texture per region
   kind; the geometry of `stuff.py`: a ground plane and a backdrop seen by a pitched, rolled perspective
   camera (`camera.py`, 60° field of view; the layout's horizon is where the two planes meet), or one
   tilted plane in the context configs; all of it behind every object.
2. Objects: n ~ U{min_objects..max_objects}; nearest first, each placed a random gap behind the back of
   the previous one (so objects never interpenetrate and painter's order equals the z-buffer); in the
   standard configs the apparent radius scales as 3 / depth (nearer is bigger, a depth cue). Curved
   objects bulge towards the camera, flat ones are tilted planes (`shapes.py`).
3. Visibility by z-buffer: each pixel shows the nearest surface. Objects with fewer than
   `config.min_visible_pixels` visible pixels are removed and the scene re-rendered (so every instance
   is really visible); more than `max_instances` visible objects -> `config.on_overflow` ('error' raises,
   'drop' removes the farthest and re-renders, counted in `stats['dropped_overflow']`).
4. Labels from the same z-buffer, hence consistent by construction. Depth is the camera-frame z (the
   NYU convention), normals are those of the same surfaces (x right, y down, z towards the camera), and
   `intrinsics` is the camera's K (see `camera.py` for its pixel-centre convention):
   - instances are the visible objects, nearest first; masks are their visible pixels (a partition of
     the thing pixels of `semantic`), boxes the tight half-open boxes of the masks;
   - shading: colour * (0.35 + 0.65 max(0, n . l)), light l from the upper left front, so spheres,
     tori and cylinders look round and normals are learnable;
   - panoptic: id 1 + c for stuff class c (stuff ids are 0..num_stuff-1; every stuff region is one
     segment), id 1 + num_stuff + i for instance i; `segment_classes[id]` its class,
     `segment_is_thing[id]` 1 for instances; ids absent from the map are padding (class 0, not thing). Id 0 (void)
     never occurs in a generated scene.
   - keypoints: each polygon corner is snapped to the centre of the object's nearest silhouette pixel
     (so it lies on the object), visibility 2 if the object is what that pixel shows, 1 if a nearer object
     hides it, 0 (and x = y = 0) if the corner is outside the image or the class has no such slot.
"""

from __future__ import annotations

import colorsys
import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from dense_jax.data.dense_shapes import camera, shapes, stuff
from dense_jax.data.dense_shapes.config import NUM_KEYPOINTS, THING_KINDS, SceneConfig

LIGHT = np.array([-0.4, -0.5, 0.77]) / np.linalg.norm([-0.4, -0.5, 0.77])
_CONTEXT_KINDS = ("disc", "square")


# Bump when a change to the generator changes the examples a config produces: prepared files carry
# `fingerprint(config)` and are refused when it no longer matches (see source.prepare).
GENERATOR_VERSION = 2   # 2: perspective camera, depth and normals of one geometry, intrinsics


def fingerprint(config: SceneConfig) -> str:
  """A string that identifies the examples `config` generates (config fields + generator version)."""
  import json  # pylint: disable=g-import-not-at-top
  return json.dumps({"generator_version": GENERATOR_VERSION, **dataclasses.asdict(config)}, sort_keys=True)


def example_seed(config: SceneConfig, split: str, index: int) -> np.random.SeedSequence:
  """The seed of example `index` of `split`: independent of order, process and batch."""
  return np.random.SeedSequence([config.seed, zlib.crc32(split.encode()), int(index)])


def _as_rng(seed_or_rng) -> np.random.Generator:
  if isinstance(seed_or_rng, np.random.Generator):
    return seed_or_rng
  if isinstance(seed_or_rng, (int, np.integer, np.random.SeedSequence)) or (
      isinstance(seed_or_rng, Sequence) and not isinstance(seed_or_rng, (str, bytes))):
    return np.random.default_rng(seed_or_rng)
  raise ValueError(f"seed_or_rng: expected an int, a sequence of ints, a SeedSequence or a "
                   f"np.random.Generator, got {type(seed_or_rng).__name__}")


@dataclasses.dataclass
class Scene:
  """A rendered scene with its internals (amodal masks and per-object depth), for tests and figures."""
  image: np.ndarray              # float64 (S, S, 3) in [0, 1] before noise and quantisation
  objects: list                  # SceneObject, nearest first (the instance order)
  amodal: np.ndarray             # bool (n, S, S): full silhouettes, occluded parts included
  object_depth: np.ndarray       # float64 (n, S, S): each object's own surface depth, inf outside
  visible: np.ndarray            # int (S, S): index into objects, -1 = stuff
  stuff_class: np.ndarray        # int32 (S, S): stuff class of every pixel (also under objects)
  stuff_depth: np.ndarray        # float64 (S, S)
  backdrop: np.ndarray           # bool (S, S): stuff pixels on the backdrop (standard), else the ground
  depth: np.ndarray              # float64 (S, S) of the visible surface
  normals: np.ndarray            # float64 (S, S, 3)
  intrinsics: np.ndarray         # float64 (3, 3), see camera.py
  camera: dict                   # the stuff geometry (stuff.standard_camera / context_geometry)
  dropped_overflow: int = 0


def _sample_objects(rng, config: SceneConfig, ctx) -> list:
  size = config.image_size
  n = int(rng.integers(config.min_objects, config.max_objects + 1))
  objects = []
  front = rng.uniform(1.6, 2.6)
  for _ in range(n):
    if front > stuff.OBJECT_MAX_DEPTH:
      break
    kinds = _CONTEXT_KINDS if config.context else THING_KINDS
    kind = kinds[int(rng.integers(len(kinds)))]
    lo, hi = config.radius_frac
    radius = size * rng.uniform(lo, hi)
    if not config.context:
      radius *= 3.0 / front
    radius = max(radius, 2.5 * size / 64)
    hue, sat, val = rng.uniform(), rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0)
    colour = np.array(colorsys.hsv_to_rgb(hue, sat, val))
    obj = shapes.SceneObject(kind=kind, cx=0.0, cy=0.0, radius=radius, angle=rng.uniform(0, 2 * np.pi),
                             depth=front, colour=colour, inner=rng.uniform(0.45, 0.65),
                             width=float(np.clip(0.22 * radius, 1.2 * size / 64, None)), image_size=size)
    # Flat shapes are tilted planes: normal up to MAX_TILT_DEG from facing the camera, any direction
    # (drawn for every object, so each object consumes the same draws).
    tilt, azimuth = np.radians(rng.uniform(0.0, shapes.MAX_TILT_DEG)), rng.uniform(0.0, 2 * np.pi)
    if kind in ("square", "triangle"):
      obj.normal = (np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt))
    if obj.kind == "bar":
      obj.radius = 1.4 * radius
    if config.context:
      angle, offset = ctx
      margin = obj.extent() + 2.0
      for _ in range(64):
        x, y = rng.uniform(0.1, 0.9, size=2) * size
        if abs(stuff.signed_distance_to_line(size, angle, offset, x, y)) >= margin:
          break
      else:
        continue   # no room in either region for this one: skip it
    else:
      x, y = rng.uniform(0.05, 0.95, size=2) * size
    obj.cx, obj.cy = float(x), float(y)
    objects.append(obj)
    front += shapes.thickness(obj) + rng.uniform(0.05, 0.6)
  return objects


def render_scene(seed_or_rng, config: SceneConfig) -> Scene:
  """Draws and renders one scene (see module doc); `generate_example` turns it into labels."""
  config.validate()
  rng = _as_rng(seed_or_rng)
  size = config.image_size
  table = config.classes
  stuff_kinds = tuple(sorted(table.stuff, key=table.stuff.get))   # in class-id order
  if config.context:
    layout, ctx = stuff.context_layout(rng, size, stuff_kinds)
  else:
    layout, horizon, upper = stuff.standard_layout(rng, size)   # indices in class-id order, too
    ctx = None
  image = np.zeros((size, size, 3))
  stuff_class = np.zeros((size, size), np.int32)
  for k in np.unique(layout):
    kind = stuff_kinds[k]
    region = layout == k
    image[region] = stuff.texture(kind, rng, size)[region]
    stuff_class[region] = table.stuff[kind]

  objects = _sample_objects(rng, config, ctx)
  if config.context:
    stuff_depth, stuff_normals, cam = stuff.context_geometry(rng, size)
    upper = np.zeros((size, size), bool)
  else:
    stuff_depth, stuff_normals, cam = stuff.standard_geometry(size, horizon, upper)
  for obj in objects:
    region_kind = None
    if config.context:
      iy = min(size - 1, max(0, int(obj.cy)))
      ix = min(size - 1, max(0, int(obj.cx)))
      region_kind = stuff_kinds[layout[iy, ix]]
    obj.class_id = table.things[(obj.kind, region_kind)]
  raster = [shapes.rasterize(o, size) for o in objects]
  dropped = 0
  while True:
    obj_depth = np.stack([r[1] for r in raster]) if raster else np.zeros((0, size, size))
    all_depth = np.concatenate([obj_depth, stuff_depth[None]], 0)
    winner = np.argmin(all_depth, axis=0)
    visible = np.where(winner == len(objects), -1, winner)
    counts = np.bincount(visible[visible >= 0].ravel(), minlength=len(objects))
    keep = [i for i in range(len(objects)) if counts[i] >= config.min_visible_pixels]
    if len(keep) < len(objects):
      objects = [objects[i] for i in keep]
      raster = [raster[i] for i in keep]
      continue
    if len(objects) > config.max_instances:
      if config.on_overflow == "error":
        raise ValueError(
            f"scene: {len(objects)} visible objects but max_instances={config.max_instances}; raise "
            f"max_instances, lower max_objects={config.max_objects}, or set on_overflow='drop' to "
            f"remove the farthest objects (counted in stats['dropped_overflow'])")
      extra = len(objects) - config.max_instances
      dropped += extra
      objects, raster = objects[:-extra], raster[:-extra]   # objects are nearest first
      continue
    break

  n_obj = len(objects)
  amodal = np.stack([r[0] for r in raster]) if raster else np.zeros((0, size, size), bool)
  depth = np.min(all_depth, axis=0)
  normals = stuff_normals.copy()
  for i, obj in enumerate(objects):
    vis = visible == i
    n_i = raster[i][2]
    normals[vis] = n_i[vis]
    shade = 0.35 + 0.65 * np.clip(n_i[vis] @ LIGHT, 0.0, None)
    image[vis] = obj.colour[None, :] * shade[:, None]
  return Scene(image=image, objects=objects, amodal=amodal,
               object_depth=obj_depth if n_obj else np.zeros((0, size, size)),
               visible=visible, stuff_class=stuff_class, stuff_depth=stuff_depth, backdrop=upper, depth=depth,
               normals=normals, intrinsics=camera.intrinsics(size), camera=cam, dropped_overflow=dropped)


def _keypoints(scene: Scene, config: SceneConfig) -> np.ndarray:
  size = config.image_size
  kps = np.zeros((config.max_instances, NUM_KEYPOINTS, 3), np.float32)
  for i, obj in enumerate(scene.objects):
    pts = shapes.corners(obj)
    if not len(pts):
      continue
    ys, xs = np.nonzero(scene.amodal[i])
    centres = np.stack([xs + 0.5, ys + 0.5], 1)
    for k, (x, y) in enumerate(pts):
      if not (0 <= x < size and 0 <= y < size) or not len(centres):
        continue
      j = int(np.argmin(np.sum((centres - (x, y)) ** 2, axis=1)))
      vis = 2 if scene.visible[ys[j], xs[j]] == i else 1
      kps[i, k] = (centres[j, 0], centres[j, 1], vis)
  return kps


def scene_to_example(scene: Scene, config: SceneConfig, rng: np.random.Generator) -> dict:
  """The standard example dict of `scene` (see module doc); `rng` only draws the image noise."""
  size, n_max = config.image_size, config.max_instances
  table = config.classes
  n_stuff = len(table.stuff)
  noisy = scene.image + rng.normal(0.0, 0.012, scene.image.shape)
  image = np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)

  masks = np.zeros((n_max, size, size), np.uint8)
  boxes = np.zeros((n_max, 4), np.float32)
  classes = np.zeros((n_max,), np.int32)
  semantic = scene.stuff_class.copy()
  panoptic = 1 + scene.stuff_class
  segment_classes = np.zeros((config.num_segments,), np.int32)
  segment_is_thing = np.zeros((config.num_segments,), np.uint8)
  for c in np.unique(scene.stuff_class):
    segment_classes[1 + c] = c
  for i, obj in enumerate(scene.objects):
    m = scene.visible == i
    masks[i] = m
    ys, xs = np.nonzero(m)
    boxes[i] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    classes[i] = obj.class_id
    semantic[m] = obj.class_id
    seg = 1 + n_stuff + i
    panoptic[m] = seg
    segment_classes[seg] = obj.class_id
    segment_is_thing[seg] = 1
  return {
      "image": image,
      "semantic": semantic.astype(np.int32),
      "depth": scene.depth.astype(np.float32),
      "normals": scene.normals.astype(np.float32),
      "intrinsics": scene.intrinsics.astype(np.float32),
      "masks": masks,
      "boxes": boxes,
      "classes": classes,
      "num_instances": np.asarray(len(scene.objects), np.int32),
      "keypoints": _keypoints(scene, config),
      "panoptic": panoptic.astype(np.int32),
      "segment_classes": segment_classes,
      "segment_is_thing": segment_is_thing,
  }


def generate_example(seed_or_rng, config: SceneConfig, stats: dict | None = None) -> dict:
  """One example (the standard keys of sources.py) from a seed; identical for identical seeds.

  Args:
    seed_or_rng: int, sequence of ints, SeedSequence, or np.random.Generator (consumed).
    config: the SceneConfig (e.g. `config.CONFIGS['small_64']`).
    stats: optional dict; `stats['dropped_overflow']` is incremented by the number of objects removed
      because the scene had more than `max_instances` (only with on_overflow='drop').
  """
  rng = _as_rng(seed_or_rng)
  scene = render_scene(rng, config)
  if stats is not None:
    stats["dropped_overflow"] = stats.get("dropped_overflow", 0) + scene.dropped_overflow
  return scene_to_example(scene, config, rng)


def example_keys() -> tuple[str, ...]:
  return ("image", "semantic", "depth", "normals", "intrinsics", "masks", "boxes", "classes", "num_instances",
          "keypoints", "panoptic", "segment_classes", "segment_is_thing")
