"""`<dataset>+one_label`: one label type per training example (fixed per example), full labels elsewhere,
and the tasks' losses count only the examples that keep their label."""

import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import data, tasks
from dense_jax.data import partial_labels

NAME = "dense_shapes/small_64+one_label"
FLAGS = ("has_semantic", "has_depth", "has_normals", "has_colour")


def test_variants_are_registered_with_flags():
  info = data.dataset_info(NAME)
  base = data.dataset_info("dense_shapes/small_64")
  assert info.keys == base.keys + FLAGS and info.num_classes == base.num_classes
  assert "nyu_depth_v2+one_label" in data.available() and "voc2012+one_label" not in data.available()
  data.register_source(data.DatasetInfo(name="test_images_only", num_classes=0, class_names=(), keys=("image",),
                                        splits=("train",)), lambda split, data_dir=None: [])
  with pytest.raises(ValueError, match=r"at least two label types.*'test_images_only' with \['colour'\]"):
    partial_labels.register_one_label("test_images_only")


def test_one_flag_per_training_example_fixed_per_index_and_all_in_validation():
  train = data.get_source(NAME, "train")
  flags = np.array([[train[i][k] for k in FLAGS] for i in range(40)])
  assert flags.dtype == np.float32 and np.all(flags.sum(1) == 1)
  assert len(set(np.argmax(flags, 1))) == 4                     # every type is drawn
  np.testing.assert_array_equal(flags[7], [train[7][k] for k in FLAGS])   # the same on every read
  base = data.get_source("dense_shapes/small_64", "train")[3]
  np.testing.assert_array_equal(train[3]["depth"], base["depth"])          # the labels stay
  val = data.get_source(NAME, "validation")
  assert all(val[i][k] == 1 for i in range(5) for k in FLAGS)


def test_pipeline_batches_carry_the_flags_and_tasks_read_them():
  info = data.dataset_info(NAME)
  built = tasks.build_tasks({"depth": {}, "normals": {}, "semantic": {}}, info)
  assert "has_depth" in built["depth"].batch_keys and "has_semantic" in built["semantic"].batch_keys
  keys = tasks.build.batch_keys(built)
  it = data.create_iterator(NAME, "train", global_batch_size=8, seed=0, train=True, keys=keys)
  batch = next(it)
  it.close()
  assert set(keys) <= set(batch) and batch["has_depth"].shape == (8,)
  # An example without has_semantic contributes nothing: its labels can be anything.
  semantic = built["semantic"]
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(8, 64, 64, info.num_classes)), jnp.float32)
  loss, _ = semantic.loss({"semantic": logits}, batch)
  changed = dict(batch, semantic=np.where(batch["has_semantic"][:, None, None] > 0, batch["semantic"], 0))
  np.testing.assert_allclose(semantic.loss({"semantic": logits}, changed)[0], loss, rtol=1e-6)
  if batch["has_semantic"].sum() == 0:
    assert float(loss) == 0.0
