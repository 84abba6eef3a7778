"""A detector whose classes or keypoints do not fit the dataset fails in `build_model`, before anything
is traced or compiled, naming `config.model.<field>`, what the dataset has and what the config gave
(Mask R-CNN num_classes below the thing ids: NaN at step 1 before; Keypoint R-CNN num_keypoints: a
traceback from the targets)."""

import ml_collections
import pytest

from dense_jax.models import build


def _config(**model):
  return ml_collections.ConfigDict(dict(dataset=dict(name="dense_shapes/small_64"), model=model))


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn_narrow", "maskrcnn_resnet101_fpn"])
def test_maskrcnn_num_classes_below_the_thing_ids(name):
  with pytest.raises(ValueError, match=r"config.model.num_classes: expected at least 9 \(background \+ class ids up "
                                       r"to 8: dataset 'dense_shapes/small_64' has 9 classes, thing classes "
                                       r"\(4, 5, 6, 7, 8\)\), got 3"):
    build.build_model(_config(name=name, num_classes=3))


def test_panoptic_fpn_num_classes_and_thing_classes():
  with pytest.raises(ValueError, match=r"config.model.num_classes: expected at least the 9 semantic classes of "
                                       r"dataset 'dense_shapes/small_64' \(ids 0..8\), got 6"):
    build.build_model(_config(name="panoptic_fpn_resnet50_narrow", num_classes=6, thing_classes=(4, 5)))
  with pytest.raises(ValueError, match=r"config.model.thing_classes: expected the thing classes of dataset "
                                       r"'dense_shapes/small_64' \(4, 5, 6, 7, 8\), got \(4, 5\)"):
    build.build_model(_config(name="panoptic_fpn_resnet50_narrow", thing_classes=(4, 5)))


def test_keypointrcnn_num_keypoints_and_object_classes():
  with pytest.raises(ValueError, match=r"config.model.num_keypoints: expected the 4 keypoints per instance of "
                                       r"dataset 'dense_shapes/small_64', got 17"):
    build.build_model(_config(name="keypointrcnn_resnet50_fpn_narrow", object_classes=(5, 6)))
  with pytest.raises(ValueError, match=r"config.model.object_classes: expected class ids of dataset "
                                       r"'dense_shapes/small_64' \(< its 9 classes.*got \(5, 12\)"):
    build.build_model(_config(name="keypointrcnn_resnet50_fpn_narrow", num_keypoints=4, object_classes=(5, 12)))


def test_fitting_detectors_build():
  build.build_model(_config(name="maskrcnn_resnet50_fpn_narrow"))
  build.build_model(_config(name="keypointrcnn_resnet50_fpn_narrow", num_keypoints=4, object_classes=(5, 6)))
  build.build_model(_config(name="panoptic_fpn_resnet50_narrow", thing_classes=(4, 5, 6, 7, 8)))
