"""TFDS builder `dense_shapes`: procedural scenes with every dense label, generated locally from a seed.

Importing `dense_jax.data` registers it, so these work offline (nothing is downloaded, no GCS):

  tfds.data_source('dense_shapes/small_64', split='train', data_dir=...)   # random access (grain)
  tfds.load('dense_shapes/small_64', split='train', data_dir=...)          # tf.data

Configs (see `config.CONFIGS`): `small_64` (default; 2000/200/200 examples, 64x64), `medium_128`
(2000/200/200), `large_256` (1000/100/100), `context_64` (the receptive-field variant). Examples are
stored in ArrayRecord files (random access) in example order: example i of a split is
`scene.generate_example(scene.example_seed(cfg, split, i), cfg)`, whatever machine prepares it.

Semantic classes, standard configs: 0 background, 1 sky, 2 grass, 3 wall (stuff); 4 disc, 5 square,
6 triangle, 7 ring, 8 bar (things). `context_64`: 0 background, 1 sky, 2 grass (stuff); 3-5 disc@{background,
sky, grass}, 6-8 square@{background, sky, grass} (things; the class is the shape x the surrounding stuff).
The names are in `info.metadata['class_names']`; see `config.py` for the full description and
`scene.py` for how every label is made. Features (dtypes as in `dense_jax.data.sources`):

  image uint8 (S,S,3) | semantic int32 (S,S) | depth float32 (S,S) | normals float32 (S,S,3) |
  intrinsics float32 (3,3) | masks uint8 (N,S,S) | boxes float32 (N,4) | classes int32 (N,) | num_instances int32 () |
  keypoints float32 (N,4,3) | panoptic int32 (S,S) | segment_classes int32 (M,) | segment_is_thing uint8 (M,)

Arrays are zlib-compressed Tensor features (not PNG `Image` features) so that neither writing nor
reading needs TensorFlow; `tfds.load` (tf.data) reads the same files through the data source.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from dense_jax.data.dense_shapes import config as config_lib, scene

_ZLIB = tfds.features.Encoding.ZLIB
_BYTES = tfds.features.Encoding.BYTES


@dataclasses.dataclass(eq=False)
class DenseShapesConfig(tfds.core.BuilderConfig):
  """A TFDS config wrapping a `SceneConfig` (which decides every example)."""
  scene: config_lib.SceneConfig | None = None


def builder_config(scene_config: config_lib.SceneConfig) -> DenseShapesConfig:
  return DenseShapesConfig(name=scene_config.name, description=scene_config.description,
                           scene=scene_config)


def features(cfg: config_lib.SceneConfig) -> tfds.features.FeaturesDict:
  s, n, m, k = cfg.image_size, cfg.max_instances, cfg.num_segments, config_lib.NUM_KEYPOINTS
  t = tfds.features.Tensor
  return tfds.features.FeaturesDict({
      "image": t(shape=(s, s, 3), dtype=np.uint8, encoding=_ZLIB, doc="RGB"),
      "semantic": t(shape=(s, s), dtype=np.int32, encoding=_ZLIB, doc="class id per pixel"),
      "depth": t(shape=(s, s), dtype=np.float32, encoding=_ZLIB,
                 doc="scene units, the camera-frame z of the visible surface"),
      "normals": t(shape=(s, s, 3), dtype=np.float32, encoding=_ZLIB,
                   doc="unit, x right, y down, z towards the camera"),
      "intrinsics": t(shape=(3, 3), dtype=np.float32, encoding=_BYTES,
                      doc="camera K in pixels, pixel centres at i + 0.5"),
      "masks": t(shape=(n, s, s), dtype=np.uint8, encoding=_ZLIB, doc="visible instance masks, padded"),
      "boxes": t(shape=(n, 4), dtype=np.float32, encoding=_BYTES, doc="(y0, x0, y1, x1) half-open px"),
      "classes": t(shape=(n,), dtype=np.int32, encoding=_BYTES, doc="instance class, 0 = padding"),
      "num_instances": t(shape=(), dtype=np.int32, encoding=_BYTES),
      "keypoints": t(shape=(n, k, 3), dtype=np.float32, encoding=_BYTES, doc="(x, y, visibility)"),
      "panoptic": t(shape=(s, s), dtype=np.int32, encoding=_ZLIB, doc="segment id, 0 = void"),
      "segment_classes": t(shape=(m,), dtype=np.int32, encoding=_BYTES),
      "segment_is_thing": t(shape=(m,), dtype=np.uint8, encoding=_BYTES),
  })


class DenseShapes(tfds.core.GeneratorBasedBuilder):
  """Procedural multi-task scenes (see the module docstring for classes and features)."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "2.0.0": "Perspective camera: depth and normals rendered from one geometry (ground plane, "
                            "backdrop, bulging and tilted objects); `intrinsics` per example."}
  BUILDER_CONFIGS = [builder_config(c) for c in config_lib.CONFIGS.values()]
  DEFAULT_CONFIG_NAME = "small_64"

  def __init__(self, *, file_format=None, **kwargs):
    # ArrayRecord by default: random access for `tfds.data_source` and grain.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @property
  def scene_config(self) -> config_lib.SceneConfig:
    return self.builder_config.scene

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.scene_config
    table = cfg.classes
    return self.dataset_info_from_configs(
        description=__doc__.split("\n\n")[0] + "\n\n" + (cfg.description or ""),
        features=features(cfg),
        disable_shuffling=True,   # keep example i at index i (reproducible from its seed)
        metadata=tfds.core.MetadataDict(
            class_names=list(table.names), thing_classes=list(table.thing_ids),
            num_keypoints=config_lib.NUM_KEYPOINTS,
            keypoint_flip_perm=[list(p) for p in table.keypoint_flip_perm()],
            image_size=cfg.image_size, seed=cfg.seed, fingerprint=scene.fingerprint(cfg)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager   # nothing to download
    return {split: self._generate_examples(split, n) for split, n in self.scene_config.splits}

  def _generate_examples(self, split: str, num_examples: int):
    cfg = self.scene_config
    for i in range(num_examples):
      yield i, scene.generate_example(scene.example_seed(cfg, split, i), cfg)

  def _as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    """tf.data over the ArrayRecord files (TFDS reads ArrayRecord only as a data source)."""
    if self.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      return super()._as_dataset(split=split, decoders=decoders, read_config=read_config,
                                 shuffle_files=shuffle_files)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    source = self.as_data_source(split=split)
    order = np.arange(len(source))
    if shuffle_files:
      seed = getattr(read_config, "shuffle_seed", None)
      np.random.default_rng(seed).shuffle(order)

    def gen():
      for i in order:
        yield source[int(i)]

    spec = self.info.features.get_tensor_spec()
    return tf.data.Dataset.from_generator(gen, output_signature=spec)
