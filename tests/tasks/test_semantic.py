"""The semantic task against float64 NumPy formulas: the masked loss, the accumulator (padded examples
count for nothing, 64-bit host folding, one trace), the TTA merge; the base class's flip/renormalise."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import evaluation, tasks as tasks_lib
from dense_jax.tasks.base import Task

K = 4


def _task(**kw):
  return tasks_lib.get_task("semantic", num_classes=K, class_names=("a", "b", "c", "d"), ignore_label=255, **kw)


def _batch(seed=0, b=3, h=6, w=5):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, h, w, K)).astype(np.float32)
  labels = rng.integers(0, K, size=(b, h, w)).astype(np.int32)
  labels[rng.random((b, h, w)) < 0.2] = 255
  return logits, labels


def _ce64(logits, labels, real):
  """Mean over valid pixels of -log softmax[label], float64."""
  x = logits.astype(np.float64)
  logp = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
  valid = (labels != 255) & real[:, None, None]
  picked = np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  return -picked[valid].sum() / max(valid.sum(), 1), valid


def test_loss_is_masked_mean_cross_entropy_with_accuracy_and_aux_head():
  logits, labels = _batch()
  aux_logits, _ = _batch(seed=1)
  mask = np.array([1.0, 0.0, 1.0], np.float32)   # the middle example is padding
  task = _task(aux_weight=0.5)
  batch = {"semantic": jnp.asarray(labels), "batch_mask": jnp.asarray(mask)}
  loss, aux = jax.jit(task.loss)({"semantic": jnp.asarray(logits)}, batch)
  want, valid = _ce64(logits, labels, mask > 0)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  accuracy = ((logits.argmax(-1) == labels) & valid).sum() / valid.sum()
  np.testing.assert_allclose(float(aux["train_pixel_accuracy"]), accuracy, rtol=1e-6)
  both, aux = task.loss({"semantic": jnp.asarray(logits), "semantic_aux": jnp.asarray(aux_logits)}, batch)
  want_aux, _ = _ce64(aux_logits, labels, mask > 0)
  np.testing.assert_allclose(float(aux["loss/semantic_aux"]), want_aux, rtol=1e-5)
  np.testing.assert_allclose(float(both), want + 0.5 * want_aux, rtol=1e-5)


def test_loss_of_a_batch_without_valid_pixels_is_zero_with_zero_gradient():
  logits, labels = _batch()
  task = _task()
  fn = lambda x: task.loss({"semantic": x}, {"semantic": jnp.full(labels.shape, 255, jnp.int32)})[0]
  value, grad = jax.value_and_grad(fn)(jnp.asarray(logits))
  assert float(value) == 0.0 and not np.any(np.asarray(grad))


def test_accumulator_ignores_padding_folds_in_int64_and_traces_once():
  task = _task()
  update = jax.jit(chex.assert_max_traces(lambda acc, out, b: task.update(acc, out, b), n=1))
  want = np.zeros((K, K), np.int64)
  total = None
  for seed in range(3):
    logits, labels = _batch(seed)
    mask = np.array([1.0, 1.0, 0.0], np.float32) if seed == 2 else np.ones(3, np.float32)
    acc = update(task.init(), {"semantic": jnp.asarray(logits)},
                 {"semantic": jnp.asarray(labels), "batch_mask": jnp.asarray(mask)})
    host = tasks_lib.host_accumulator(acc)
    assert host["confusion"].dtype == np.int64
    total = host if total is None else task.combine(total, host)
    pred = logits.argmax(-1)
    for b in range(3):
      if mask[b]:
        ok = labels[b] != 255
        np.add.at(want, (labels[b][ok], pred[b][ok]), 1)
  np.testing.assert_array_equal(total["confusion"], want)
  result = task.result(total)
  tp = np.diag(want).astype(np.float64)
  iou = tp / (want.sum(0) + want.sum(1) - tp)
  assert result["miou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
  assert result["pixel_accuracy"] == pytest.approx(tp.sum() / want.sum(), abs=1e-12)
  assert set(result) >= {"mean_accuracy", "iou/a", "iou/d"}


def test_merge_is_log_mean_probability_and_unflip_mirrors():
  task = _task()
  a, _ = _batch(0)
  b, _ = _batch(1)
  merged = np.asarray(task.merge([jnp.asarray(a), jnp.asarray(b)]))
  p = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
  np.testing.assert_allclose(merged, np.log((p(a.astype(np.float64)) + p(b.astype(np.float64))) / 2), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(task.unflip(jnp.asarray(a))), a[:, :, ::-1])


class _VectorTask(Task):
  """A normals-like task: the x channel changes sign under a horizontal flip; unit vectors."""
  flip_negate_channels = (0,)
  unit_vectors = True


def test_base_class_flips_the_x_component_and_renormalises_merged_vectors():
  task = _VectorTask(name="vectors")
  v = np.random.default_rng(0).normal(size=(1, 3, 4, 3)).astype(np.float32)
  v /= np.linalg.norm(v, axis=-1, keepdims=True)
  flipped = np.asarray(task.unflip(jnp.asarray(v)))
  np.testing.assert_array_equal(flipped[..., 0], -v[:, :, ::-1, 0])
  np.testing.assert_array_equal(flipped[..., 1:], v[:, :, ::-1, 1:])
  w = np.roll(v, 1, axis=2)
  merged = np.asarray(task.merge([jnp.asarray(v), jnp.asarray(w)]))
  mean = (v.astype(np.float64) + w) / 2
  np.testing.assert_allclose(merged, mean / np.linalg.norm(mean, axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_evaluation_results_refuse_two_tasks_reporting_the_same_key():
  tasks = {"semantic": _task(), "other": _task()}
  tasks["other"].name = "semantic"   # both would report 'miou'
  accs = {k: tasks_lib.host_accumulator(t.init()) for k, t in tasks.items()}
  with pytest.raises(ValueError, match="both report 'miou'"):
    evaluation.results(tasks, accs)


def test_draw_gives_truth_and_prediction_panels_at_image_size():
  task = _task()
  image = np.zeros((8, 8, 3), np.float32)
  panels = task.draw(image, np.zeros((6, 6), np.int32), {"semantic": np.ones((8, 8), np.int32)})
  assert [t for t, _ in panels] == ["semantic truth", "semantic prediction"]
  truth = panels[0][1]
  assert truth.shape == (8, 8, 3) and truth.dtype == np.uint8
  assert np.all(truth[0] == 0) and np.all(truth[1:7, 1:7] == truth[4, 4]) and truth[4, 4].any()
