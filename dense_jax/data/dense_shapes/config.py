"""Classes and configurations of `dense_shapes` (pure Python, no TFDS, no NumPy randomness).

Two class tables:

*Standard* (`small_64`, `medium_128`, `large_256`), 9 semantic classes:
  stuff   0 background (grey plane, soft noise)    1 sky (blue, gradient + clouds)
          2 grass (green ground plane, streaks)    3 wall (red-brown bricks)
  things  4 disc (a sphere)   5 square (flat)   6 triangle (flat, equilateral)
          7 ring (a torus)    8 bar (a thin cylinder)

*Context* (`context_64`), 9 semantic classes:
  stuff   0 background   1 sky   2 grass
  things  3 disc@background  4 disc@sky  5 disc@grass  6 square@background  7 square@sky  8 square@grass
  The scene is split by one straight line (random angle and offset) into two regions of two different
  stuff classes; every object lies wholly inside one region (with a margin) and its class is
  (shape kind) x (the stuff class of the region around it). Object colours, sizes and shading are drawn
  independently of the region, so a pixel's class is decidable only if the receptive field reaches past
  the object's own boundary to the surrounding stuff: a pixel d pixels inside an object needs a
  receptive field wider than 2d + 1; elsewhere the shape is knowable but the region only a 1-in-3 guess.
  Objects have radius 11.5..19 px. Ceiling accuracy on thing pixels of a model that sees a square window
  of width 2r + 1 (measured on 300 scenes: fraction of thing pixels within r of stuff, + 1/3 of the rest):
    window   5     9     13    17    25    33
    ceiling  0.52  0.68  0.81  0.90  0.98  0.99

Keypoints (K = 4; x, y, visibility): squares carry their 4 corners, in slots by the corner's direction
from the centre (image axes, y down): 0 up-left, 1 up-right, 2 down-right, 3 down-left; triangles carry 3
corners: 0 the topmost (apex), 1 the left and 2 the right one of the other two; slot 3 absent. Horizontal
flip permutes slots: squares (1, 0, 3, 2), triangles (0, 2, 1, 3); see `keypoint_flip_perm`.
"""

from __future__ import annotations

import dataclasses

NUM_KEYPOINTS = 4
# OKS sigma of every keypoint slot (keypoint AP): the slots are polygon corners, rendered exactly (no
# annotator spread, unlike COCO's body joints), so σ is COCO's tightest (eyes 0.025, nose 0.026) doubled
# for the 56x56 heatmap's quantisation: OKS 0.5 at ~1.2 · sqrt(area) · 0.1 px, 2.4 px on a 20 px object.
OKS_SIGMAS = (0.05,) * NUM_KEYPOINTS
# Per thing kind: the slot permutation a horizontal flip applies (new slot k takes old slot perm[k]).
KIND_FLIP_PERM = {"square": (1, 0, 3, 2), "triangle": (0, 2, 1, 3)}
KIND_NUM_CORNERS = {"square": 4, "triangle": 3}
THING_KINDS = ("disc", "square", "triangle", "ring", "bar")
STUFF_KINDS = ("background", "sky", "grass", "wall")


@dataclasses.dataclass(frozen=True)
class ClassTable:
  """Semantic ids: `names[i]` is class i; stuff ids map to a texture, thing ids to a (kind, context)."""
  names: tuple[str, ...]
  stuff: dict              # stuff kind -> class id
  things: dict             # (thing kind, surrounding stuff kind or None) -> class id

  @property
  def num_classes(self) -> int:
    return len(self.names)

  @property
  def thing_ids(self) -> tuple[int, ...]:
    return tuple(sorted(self.things.values()))

  def kind_of(self, class_id: int) -> str | None:
    """The thing kind of `class_id`, or None for stuff."""
    for (kind, _), cid in self.things.items():
      if cid == class_id:
        return kind
    return None

  @property
  def keypoint_class_ids(self) -> tuple[int, ...]:
    """The thing classes whose instances carry keypoint slots (their kind has corners)."""
    return tuple(c for c in self.thing_ids if self.kind_of(c) in KIND_NUM_CORNERS)

  def keypoint_flip_perm(self) -> tuple[tuple[int, ...], ...]:
    """Row c = the flip permutation of the keypoint slots of class c (identity for classes without)."""
    ident = tuple(range(NUM_KEYPOINTS))
    return tuple(KIND_FLIP_PERM.get(self.kind_of(c), ident) for c in range(self.num_classes))


STANDARD_CLASSES = ClassTable(
    names=("background", "sky", "grass", "wall", "disc", "square", "triangle", "ring", "bar"),
    stuff={"background": 0, "sky": 1, "grass": 2, "wall": 3},
    things={(k, None): 4 + i for i, k in enumerate(THING_KINDS)})

_CTX_STUFF = ("background", "sky", "grass")
_CTX_KINDS = ("disc", "square")
CONTEXT_CLASSES = ClassTable(
    names=_CTX_STUFF + tuple(f"{k}@{s}" for k in _CTX_KINDS for s in _CTX_STUFF),
    stuff={s: i for i, s in enumerate(_CTX_STUFF)},
    things={(k, s): 3 + 3 * i + j for i, k in enumerate(_CTX_KINDS) for j, s in enumerate(_CTX_STUFF)})


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Everything that decides a scene. Sizes are fractions of `image_size` so resolutions look alike.

  on_overflow: what to do when a scene has more visible objects than `max_instances`:
    'error' raises ValueError; 'drop' removes the farthest objects from the scene and renders it again
    (labels stay consistent), counting the removals in `stats['dropped_overflow']`.
  """
  name: str = "small_64"
  image_size: int = 64
  max_instances: int = 8
  min_objects: int = 2
  max_objects: int = 6
  context: bool = False
  radius_frac: tuple[float, float] = (0.08, 0.16)   # object radius / image_size at depth 3 (scaled 3/depth)
  min_visible_frac: float = 0.0015                  # objects with fewer visible pixels are removed
  on_overflow: str = "error"
  seed: int = 0
  splits: tuple[tuple[str, int], ...] = (("train", 2000), ("validation", 200), ("test", 200))
  description: str = ""

  @property
  def classes(self) -> ClassTable:
    return CONTEXT_CLASSES if self.context else STANDARD_CLASSES

  @property
  def num_segments(self) -> int:
    """Length of `segment_classes`: id 0 (void) + one id per stuff class + one per instance slot."""
    return 1 + len(self.classes.stuff) + self.max_instances

  @property
  def min_visible_pixels(self) -> int:
    return max(4, round(self.min_visible_frac * self.image_size ** 2))

  def split_sizes(self) -> dict[str, int]:
    return dict(self.splits)

  def validate(self) -> None:
    if self.image_size < 16:
      raise ValueError(f"image_size: expected >= 16, got {self.image_size}")
    if not 1 <= self.min_objects <= self.max_objects:
      raise ValueError(f"min_objects/max_objects: expected 1 <= min <= max, got "
                       f"{self.min_objects}, {self.max_objects}")
    if self.max_instances < 1:
      raise ValueError(f"max_instances: expected >= 1, got {self.max_instances}")
    if self.on_overflow not in ("error", "drop"):
      raise ValueError(f"on_overflow: expected 'error' or 'drop', got {self.on_overflow!r}")


CONFIGS = {
    "small_64": SceneConfig(
        name="small_64", image_size=64, description="64x64, 2-6 objects; the CPU default."),
    "medium_128": SceneConfig(
        name="medium_128", image_size=128, min_objects=3, max_objects=7,
        splits=(("train", 2000), ("validation", 200), ("test", 200)),
        description="128x128, 3-7 objects."),
    "large_256": SceneConfig(
        name="large_256", image_size=256, min_objects=3, max_objects=8,
        splits=(("train", 1000), ("validation", 100), ("test", 100)),
        description="256x256, 3-8 objects."),
    "context_64": SceneConfig(
        name="context_64", image_size=64, context=True, min_objects=1, max_objects=2,
        radius_frac=(0.18, 0.3), splits=(("train", 2000), ("validation", 200), ("test", 200)),
        description="64x64 context variant: a thing's class is its shape x the stuff region around it."),
}
