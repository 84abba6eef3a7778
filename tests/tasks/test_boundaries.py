"""The boundaries task: boundary maps of a hand-made label map, the masked balanced loss, P/R/F counts."""

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import tasks
from dense_jax.tasks.boundaries import boundary_map


def test_boundary_map_by_hand():
  labels = np.array([[[1, 1, 2, 2],
                      [1, 1, 2, 2],
                      [255, 255, 2, 2]]])
  edge, valid = boundary_map(labels)
  np.testing.assert_array_equal(edge[0], [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(valid[0], labels[0] != 255)


def test_loss_masks_and_metrics_count():
  task = tasks.get_task("boundaries", name="boundaries")
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, (3, 8, 8)).astype(np.int32)
  logits = jnp.asarray(rng.normal(size=(3, 8, 8)).astype(np.float32))
  batch = {"semantic": labels, "batch_mask": np.ones(3, np.float32), "has_semantic": np.array([1, 0, 1], np.float32)}
  loss, _ = task.loss({"boundaries": logits}, batch)
  grad = np.asarray(jax.grad(lambda x: task.loss({"boundaries": x}, batch)[0])(logits))
  assert np.isfinite(loss) and np.all(grad[1] == 0) and np.any(grad[0] != 0)
  edge, _ = boundary_map(labels)
  perfect = jnp.where(edge, 10.0, -10.0)
  acc = task.update(task.init(), {"boundaries": perfect}, batch)
  res = task.result(jax.device_get(acc))
  assert res == {"boundaries/precision": 1.0, "boundaries/recall": 1.0, "boundaries/f1": 1.0}
  acc = task.update(task.init(), {"boundaries": jnp.full((3, 8, 8), 10.0)}, batch)   # all boundary
  tp = int(np.asarray(edge)[[0, 2]].sum())
  res = task.result(jax.device_get(acc))
  np.testing.assert_allclose(res["boundaries/precision"], tp / (2 * 64))
  assert res["boundaries/recall"] == 1.0
