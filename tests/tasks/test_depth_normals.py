"""The depth and normals tasks: masked losses (pixels, examples without the label, padding), the
accumulators against the float64 metric functions over a whole split, the Eigen crop, TTA, drawing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import evaluation, losses, tasks
from dense_jax.metrics import depth as depth_metrics

B, H, W = 3, 12, 16


def _depth_batch(seed=0):
  rng = np.random.default_rng(seed)
  gt = rng.uniform(0.5, 9.0, (B, H, W)).astype(np.float32)
  gt[0, :2] = 0.0                                   # invalid pixels
  log_pred = np.log(gt + rng.uniform(-0.3, 0.3, gt.shape).astype(np.float32) + 0.4)
  return {"image": np.zeros((B, H, W, 3), np.float32), "depth": gt,
          "batch_mask": np.ones((B,), np.float32)}, jnp.asarray(log_pred)


def _evaluate(task, predict_fn, batches):
  """The task's result over `batches` through the one evaluation loop (a fake model `predict_fn`)."""
  tasks_ = {task.name: task}
  step = jax.jit(evaluation.make_eval_step(None, tasks_, predict_fn=predict_fn))
  accs, _ = evaluation.run(step, None, batches, tasks_)
  return task.result(accs[task.name])


def test_depth_loss_masks_examples_without_the_label():
  task = tasks.get_task("depth", name="depth")
  batch, log_pred = _depth_batch()
  batch["has_depth"] = np.array([1, 0, 1], np.float32)
  loss, aux = task.loss({"depth": log_pred}, batch)
  keep = np.array([0, 2])
  ref, parts = losses.depth_loss(log_pred[keep], batch["depth"][keep])
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  np.testing.assert_allclose(aux["depth/scale_invariant"], parts["scale_invariant"], rtol=1e-6)
  grad = jax.grad(lambda p: task.loss({"depth": p}, batch)[0])(log_pred)
  assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[1] == 0.0)
  assert np.all(np.asarray(grad)[0, :2] == 0.0) and np.any(np.asarray(grad)[0, 2:] != 0.0)


def test_depth_accumulator_equals_float64_metrics_over_the_split():
  task = tasks.get_task("depth", name="depth", max_depth=10.0)
  (b1, p1), (b2, p2) = _depth_batch(0), _depth_batch(1)
  b2["batch_mask"] = np.array([1, 1, 0], np.float32)   # the padding of the last batch counts for nothing
  b1["image"][..., 0], b2["image"][..., 0] = 0.0, 1.0   # tells the fake model which batch it sees
  got = _evaluate(task, lambda _, images: {"depth": jnp.where(images[..., 0] > 0, p2, p1)}, [b1, b2])
  pred = np.exp(np.concatenate([np.asarray(p1), np.asarray(p2)[:2]]).astype(np.float64))
  gt = np.concatenate([b1["depth"], b2["depth"][:2]]).astype(np.float64)
  want = depth_metrics.depth_errors(pred, gt, max_depth=10.0)
  assert set(got) == {f"depth/{k}" for k in depth_metrics.KEYS}
  for k, v in want.items():
    np.testing.assert_allclose(got[f"depth/{k}"], v, rtol=2e-5, err_msg=k)


def test_depth_eigen_crop_is_a_mask_on_the_full_label():
  task = tasks.get_task("depth", name="depth", eval_crop="eigen", max_depth=10.0)
  rng = np.random.default_rng(3)
  gt = rng.uniform(0.5, 9.0, (2, 48, 64)).astype(np.float32)
  log_pred = np.log(gt * rng.uniform(0.8, 1.25, gt.shape)).astype(np.float32)
  log_pred[:, :4] = 5.0                              # outside the crop (rows < 4.5): must not count
  batch = {"image": np.zeros((2, 48, 64, 3), np.float32), "depth": gt, "batch_mask": np.ones(2, np.float32)}
  got = _evaluate(task, lambda _, __: {"depth": jnp.asarray(log_pred)}, [batch])
  crop = depth_metrics.eigen_crop_mask(48, 64)
  assert crop[:4].sum() == 0 and crop[5:47, 5:60].all()
  want = depth_metrics.depth_errors(np.exp(log_pred.astype(np.float64)), gt, valid=np.broadcast_to(crop, gt.shape))
  for k, v in want.items():
    np.testing.assert_allclose(got[f"depth/{k}"], v, rtol=2e-5, err_msg=k)
  with pytest.raises(ValueError, match="eval_crop"):
    tasks.get_task("depth", eval_crop="garg")


def test_depth_tta_is_the_mean_log_depth_and_predict_is_metres():
  task = tasks.get_task("depth")
  a, b = jnp.full((1, 2, 3), np.log(2.0)), jnp.full((1, 2, 3), np.log(8.0))
  np.testing.assert_allclose(task.predict(task.merge([a, b])), 4.0, rtol=1e-6)   # geometric mean
  x = jnp.arange(6.0).reshape(1, 2, 3)
  np.testing.assert_array_equal(task.unflip(jnp.flip(x, 2)), x)


def _rotate(n, degrees):
  """n rotated by `degrees` about an axis perpendicular to it."""
  axis = np.cross(n, np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0]))
  axis /= np.linalg.norm(axis)
  t = np.radians(degrees)
  return n * np.cos(t) + np.cross(axis, n) * np.sin(t) + axis * np.dot(axis, n) * (1 - np.cos(t))


def test_normals_ten_degrees_off_everywhere():
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(B, H, W, 3))
  gt /= np.linalg.norm(gt, axis=-1, keepdims=True)
  pred = np.stack([_rotate(n, 10.0) for n in gt.reshape(-1, 3)]).reshape(gt.shape) * 3.0   # any length
  gt[1, 0] = 0.0                                     # invalid row
  batch = {"image": np.zeros((B, H, W, 3), np.float32), "normals": gt.astype(np.float32),
           "batch_mask": np.ones((B,), np.float32)}
  task = tasks.get_task("normals", name="normals")
  got = _evaluate(task, lambda _, __: {"normals": jnp.asarray(pred, jnp.float32)}, [batch])
  np.testing.assert_allclose(got["normals/mean"], 10.0, atol=2e-3)
  np.testing.assert_allclose(got["normals/median"], 10.0, atol=0.011)   # the 0.01° histogram
  assert got["normals/within_11_25"] == 1.0 and got["normals/within_22_5"] == 1.0
  assert got["normals/within_30"] == 1.0


def test_normals_loss_masks_examples_and_its_gradient_is_zero_there():
  rng = np.random.default_rng(1)
  gt = rng.normal(size=(B, H, W, 3)).astype(np.float32)
  pred = jnp.asarray(rng.normal(size=(B, H, W, 3)).astype(np.float32))
  batch = {"image": np.zeros((B, H, W, 3), np.float32), "normals": gt, "batch_mask": np.array([1, 1, 0], np.float32),
           "has_normals": np.array([0, 1, 1], np.float32)}
  task = tasks.get_task("normals", name="normals")
  loss, _ = task.loss({"normals": pred}, batch)
  ref, _ = losses.normals_loss(pred[1:2], gt[1:2])
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  grad = np.asarray(jax.grad(lambda p: task.loss({"normals": p}, batch)[0])(pred))
  assert np.all(np.isfinite(grad)) and np.all(grad[0] == 0) and np.all(grad[2] == 0) and np.any(grad[1] != 0)


def test_normals_tta_negates_x_under_a_flip_and_renormalises():
  task = tasks.get_task("normals")
  n = jnp.asarray(np.random.default_rng(2).normal(size=(1, 4, 5, 3)).astype(np.float32))
  mirrored = jnp.flip(n, 2) * jnp.array([-1.0, 1.0, 1.0])   # what a network sees in the mirrored image
  np.testing.assert_allclose(task.unflip(mirrored), n, rtol=1e-6)
  merged = task.merge([n, 3.0 * n])
  np.testing.assert_allclose(np.linalg.norm(merged, axis=-1), 1.0, rtol=1e-5)


def test_drawing_panels():
  image = np.zeros((H, W, 3), np.float32)
  batch, log_pred = _depth_batch()
  panels = tasks.get_task("depth").draw(image, np.exp(np.asarray(log_pred[0])), {"depth": batch["depth"][0]})
  assert [t for t, _ in panels] == ["depth truth", "depth prediction"]
  assert all(p.shape == (H, W, 3) and p.dtype == np.uint8 for _, p in panels)
  n = np.zeros((H, W, 3), np.float32)
  n[..., 2] = 1.0
  panels = tasks.get_task("normals").draw(image, n, {"normals": n})
  assert all(p.shape == (H, W, 3) for _, p in panels) and panels[0][1][0, 0, 2] == 255


def test_a_task_the_dataset_has_no_labels_for():
  from dense_jax import data
  with pytest.raises(ValueError, match=r"config.tasks.depth: the task needs the batch keys \['depth'\].*voc2012"):
    tasks.build_tasks({"depth": {"weight": 1.0}}, data.dataset_info("voc2012"))
  with pytest.raises(ValueError, match="normals"):
    tasks.build_tasks({"normals": {"weight": 1.0}}, data.dataset_info("voc2012"))
