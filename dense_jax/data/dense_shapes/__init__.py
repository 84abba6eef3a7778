"""`dense_shapes`: a procedural multi-task dataset generated locally (no download), with every dense label.

  scene.generate_example(seed, config.CONFIGS['small_64'])   # one example dict, pure NumPy
  get_source('dense_shapes/small_64', 'train')                # random access via TFDS ArrayRecord files
  tfds.data_source('dense_shapes/small_64', split='train')    # the same through TFDS directly

Modules: `config` (classes, configs), `camera` (intrinsics, frames), `stuff` (regions, textures, the
ground and backdrop planes), `shapes` (analytic objects),
`scene` (the generator), `builder` (the TFDS builder), `source` (registry + preparation), `figure`.
Importing this package registers the TFDS builder and every config as a source.
"""

from dense_jax.data.dense_shapes import (
    builder,  # registers the TFDS builder `dense_shapes`
    source as _source,
)
from dense_jax.data.dense_shapes.builder import DenseShapes, DenseShapesConfig
from dense_jax.data.dense_shapes.config import CONFIGS, SceneConfig
from dense_jax.data.dense_shapes.scene import example_seed, generate_example, render_scene
from dense_jax.data.dense_shapes.source import GeneratedSource, TfdsSource, prepare, register_config

_source.register_all()
