"""`dense_shapes` in the source registry: preparing the TFDS files on first use, and an in-memory source.

Every config `c` of `config.CONFIGS` is registered as 'dense_shapes/c'. `get_source('dense_shapes/c',
split, data_dir)` returns a random-access source over the prepared ArrayRecord files, preparing them
first if they are absent (logged; small_64 takes seconds). Where the files go (`data_dir`, a TFDS data
dir): the argument if given, else `$DENSE_JAX_DATA_DIR/tfds` if that variable is set, else TFDS's
default (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Nothing is ever downloaded: GCS is off.

Preparing is not safe to run concurrently into the same directory (TFDS renames a finished temporary
folder into place); on a multi-host run each host prepares its own local copy, or call
`prepare('small_64', data_dir)` once beforehand.

`GeneratedSource(config, split)` generates the same examples on the fly, without files: what tests and
quick experiments with a custom `SceneConfig` use (`register_config(cfg, live=True)`).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from dense_jax.data import sources
from dense_jax.data.dense_shapes import config as config_lib
from dense_jax.data.dense_shapes import scene

log = logging.getLogger(__name__)
NAME = "dense_shapes"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str | None:
  """The TFDS data dir to use (None = TFDS's default); see the module docstring."""
  if data_dir is not None:
    return os.path.expanduser(os.fspath(data_dir))
  root = os.environ.get("DENSE_JAX_DATA_DIR")
  if root:
    return os.path.join(os.path.expanduser(root), "tfds")
  return None


def _builder(cfg: config_lib.SceneConfig, data_dir):
  # Imported here so that `scene`/`config` stay importable without TFDS.
  from dense_jax.data.dense_shapes import builder as builder_lib  # pylint: disable=g-import-not-at-top
  if config_lib.CONFIGS.get(cfg.name) == cfg:
    return builder_lib.DenseShapes(config=cfg.name, data_dir=resolve_data_dir(data_dir))
  return builder_lib.DenseShapes(config=builder_lib.builder_config(cfg), data_dir=resolve_data_dir(data_dir))


def prepare(cfg: config_lib.SceneConfig | str, data_dir=None):
  """Generates the TFDS files of `cfg` into `data_dir` unless present; returns the builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if isinstance(cfg, str):
    if cfg not in config_lib.CONFIGS:
      raise ValueError(f"config: expected one of {sorted(config_lib.CONFIGS)}, got {cfg!r}")
    cfg = config_lib.CONFIGS[cfg]
  builder = _builder(cfg, data_dir)
  if not builder.is_prepared():
    n = sum(dict(cfg.splits).values())
    log.warning("%s/%s: preparing %d examples into %s (one-off, offline)", NAME, cfg.name, n,
                builder.data_dir)
    start = time.perf_counter()
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    log.warning("%s/%s: prepared in %.1f s", NAME, cfg.name, time.perf_counter() - start)
  return builder


class TfdsSource:
  """Random access to a prepared split; examples carry the standard keys with the contract dtypes.

  `with_keys(keys)` gives a view that reads and decodes only `keys` (the builder stores every feature as
  its own zlib/bytes blob, so skipping the masks and normals of a 256x256 example saves most of the
  work); the pipeline uses it when `create_iterator(keys=...)` is given.
  """

  def __init__(self, cfg: config_lib.SceneConfig, split: str, data_dir=None,
               keys: tuple[str, ...] | None = None):
    self.config = cfg
    self.split = split
    self.data_dir = data_dir
    self.keys = tuple(keys) if keys is not None else None
    builder = prepare(cfg, data_dir)
    self._features = builder.info.features
    if self.keys is None:
      self._source = builder.as_data_source(split=split)
    else:
      unknown = sorted(set(self.keys) - set(self._features.keys()))
      if unknown:
        raise ValueError(f"keys: expected a subset of {sorted(self._features.keys())}, got {unknown}")
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      self._source = builder.as_data_source(
          split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def with_keys(self, keys) -> "TfdsSource":
    return TfdsSource(self.config, self.split, self.data_dir, keys)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    record = self._source[int(index)]
    if self.keys is None:
      return {k: np.asarray(v) for k, v in record.items()}
    # The TF-free protobuf TFDS itself parses with; every feature is one bytes entry (see builder).
    from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
    feature = tf_example_pb2.Example.FromString(record).features.feature
    return {k: np.asarray(self._features[k].decode_example_np(feature[k].bytes_list.value[0]))
            for k in self.keys}

  def __repr__(self) -> str:
    return f"TfdsSource({NAME}/{self.config.name}, {self.split!r}, n={len(self)}, keys={self.keys})"


class GeneratedSource:
  """The examples of `cfg`'s split, generated on access (identical to the prepared files)."""

  def __init__(self, cfg: config_lib.SceneConfig, split: str, num_examples: int | None = None):
    sizes = cfg.split_sizes()
    if split not in sizes:
      raise ValueError(f"split: expected one of {list(sizes)} for {NAME}/{cfg.name}, got {split!r}")
    self.config = cfg
    self.split = split
    self._n = sizes[split] if num_examples is None else int(num_examples)

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < self._n:
      raise IndexError(f"index: expected 0 <= index < {self._n}, got {index}")
    return scene.generate_example(scene.example_seed(self.config, self.split, index), self.config)

  def __repr__(self) -> str:
    return f"GeneratedSource({NAME}/{self.config.name}, {self.split!r}, n={self._n})"


def dataset_info(cfg: config_lib.SceneConfig) -> sources.DatasetInfo:
  table = cfg.classes
  return sources.DatasetInfo(
      name=f"{NAME}/{cfg.name}",
      num_classes=table.num_classes,
      class_names=table.names,
      keys=scene.example_keys(),
      splits=tuple(s for s, _ in cfg.splits),
      thing_classes=table.thing_ids,
      num_keypoints=config_lib.NUM_KEYPOINTS,
      keypoint_flip_perm=table.keypoint_flip_perm(),
      image_size=(cfg.image_size, cfg.image_size),
      description=(f"Procedural scenes generated locally ({cfg.description}) Classes: "
                   + ", ".join(f"{i} {n}" for i, n in enumerate(table.names))
                   + ". Prepared on first use into the TFDS data dir; see dense_jax.data.dense_shapes."),
  )


def register_config(cfg: config_lib.SceneConfig, *, live: bool = False) -> str:
  """Registers `cfg` as source 'dense_shapes/<cfg.name>' (TFDS files, or generated on access if `live`)."""
  cfg.validate()

  def factory(split: str, data_dir=None):
    if live:
      return GeneratedSource(cfg, split)
    return TfdsSource(cfg, split, data_dir)

  info = dataset_info(cfg)
  sources.register_source(info, factory)
  return info.name


def register_all() -> None:
  for cfg in config_lib.CONFIGS.values():
    register_config(cfg)
