"""The input pipeline: shapes, determinism, resumption, per-process sharding, evaluation padding, errors."""

import dataclasses
import json

import numpy as np
import pytest

from dense_jax import data
from dense_jax.data import dense_shapes, pipeline, sources
from dense_jax.data.dense_shapes import config as config_lib

LIVE = dataclasses.replace(config_lib.CONFIGS["small_64"], name="pipeline_test_32", image_size=32,
                           splits=(("train", 24), ("validation", 10)))
LIVE_NAME = dense_shapes.register_config(LIVE, live=True)


class _Indexed:
  """A source whose example i is a 4x4 image filled with i (to see which examples a batch holds)."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((4, 4, 3), i, np.uint8), "semantic": np.full((4, 4), i % 7, np.int32)}


INDEXED = "pipeline_test_indexed"
sources.register_source(
    sources.DatasetInfo(name=INDEXED, num_classes=7, class_names=tuple("abcdefg"),
                        keys=("image", "semantic"), splits=("train", "validation"), image_size=(4, 4)),
    lambda split, data_dir: _Indexed(22 if split == "train" else 9))


def _ids(batch):
  return [int(round(v * 255)) for v in batch["image"][:, 0, 0, 0]]


def _same(a, b):
  return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _it(name=LIVE_NAME, split="train", **kw):
  kw = {"global_batch_size": 4, "seed": 0, "train": True, "process_index": 0, "process_count": 1, **kw}
  return data.create_iterator(name, split, **kw)


def test_batches_have_fixed_shapes_and_contract_dtypes():
  batch = next(_it(global_batch_size=6))
  info = sources.dataset_info(LIVE_NAME)
  assert set(batch) == set(info.keys) | {"batch_mask"}
  assert batch["image"].shape == (6, 32, 32, 3) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert batch["semantic"].dtype == np.int32 and batch["semantic"].shape == (6, 32, 32)
  assert batch["masks"].shape == (6, 8, 32, 32) and batch["masks"].dtype == np.uint8
  assert batch["keypoints"].shape == (6, 8, 4, 3) and batch["num_instances"].shape == (6,)
  np.testing.assert_array_equal(batch["batch_mask"], np.ones(6, np.float32))


def test_image_size_and_keys_options():
  batch = next(_it(image_size=24, keys=("image", "semantic")))
  assert set(batch) == {"image", "semantic", "batch_mask"}
  assert batch["image"].shape == (4, 24, 24, 3) and batch["semantic"].shape == (4, 24, 24)
  ev = next(_it(split="validation", train=False, image_size=(40, 48), global_batch_size=2))
  assert ev["image"].shape == (2, 40, 48, 3)
  assert np.all(ev["semantic"][:, :, 40:] == 255)        # eval pads bottom/right with the ignore label


class _WithIds:
  """Example i: an image of size SIZES[i] with image_id 100 + i (a dataset that names its images)."""
  SIZES = ((4, 6), (8, 4), (6, 6))

  def __len__(self):
    return len(self.SIZES)

  def __getitem__(self, i):
    return {"image": np.zeros(self.SIZES[i] + (3,), np.uint8), "image_id": np.asarray(100 + i, np.int32)}


WITH_IDS = "pipeline_test_with_ids"
sources.register_source(
    sources.DatasetInfo(name=WITH_IDS, num_classes=1, class_names=("a",), keys=("image", "image_id"),
                        splits=("train", "validation")),
    lambda split, data_dir: _WithIds())


def test_original_size_only_in_evaluation_batches_of_datasets_with_image_ids():
  ev = list(_it(WITH_IDS, split="validation", train=False, image_size=(6, 6), global_batch_size=2))
  np.testing.assert_array_equal(ev[0]["original_size"], [[4, 6], [8, 4]])   # the sizes before the resize
  np.testing.assert_array_equal(ev[1]["original_size"], [[6, 6], [0, 0]])   # the padding's: 0, 0
  assert ev[0]["original_size"].dtype == np.int32 and ev[0]["image"].shape == (2, 6, 6, 3)
  train = next(_it(WITH_IDS, image_size=(6, 6), global_batch_size=2, augment=False))
  assert set(train) == {"image", "image_id", "batch_mask"}
  # dense_shapes (no image_id): its evaluation batches keep exactly the dataset's keys, resized or not.
  info = sources.dataset_info(LIVE_NAME)
  for size in (None, (40, 48)):
    ev = next(_it(split="validation", train=False, image_size=size, global_batch_size=2))
    assert set(ev) == set(info.keys) | {"batch_mask"}


def test_deterministic_for_a_seed_and_different_across_seeds():
  a = [next(it) for it in [_it(seed=3)] for _ in range(3)]
  b_it = _it(seed=3)
  b = [next(b_it) for _ in range(3)]
  assert all(_same(x, y) for x, y in zip(a, b))
  c = next(_it(seed=4))
  assert not np.array_equal(a[0]["image"], c["image"])


def test_resume_from_state_replays_the_same_batches():
  it = _it(global_batch_size=4, seed=7)
  for _ in range(7):   # past the first epoch (24 examples = 6 batches)
    next(it)
  state = json.loads(json.dumps(it.get_state()))   # as stored next to a checkpoint
  expected = [next(it) for _ in range(4)]
  fresh = _it(global_batch_size=4, seed=7)
  fresh.set_state(state)
  got = [next(fresh) for _ in range(4)]
  assert all(_same(x, y) for x, y in zip(expected, got))


def test_resume_rejects_a_state_from_another_configuration():
  state = _it(seed=1).get_state()
  with pytest.raises(ValueError, match="seed"):
    _it(seed=2).set_state(state)
  with pytest.raises(ValueError, match="state"):
    _it().set_state({"next_index": 3})


def test_train_epochs_are_permutations_reshuffled_each_epoch():
  it = _it(INDEXED, global_batch_size=2, seed=5, augment=False)
  ids = [i for _ in range(22) for i in _ids(next(it))]   # two epochs of 22
  e0, e1 = ids[:22], ids[22:]
  assert sorted(e0) == sorted(e1) == list(range(22))
  assert e0 != e1 and e0 != list(range(22))


def test_two_processes_read_disjoint_slices():
  per = []
  for p in range(2):
    it = _it(INDEXED, global_batch_size=4, process_index=p, process_count=2, num_epochs=1, augment=False)
    batches = list(it)
    assert all(b["image"].shape[0] == 2 for b in batches)
    per.append([i for b in batches for i in _ids(b)])
  assert len(per[0]) == len(per[1]) == 10        # 22 // 2 = 11 per process, drop remainder -> 10
  assert not set(per[0]) & set(per[1])
  assert set(per[0]) <= set(range(0, 22, 2)) and set(per[1]) <= set(range(1, 22, 2))


def test_evaluation_covers_every_example_once_with_padding():
  seen = []
  counts = []
  for p in range(2):
    batches = list(_it(INDEXED, split="validation", train=False, global_batch_size=4,
                       process_index=p, process_count=2))
    counts.append(len(batches))
    for b in batches:
      real = b["batch_mask"] > 0
      seen += [i for i, r in zip(_ids(b), real) if r]
      assert np.all(b["semantic"][~real] == 255)
  assert counts[0] == counts[1] == 3            # equal step counts on every process
  assert sorted(seen) == list(range(9))


def test_evaluation_is_in_order_and_unaugmented():
  batches = list(_it(LIVE_NAME, split="validation", train=False, global_batch_size=4))
  assert len(batches) == 3 and batches[-1]["batch_mask"].tolist() == [1, 1, 0, 0]
  src = sources.get_source(LIVE_NAME, "validation")
  np.testing.assert_array_equal(batches[1]["semantic"][0], src[4]["semantic"])
  np.testing.assert_allclose(batches[1]["image"][0], src[4]["image"] / 255.0, atol=1e-7)


def test_per_example_augmentation_depends_only_on_seed_epoch_index():
  # The same example in the same epoch gets the same augmentation whatever the process layout.
  ex_fn = pipeline._ExampleFn(source=_Indexed(22), train=True, seed=9, size=(4, 4),
                              augment=data.augment.AugmentConfig(), keypoint_flip_perm=(),
                              ignore_label=255)
  a, b = ex_fn((1, 5)), ex_fn((1, 5))
  assert _same(a, b)
  assert not np.array_equal(ex_fn((1, 5))["image"], ex_fn((2, 5))["image"])


def test_real_tfds_source_end_to_end(tmp_path):
  cfg = dataclasses.replace(LIVE, name="pipeline_test_tfds_32", splits=(("train", 8), ("validation", 2)))
  name = dense_shapes.register_config(cfg)
  it = _it(name, global_batch_size=4, data_dir=str(tmp_path))
  batch = next(it)
  assert batch["image"].shape == (4, 32, 32, 3)
  # With a key subset the TFDS source decodes only those; the batches are the same.
  sub = next(_it(name, global_batch_size=4, data_dir=str(tmp_path), keys=("image", "masks", "keypoints")))
  assert set(sub) == {"image", "masks", "keypoints", "num_instances", "classes", "batch_mask"}
  for k in sub:
    np.testing.assert_array_equal(sub[k], batch[k])
  no_masks = next(_it(name, global_batch_size=4, data_dir=str(tmp_path), keys=("image", "keypoints")))
  assert set(no_masks) == {"image", "keypoints", "num_instances", "classes", "boxes", "batch_mask"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="no_such_dataset"), "dataset: expected one of"),
    (dict(name="dense_shapes/tiny_16"), "dataset: expected one of"),
    (dict(split="training"), "split: expected one of"),
    (dict(global_batch_size=5, process_count=2), "global_batch_size: expected a multiple of process_count=2"),
    (dict(global_batch_size=0), "global_batch_size"),
    (dict(global_batch_size=48), "examples per process"),
    (dict(seed=-1), "seed"),
    (dict(process_index=2, process_count=2), "process_index"),
    (dict(image_size=(0, 4)), "image_size"),
    (dict(keys=("image", "colour")), "keys"),
    (dict(augment="yes"), "augment"),
    (dict(num_epochs=0), "num_epochs"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
  kwargs = dict(kwargs)
  name = kwargs.pop("name", LIVE_NAME)
  split = kwargs.pop("split", "train")
  with pytest.raises(ValueError, match=match):
    _it(name, split, **kwargs)


def test_missing_files_surface_the_sources_error():
  def factory(split, data_dir):
    raise FileNotFoundError(f"pipeline_test_missing: missing {data_dir}/train.tar; put the archive there")
  sources.register_source(sources.DatasetInfo(name="pipeline_test_missing", num_classes=2,
                                              class_names=("a", "b"), keys=("image",), splits=("train",),
                                              image_size=(8, 8)), factory)
  with pytest.raises(FileNotFoundError, match="missing /nowhere/train.tar"):
    _it("pipeline_test_missing", data_dir="/nowhere")


def test_default_process_layout_comes_from_jax():
  it = data.create_iterator(INDEXED, "train", global_batch_size=2, seed=0, train=True)
  assert it.meta["process_index"] == 0 and it.meta["process_count"] == 1


def test_worker_processes_are_deterministic_and_resumable():
  kw = dict(global_batch_size=4, seed=2, num_workers=2)
  a = _it(**kw)
  first = [next(a) for _ in range(3)]
  state = a.get_state()
  after = [next(a) for _ in range(2)]
  a.close()
  b = _it(**kw)
  assert all(_same(x, next(b)) for x in first)
  b.close()
  c = _it(**kw)
  c.set_state(json.loads(json.dumps(state)))
  assert all(_same(x, next(c)) for x in after)
  c.close()
