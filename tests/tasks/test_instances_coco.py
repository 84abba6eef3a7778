"""The COCO 2017 loaders feed the full-size Mask R-CNN and Keypoint R-CNN and their tasks unchanged: batches
from small fake COCO files (tests/data/real's fixtures) go through the ordinary input pipeline into
`maskrcnn_resnet50_fpn` / `keypointrcnn_resnet50_fpn` (torchvision's defaults: 91 / 2 classes, 17
keypoints) and the `instances` / `keypoints` tasks' loss and evaluation update. Traced with
`jax.eval_shape` (shapes and dtypes: the full models' compute is the parity tests' job)."""

import jax
import jax.numpy as jnp
import numpy as np

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax import data as data_lib, tasks as tasks_lib
from dense_jax.models.build import apply_model
from dense_jax.models.registry import get_model
from tests.data.real.conftest import Fakes
from tests.data.real.test_coco import _write

SIZE = 64


def _batch(tmp_path, tasks):
  it = data_lib.create_iterator("coco2017_instances", "validation", global_batch_size=2, seed=0, train=False,
                                image_size=SIZE, data_dir=str(tmp_path), keys=tasks_lib.build.batch_keys(tasks),
                                process_index=0, process_count=1, num_threads=1)
  try:
    return next(iter(it))
  finally:
    it.close()


def _trace(model, task, batch):
  """Shapes of `task.loss` on the train outputs and of `task.update` on the eval outputs."""
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), batch["image"][:1], train=False))

  def train(variables, batch):
    outputs = apply_model(model, variables, batch["image"], train=True, batch=batch,
                          rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"])[0]
    return task.loss(outputs, batch)

  def evaluate(variables, batch):
    return task.update(task.init(), apply_model(model, variables, batch["image"], train=False), batch)
  return jax.eval_shape(train, variables, batch), jax.eval_shape(evaluate, variables, batch)


def test_full_size_maskrcnn_and_keypointrcnn_take_coco_batches(tmp_path):
  _write(tmp_path, Fakes)
  info = data_lib.dataset_info("coco2017_instances")
  instances = tasks_lib.build_tasks({"instances": {"weight": 1.0}}, info)
  batch = _batch(tmp_path, instances)
  assert batch["image"].shape == (2, SIZE, SIZE, 3) and batch["masks"].dtype == np.uint8
  (loss, aux), acc = _trace(get_model("maskrcnn_resnet50_fpn"), instances["instances"], batch)
  assert loss.shape == () and "instances/loss_mask" in aux
  assert acc["detections"]["masks"].shape == (2, 100, 28, 28) and acc["truth"]["masks"].dtype == jnp.uint8

  keypoints = tasks_lib.build_tasks({"keypoints": {"weight": 1.0}}, info)
  assert keypoints["keypoints"].oks_sigmas is None   # COCO's 17 sigmas, CocoAccumulator's default
  batch = _batch(tmp_path, keypoints)
  (loss, aux), acc = _trace(get_model("keypointrcnn_resnet50_fpn"), keypoints["keypoints"], batch)
  assert loss.shape == () and "keypoints/loss_keypoint" in aux
  assert acc["detections"]["keypoints"].shape == (2, 100, 17, 3)
