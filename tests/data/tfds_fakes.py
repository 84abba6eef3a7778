"""Tiny prepared TFDS catalog datasets (ArrayRecord) written offline from crafted examples.

`prepare(name, data_dir, splits)` subclasses the catalog's own builder class (unregistered) and replaces
only its download-and-generate step (`_split_generators`) with the given examples, then runs TFDS's
ordinary `download_and_prepare(file_format='array_record')`: the features, their encoding, the version
folder, dataset_info.json and the shards are exactly what `tfds build <name> --file_format=array_record`
writes, and `tfds.data_source(name, data_dir=...)` reads them back through the real registered builder.
(`tfds.testing.mock_data` patches `data_source` with random examples; these tests need crafted ones.)

The `*_example` helpers build one example of each dataset in the builder's input format.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from dense_jax.data.real import coco


def prepare(name: str, data_dir, splits: dict[str, list[dict]], *, before=None):
  """Writes `splits` {tfds split: [feature dicts]} as the prepared `name` ('builder[/config]') in
  `data_dir`; `before(builder)` runs first (e.g. to set ClassLabel names as the real generator does)."""
  builder_name, _, config = name.partition("/")
  cls = tfds.builder_cls(builder_name)

  class Fake(cls, skip_registration=True):  # pylint: disable=missing-class-docstring
    def _split_generators(self, dl_manager):
      del dl_manager
      if before is not None:
        before(self)
      return {split: self._fake_examples(split) for split in splits}

    def _fake_examples(self, split):
      for i, example in enumerate(splits[split]):
        yield f"{split}_{i}", example

  Fake.name = cls.name
  builder = Fake(config=config or None, data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def rgb_of_id(ids: np.ndarray) -> np.ndarray:
  """Segment ids -> COCO panoptic PNG colours (the inverse of `coco.rgb_to_id`)."""
  ids = np.asarray(ids, np.int64)
  return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def coco_set_label_names(builder) -> None:
  """What the real coco generator does before yielding: name the 133 panoptic labels in file order."""
  builder.info.features["panoptic_objects"]["label"].names = [n for _, n in coco.CATEGORIES]


def coco_label(coco_id: int) -> int:
  """The TFDS label index of COCO category `coco_id` (categories in id order, as the panoptic json)."""
  return [c for c, _ in coco.CATEGORIES].index(coco_id)


def coco_example(image_id: int, ids: np.ndarray, objects: list[dict], image_value: int = 128) -> dict:
  """objects: [{'id', 'category_id' (COCO's), 'is_crowd'}]; ids: (H, W) segment ids of the PNG."""
  h, w = ids.shape
  return {
      "image": np.full((h, w, 3), image_value, np.uint8), "image/filename": f"{image_id:012d}.jpg",
      "image/id": image_id, "panoptic_image": rgb_of_id(ids), "panoptic_image/filename": f"{image_id:012d}.png",
      "panoptic_objects": [
          {"id": o["id"], "area": int((ids == o["id"]).sum()),
           "bbox": tfds.features.BBox(0.0, 0.0, 1.0, 1.0), "label": coco_label(o["category_id"]),
           "is_crowd": bool(o.get("is_crowd", False))} for o in objects]}


def pet_example(trimap: np.ndarray, label: int = 0) -> dict:
  h, w = trimap.shape
  return {"image": np.full((h, w, 3), 90, np.uint8), "label": label, "species": 0, "file_name": "pet.jpg",
          "segmentation_mask": trimap[..., None].astype(np.uint8),
          "head_bbox": tfds.features.BBox(0.0, 0.0, 0.5, 0.5)}


def cityscapes_example(label_ids: np.ndarray, image_id: str = "bonn_000000_000000") -> dict:
  return {"image_id": image_id, "image_left": np.full((1024, 2048, 3), 60, np.uint8),
          "segmentation_label": label_ids[..., None].astype(np.uint8)}


def scene_parse150_example(category: np.ndarray, instance: np.ndarray) -> dict:
  h, w = category.shape
  annotation = np.stack([category, instance, np.zeros_like(category)], -1).astype(np.uint8)
  return {"image": np.full((h, w, 3), 30, np.uint8), "annotation": annotation}


def nyu_example(depth: np.ndarray) -> dict:
  return {"image": np.full((480, 640, 3), 200, np.uint8), "depth": depth.astype(np.float16)}
