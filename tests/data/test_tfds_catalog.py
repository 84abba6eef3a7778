"""TFDS catalog sources ('tfds:<name>'): each mapping on a crafted example of tiny prepared ArrayRecord
files (tests/data/tfds_fakes.py), the trainer on two of them, and the errors (unknown, unsupported, not
prepared; the CLI's exit status 2)."""

import pickle
import types

import numpy as np
import pytest

from dense_jax import data
from dense_jax.data import DataFileError, tfds_catalog
from dense_jax.data.real import ade20k, coco
from dense_jax.train import loop
from tests.data import tfds_fakes
from tests.train.conftest import read_metrics, tiny_config, write_config_file
from tests.train.test_cli import run_cli
from tests.train.test_failures import count_compilations

C = coco.CONTIGUOUS


# ---------------------------------------------------------------------------------------------- COCO
def _coco_crafted():
  """8x10: person 101 (rows 1-3, cols 2-5), wall-brick 202 (bottom two rows), crowd car 303 (rows 4-5,
  cols 0-2), dog 404 (rows 4-5, cols 6-9, listed after a not-drawn segment 505); void elsewhere."""
  ids = np.zeros((8, 10), np.int64)
  ids[1:4, 2:6] = 101
  ids[6:8, :] = 202
  ids[4:6, 0:3] = 303
  ids[4:6, 6:10] = 404
  objects = [{"id": 101, "category_id": 1}, {"id": 202, "category_id": 171},
             {"id": 303, "category_id": 3, "is_crowd": True}, {"id": 505, "category_id": 19},
             {"id": 404, "category_id": 18}]
  return tfds_fakes.coco_example(139, ids, objects), ids


def _coco_random(rng, image_id):
  h, w = rng.integers(36, 48, size=2)
  ids = np.full((h, w), 7, np.int64)    # road (stuff) background
  ids[rng.integers(0, h // 2):, :w // 2] = 8
  ids[h // 3:h // 3 + 10, w // 3:w // 3 + 12] = 9
  objects = [{"id": 7, "category_id": 149}, {"id": 8, "category_id": 1}, {"id": 9, "category_id": 3}]
  return tfds_fakes.coco_example(image_id, ids, objects, image_value=int(rng.integers(0, 255)))


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds_coco")
  rng = np.random.default_rng(0)
  crafted, _ = _coco_crafted()
  tfds_fakes.prepare("coco/2017_panoptic", root, {
      "train": [_coco_random(rng, 1000 + i) for i in range(8)],
      "validation": [crafted] + [_coco_random(rng, 2000 + i) for i in range(3)]},
      before=tfds_fakes.coco_set_label_names)
  return root


def test_coco_panoptic_maps_segments_to_semantic_panoptic_and_instances(coco_dir):
  src = data.get_source("tfds:coco/2017_panoptic", "validation", data_dir=str(coco_dir))
  assert len(src) == 4
  ex = src[0]
  info = data.dataset_info("tfds:coco/2017_panoptic")
  assert set(ex) == set(info.keys) and info.thing_classes == tuple(range(1, 81)) and info.num_classes == 134
  _, ids = _coco_crafted()
  assert ex["image"].dtype == np.uint8 and ex["image"].shape == (8, 10, 3)
  assert ex["image_id"].dtype == np.int32 and int(ex["image_id"]) == 139
  expected_semantic = np.full((8, 10), 255)
  for seg, cat in ((101, 1), (202, 171), (303, 3), (404, 18)):
    expected_semantic[ids == seg] = C[cat]           # the crowd keeps its class in semantic
  np.testing.assert_array_equal(ex["semantic"], expected_semantic)
  assert ex["semantic"].dtype == np.int32
  expected_panoptic = np.zeros((8, 10))
  for seg, new in ((101, 1), (202, 2), (404, 3)):    # crowd void; the not-drawn 505 takes no id
    expected_panoptic[ids == seg] = new
  np.testing.assert_array_equal(ex["panoptic"], expected_panoptic)
  assert ex["segment_classes"].shape == (256,) and ex["segment_classes"].dtype == np.int32
  assert ex["segment_classes"][:5].tolist() == [0, C[1], C[171], C[18], 0]
  assert ex["segment_is_thing"].dtype == np.uint8 and ex["segment_is_thing"][:5].tolist() == [0, 1, 0, 1, 0]
  # Instances: the non-crowd thing segments (person, dog), in file order.
  assert int(ex["num_instances"]) == 2 and ex["masks"].shape == (100, 8, 10) and ex["masks"].dtype == np.uint8
  np.testing.assert_array_equal(ex["masks"][0], ids == 101)
  np.testing.assert_array_equal(ex["masks"][1], ids == 404)
  assert not ex["masks"][2:].any()
  assert ex["boxes"].dtype == np.float32 and ex["boxes"][:2].tolist() == [[1, 2, 4, 6], [4, 6, 6, 10]]
  assert ex["classes"].dtype == np.int32 and ex["classes"][:3].tolist() == [C[1], C[18], 0]
  # A key subset skips the rest.
  assert set(src.with_keys(("image", "semantic"))[0]) == {"image", "semantic"}
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(src))[0]["masks"], ex["masks"])


def test_coco_labels_are_mapped_by_the_prepared_names_not_the_index():
  names = [n for _, n in coco.CATEGORIES][::-1]
  features = {"panoptic_objects": {"label": types.SimpleNamespace(names=names)}}
  mapping = tfds_catalog._CocoPanoptic(features)  # pylint: disable=protected-access
  ids = np.zeros((2, 2), np.int64)
  ids[0] = 5
  record = {"image/id": 1, "image": np.zeros((2, 2, 3), np.uint8), "panoptic_image": tfds_fakes.rgb_of_id(ids),
            "panoptic_objects": {"id": np.array([5]), "label": np.array([names.index("dog")]),
                                 "is_crowd": np.array([False])}}
  assert mapping(record, {"semantic"})["semantic"].tolist() == [[C[18], C[18]], [255, 255]]


# ---------------------------------------------------------------------------------------------- pets
def _pet(rng, h, w):
  trimap = np.full((h, w), 2, np.uint8)
  trimap[h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
  trimap[h // 4 - 1, :] = 3
  return tfds_fakes.pet_example(trimap, label=int(rng.integers(0, 37)))


@pytest.fixture(scope="module")
def pet_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds_pets")
  rng = np.random.default_rng(1)
  tfds_fakes.prepare("oxford_iiit_pet", root, {
      "train": [_pet(rng, 40 + 2 * i, 48 - i) for i in range(8)],
      "test": [_pet(rng, 36 + i, 44) for i in range(4)]})
  return root


def test_oxford_iiit_pet_trimap_mapping(pet_dir):
  for name in ("tfds:oxford_iiit_pet", "tfds:oxford_iiit_pet:4.0.0"):
    src = data.get_source(name, "validation", data_dir=str(pet_dir))   # validation <- TFDS 'test'
    assert len(src) == 4
    ex = src[0]
    assert set(ex) == {"image", "semantic"} and ex["image"].shape == (36, 44, 3) and ex["image"].dtype == np.uint8
    assert ex["semantic"].dtype == np.int32
    assert ex["semantic"][9, 0] == 0 and ex["semantic"][18, 22] == 1 and ex["semantic"][8, 5] == 255
    assert set(np.unique(ex["semantic"]).tolist()) == {0, 1, 255}
  assert data.dataset_info("tfds:oxford_iiit_pet").class_names == ("background", "pet")
  copy = pickle.loads(pickle.dumps(src))   # grain's worker processes get the source pickled
  np.testing.assert_array_equal(copy[1]["semantic"], src[1]["semantic"])
  assert len(data.get_source("tfds:oxford_iiit_pet", "train", data_dir=str(pet_dir))) == 8


# ---------------------------------------------------------------------------------- cityscapes, ADE, NYU
def test_cityscapes_label_ids_become_train_ids(tmp_path):
  labels = np.zeros((1024, 2048), np.uint8)
  labels[:512] = 7       # road -> 0
  labels[512:, :1024] = 26   # car -> 13
  labels[512:, 1024:1030] = 6   # ground -> 255
  tfds_fakes.prepare("cityscapes/semantic_segmentation", tmp_path,
                     {"train": [tfds_fakes.cityscapes_example(labels)],
                      "validation": [tfds_fakes.cityscapes_example(labels)]})
  ex = data.get_source("tfds:cityscapes/semantic_segmentation", "validation", data_dir=str(tmp_path))[0]
  assert ex["image"].shape == (1024, 2048, 3) and ex["semantic"].dtype == np.int32
  assert ex["semantic"][0, 0] == 0 and ex["semantic"][600, 0] == 13 and ex["semantic"][600, 1025] == 255
  assert ex["semantic"][600, 2000] == 255   # label id 0 (unlabeled)
  with pytest.raises(ValueError, match=r"split: expected one of \['train', 'validation'\]"):
    data.get_source("tfds:cityscapes/semantic_segmentation", "test", data_dir=str(tmp_path))


def test_scene_parse150_instance_masks_become_ade20k_classes_and_instances(tmp_path):
  category, instance = np.zeros((6, 8), np.uint8), np.zeros((6, 8), np.uint8)
  category[0:2, 0:3], instance[0:2, 0:3] = 4, 1      # person
  category[3:5, 0:2], instance[3:5, 0:2] = 4, 2      # another person
  category[2:6, 5:8], instance[2:6, 5:8] = 1, 3      # bed
  tfds_fakes.prepare("scene_parse150", tmp_path, {
      "train": [tfds_fakes.scene_parse150_example(category, instance)],
      "test": [tfds_fakes.scene_parse150_example(category, instance)]})
  ex = data.get_source("tfds:scene_parse150", "validation", data_dir=str(tmp_path))[0]
  person, bed = ade20k.CLASS_NAMES.index("person"), ade20k.CLASS_NAMES.index("bed")
  assert (person, bed) == (12, 7)
  expected = np.full((6, 8), 255)
  expected[category == 4], expected[category == 1] = person, bed
  np.testing.assert_array_equal(ex["semantic"], expected)
  assert int(ex["num_instances"]) == 3 and ex["classes"][:4].tolist() == [person, person, bed, 0]
  np.testing.assert_array_equal(ex["masks"][2], instance == 3)
  assert ex["boxes"][:3].tolist() == [[0, 0, 2, 3], [3, 0, 5, 2], [2, 5, 6, 8]]
  info = data.dataset_info("tfds:scene_parse150")
  assert info.num_classes == 150 and person in info.thing_classes and len(info.thing_classes) == 100


def test_nyu_depth_v2_depth_in_metres_zero_invalid(tmp_path):
  depth = np.full((480, 640), 2.5, np.float32)
  depth[0, :10] = 0
  depth[1, 0] = np.inf
  tfds_fakes.prepare("nyu_depth_v2", tmp_path, {"train": [tfds_fakes.nyu_example(depth)],
                                                "validation": [tfds_fakes.nyu_example(depth)]})
  ex = data.get_source("tfds:nyu_depth_v2", "train", data_dir=str(tmp_path))[0]
  assert set(ex) == {"image", "depth"} and ex["image"].shape == (480, 640, 3)
  assert ex["depth"].dtype == np.float32 and ex["depth"].shape == (480, 640)
  assert ex["depth"][5, 5] == 2.5 and ex["depth"][0, 0] == 0 and ex["depth"][1, 0] == 0


# ---------------------------------------------------------------------------------------------- trainer
@pytest.mark.slow
@pytest.mark.parametrize("name,fixture", [("tfds:oxford_iiit_pet", "pet_dir"),
                                          ("tfds:coco/2017_panoptic", "coco_dir")])
def test_trainer_runs_and_evaluates(tmp_path, request, name, fixture):
  config = tiny_config(**{"dataset.name": name, "dataset.data_dir": str(request.getfixturevalue(fixture)),
                          "dataset.image_size": 32, "total_steps": 4, "eval_every": 4, "checkpoint_every": 4})
  result = loop.train_and_evaluate(config, tmp_path / "run")
  evals = [r for r in read_metrics(tmp_path / "run") if "val/miou" in r]
  assert evals and evals[-1]["step"] == 4 and np.isfinite(evals[-1]["val/miou"]), result


# ---------------------------------------------------------------------------------------------- errors
def test_not_prepared_names_the_dataset_the_dir_and_how_to_prepare(tmp_path):
  with pytest.raises(tfds_catalog.NotPreparedError) as e:
    data.get_source("tfds:oxford_iiit_pet", "train", data_dir=str(tmp_path))
  assert isinstance(e.value, DataFileError) and isinstance(e.value, ValueError)
  message = str(e.value)
  for part in ("'tfds:oxford_iiit_pet'", str(tmp_path), f"tfds build oxford_iiit_pet --data_dir={tmp_path}",
               "--file_format=array_record", "download_and_prepare()"):
    assert part in message, message
  assert not (tmp_path / "oxford_iiit_pet").exists()   # nothing written while looking


@pytest.mark.parametrize("name", ["tfds:oxford_iiit_pet", "tfds:mnist"])
def test_the_trainer_refuses_before_compiling(tmp_path, name):
  config = tiny_config(**{"dataset.name": name, "dataset.data_dir": str(tmp_path / "empty"),
                          "dataset.image_size": 32})
  with count_compilations() as compiled:
    with pytest.raises(loop.ConfigError, match="tfds build oxford_iiit_pet" if "pet" in name else "not mapped"):
      loop.train_and_evaluate(config, tmp_path / "run")
  assert not compiled and not (tmp_path / "run").exists()


def test_a_version_not_prepared_is_refused(pet_dir):
  with pytest.raises(tfds_catalog.NotPreparedError, match=r"'oxford_iiit_pet:3\.2\.0'.*tfds build"):
    data.get_source("tfds:oxford_iiit_pet:3.2.0", "train", data_dir=str(pet_dir))


@pytest.mark.parametrize("name,message", [
    ("tfds:no_such_dataset_xyz", r"'no_such_dataset_xyz' is not in the TFDS catalog.*tfds:oxford_iiit_pet"),
    ("tfds:mnist", r"'mnist' is in the TFDS catalog but its features are not mapped.*supported: .*"
                   r"tfds:coco/2017_panoptic"),
    ("tfds:coco/2017", r"'coco/2017' is in the TFDS catalog but"),
    ("tfds:oxford_iiit_pet:v4", r"expected 'tfds:<name>\[:<major>.<minor>.<patch>\]'"),
])
def test_unknown_and_unsupported_names(name, message):
  with pytest.raises(ValueError, match=message):
    data.dataset_info(name)


def test_catalog_names_in_the_registry_error():
  with pytest.raises(ValueError, match=r"got 'no_such'.*'tfds:<name>\[:<version>\]'"):
    data.dataset_info("no_such")
  assert "tfds:oxford_iiit_pet" in tfds_catalog.available()


@pytest.mark.slow
def test_cli_exits_2_before_compiling(tmp_path):
  config_file = write_config_file(tmp_path, tiny_config(**{
      "dataset.name": "tfds:oxford_iiit_pet", "dataset.data_dir": str(tmp_path / "empty"),
      "dataset.image_size": 32}))
  proc = run_cli("dense_jax.train", f"--config={config_file}", f"--workdir={tmp_path}/run",
                 "--config.dataset.name=tfds:no_such_dataset_xyz")
  assert proc.returncode == 2 and "is not in the TFDS catalog" in proc.stderr, proc.stderr[-3000:]
  proc = run_cli("dense_jax.train", f"--config={config_file}", f"--workdir={tmp_path}/run")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "ERROR: dataset 'tfds:oxford_iiit_pet'" in proc.stderr and "tfds build" in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
