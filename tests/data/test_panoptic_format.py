"""COCO panoptic format: the colour formula, write -> read round trip, area/bbox, the merge's arrays."""

import json

import numpy as np
import pytest
from PIL import Image

from dense_jax.data import panoptic_format as fmt
from dense_jax.metrics import panoptic

CATS = {1: {"isthing": 1, "name": "person"}, 7: {"isthing": 0, "name": "sky"}}


def test_colour_formula():
  ids = np.array([[0, 1, 255, 256], [70000, 65536, fmt.MAX_ID, 261]])
  rgb = fmt.id_to_rgb(ids)
  # 70000 = 112 + 256 * 17 + 65536 * 1; 261 = 5 + 256; MAX_ID = 255 + 256 * 255 + 65536 * 255.
  np.testing.assert_array_equal(rgb[1, 0], [112, 17, 1])
  np.testing.assert_array_equal(rgb[1, 3], [5, 1, 0])
  np.testing.assert_array_equal(rgb[1, 2], [255, 255, 255])
  np.testing.assert_array_equal(rgb[0, 3], [0, 1, 0])
  np.testing.assert_array_equal(fmt.rgb_to_id(rgb), ids)
  with pytest.raises(ValueError, match=r"ids: expected segment ids in \[0, 16777215\]"):
    fmt.id_to_rgb(np.array([[fmt.MAX_ID + 1]]))


def _images():
  rng = np.random.default_rng(0)
  a = np.zeros((6, 9), np.int64)
  a[:2] = 70000                      # stuff, uses the B channel
  a[2:5, 1:4] = 261
  a[3:6, 6:9] = 5
  b = rng.integers(0, 3, (5, 4))
  segs_a = {70000: {"category_id": 7}, 261: {"category_id": 1, "score": np.float32(0.75)},
            5: {"category_id": 1, "iscrowd": 1}, 8: {"category_id": 1}}    # 8: listed, not drawn
  segs_b = {1: {"category_id": 7}, 2: {"category_id": 1}}
  return [(1, a, segs_a), ("img_b", b, segs_b)]


def test_write_then_read_round_trip(tmp_path):
  with fmt.PanopticWriter(tmp_path / "pred.json", categories=CATS) as writer:
    for image_id, ids, segs in _images():
      writer.add(image_id, ids, segs)
  assert (tmp_path / "pred" / "000000000001.png").exists() and (tmp_path / "pred" / "img_b.png").exists()
  with Image.open(tmp_path / "pred" / "000000000001.png") as im:
    assert im.mode == "RGB" and tuple(np.asarray(im)[0, 0]) == (112, 17, 1)
  data = json.loads((tmp_path / "pred.json").read_text())
  assert data["categories"] == [{"id": 1, "name": "person", "isthing": 1}, {"id": 7, "name": "sky", "isthing": 0}]
  infos = {s["id"]: s for s in data["annotations"][0]["segments_info"]}
  assert set(infos) == {5, 261, 70000}          # the undrawn segment 8 is not written
  assert infos[261] == {"id": 261, "category_id": 1, "iscrowd": 0, "area": 9, "bbox": [1, 2, 3, 3], "score": 0.75}
  assert infos[5]["iscrowd"] == 1 and infos[5]["bbox"] == [6, 3, 3, 3] and infos[70000]["area"] == 18

  reader = fmt.PanopticReader(tmp_path / "pred.json")
  assert len(reader) == 2 and reader.categories[7] == {"name": "sky", "isthing": 0}
  for image_id, ids, segs in _images():
    got = reader[reader.index_of(image_id)]
    assert got["image_id"] == image_id and got["ids"].dtype == np.int32
    np.testing.assert_array_equal(got["ids"], ids)
    for seg_id, seg in got["segments"].items():
      assert seg["category_id"] == segs[seg_id]["category_id"]
      assert seg["iscrowd"] == segs[seg_id].get("iscrowd", 0)
      assert seg["area"] == int((ids == seg_id).sum())
  # What was read back scores exactly as the originals (it is what panopticapi would read).
  images = _images()
  read = [reader[i] for i in range(2)]
  cats = {c: {"isthing": v["isthing"]} for c, v in CATS.items()}
  original = panoptic.pq_compute([x[1] for x in images], [x[2] for x in images], [x[1] for x in images],
                                 [x[2] for x in images], cats)
  again = panoptic.pq_compute([r["ids"] for r in read], [r["segments"] for r in read], [x[1] for x in images],
                              [x[2] for x in images], cats)
  assert again == original and original["all"]["pq"] == 1.0 and original["all"]["n"] == 2


def test_bad_input(tmp_path):
  writer = fmt.PanopticWriter(tmp_path / "x.json")
  with pytest.raises(ValueError, match=r"segment id 3 is in the map of image 'im' but not listed"):
    writer.add("im", np.array([[1, 3]]), {1: {"category_id": 1}})
  writer.add("im", np.array([[1, 0]]), {1: {"category_id": 1}})
  with pytest.raises(ValueError, match="already written"):
    writer.add("im", np.array([[1, 0]]), {1: {"category_id": 1}})
  assert not (tmp_path / "x.json").exists()     # written on close only
  writer.close()
  assert len(fmt.PanopticReader(tmp_path / "x.json")) == 1


def test_segments_from_merge_arrays():
  from dense_jax.ops.panoptic_merge import panoptic_merge
  masks = np.zeros((2, 4, 4), bool)
  masks[0, :2, :2] = True
  out = panoptic_merge(masks, np.array([0.9, 0.1]), np.array([3, 4]), np.ones((4, 4), np.int32),
                       np.array([False, True]), stuff_area_fraction=0.0)
  segs = fmt.segments_from_arrays(out["segment_classes"], out["segment_valid"],
                                  segment_scores=out["segment_scores"], category_ids={1: 7, 3: 1})
  assert segs == {1: {"category_id": 1, "iscrowd": 0, "score": pytest.approx(0.9)},
                  2: {"category_id": 7, "iscrowd": 0, "score": 0.0}}
  assert fmt.segment_infos(np.asarray(out["panoptic"]), segs, 0)[1]["area"] == 12
