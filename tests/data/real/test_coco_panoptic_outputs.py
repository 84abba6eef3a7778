"""End to end on fake COCO files: a perfect panoptic prediction of coco2017's evaluation batches, written
by the panoptic task (original pixels, COCO ids and file names), scores PQ 1.0 against the fake
panoptic_val2017.json + PNGs with `pq_compute` (the official crowd rule included)."""

import numpy as np
import pytest

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data as data_lib, tasks as tasks_lib
from dense_jax.data import panoptic_format
from dense_jax.data.real import coco
from dense_jax.metrics import panoptic as pq_lib
from tests.data.real.test_coco import COCO_IDS, H, W, _write


@pytest.mark.parametrize("image_size", [(32, 32), (16, 20)])   # resized to (26, 32) and padded; as it is
def test_perfect_prediction_written_in_original_pixels_scores_pq_one(tmp_path, fakes, image_size):
  _write(tmp_path, fakes, ids=COCO_IDS)
  task = tasks_lib.get_task("panoptic", info=coco.INFO, write_pngs=True)
  it = data_lib.create_iterator("coco2017", "validation", global_batch_size=2, seed=0, train=False,
                                image_size=image_size, data_dir=str(tmp_path), keys=task.batch_keys,
                                process_index=0, process_count=1, num_threads=1, num_epochs=1)
  total = task.to_host(task.init())
  try:
    for batch in it:
      classes = batch["segment_classes"]
      outputs = {"panoptic": {"panoptic": batch["panoptic"], "segment_classes": classes,
                              "segment_valid": classes > 0},
                 "panoptic_semantic": np.zeros(batch["panoptic"].shape + (len(task.stuff_classes) + 1,))}
      total = task.combine(total, task.to_host(task.update(task.init(), outputs, batch)))
  finally:
    it.close()
  files = task.write_outputs(total, tmp_path / "out", "val")
  written = panoptic_format.PanopticReader(files["panoptic_json"])
  assert [written[i]["file_name"] for i in range(3)] == [f"{i:012d}.png" for i in COCO_IDS]
  assert all(written[i]["ids"].shape == (H, W) for i in range(3))
  truth = panoptic_format.PanopticReader(tmp_path / "annotations" / "panoptic_val2017.json")
  image = written.index_of(COCO_IDS[0])   # the one image with panoptic annotations
  assert truth[0]["image_id"] == COCO_IDS[0]
  categories = {c: {"isthing": info["isthing"]} for c, info in written.categories.items()}
  pq = pq_lib.pq_compute([truth[0]["ids"]], [truth[0]["segments"]], [written[image]["ids"]],
                         [written[image]["segments"]], categories)
  assert pq["all"]["pq"] == 1.0 and pq["all"]["n"] == 3   # person, dog, sky (the crowd is no segment)
  assert sorted(s["category_id"] for s in written[image]["segments"].values()) == [1, 18, 187]
  assert not written[written.index_of(COCO_IDS[1])]["segments"]   # no annotation: all void
