"""The colorization task: in-program targets equal the host encoder of data/color.py, the masked
rebalanced loss, the AuC accumulators against ab_auc, the cached training prior, TTA and drawing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import evaluation, losses, tasks
from dense_jax.data import color
from dense_jax.metrics import colorization as color_metrics
from dense_jax.tasks import colorization as task_lib

B, H, W = 3, 16, 16


def _images(seed=0):
  rng = np.random.default_rng(seed)
  # Smooth colour fields (blocks of 4x4): a realistic spread of ab, incl. saturated colours.
  return np.repeat(np.repeat(rng.uniform(0, 1, (B, H // 4, W // 4, 3)), 4, 1), 4, 2).astype(np.float32)


def test_lab_and_soft_encoding_equal_the_host_encoder():
  rgb = np.random.default_rng(0).uniform(0, 1, (500, 3))
  np.testing.assert_allclose(task_lib.rgb_to_lab(jnp.asarray(rgb)), color.rgb_to_lab(rgb), atol=2e-3)
  bins = color.AbBins()
  ab = color.rgb_to_lab(rgb)[:, 1:]
  got_bins, got_w = task_lib.soft_encode(jnp.asarray(ab, jnp.float32), jnp.asarray(bins.centres, jnp.float32))
  want_bins, want_w = bins.soft_encode(ab)
  np.testing.assert_array_equal(np.asarray(got_bins)[:, 0], want_bins[:, 0])   # nearest bin
  dense = lambda b, w: np.stack([np.bincount(bi, wi, bins.num_bins) for bi, wi in zip(b, w)])
  np.testing.assert_allclose(dense(np.asarray(got_bins), np.asarray(got_w)), dense(want_bins, want_w), atol=1e-4)


def test_annealed_mean_decoding_equals_abbins_decode():
  task = tasks.get_task("colorization", rebalance=False)
  logits = np.random.default_rng(1).normal(size=(2, 3, 4, task.bins.num_bins)).astype(np.float32) * 3
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(task.predict(jnp.asarray(logits)), task.bins.decode(probs, 0.38), atol=1e-3)


def test_loss_is_the_rebalanced_cross_entropy_masked_per_example():
  q = color.AbBins().num_bins
  weights = np.random.default_rng(2).uniform(0.2, 3.0, q).astype(np.float32)
  task = tasks.get_task("colorization", name="colorization", class_weights=weights)
  images = _images()
  logits = jnp.asarray(np.random.default_rng(3).normal(size=(B, H // 4, W // 4, q)).astype(np.float32))
  batch = {"image": images, "batch_mask": np.ones(B, np.float32), "has_colour": np.array([1, 0, 1], np.float32)}
  loss, _ = task.loss({"colorization": logits}, batch)
  keep = np.array([0, 2])
  ab = color.rgb_to_lab(images[keep])[..., 1:].reshape(2, H // 4, 4, W // 4, 4, 2).mean(axis=(2, 4))
  target_bins, target_w = task.bins.soft_encode(ab)
  ref, _ = losses.colorization_loss(logits[keep], target_bins, target_w, weights)
  np.testing.assert_allclose(loss, ref, rtol=1e-4)
  grad = np.asarray(jax.grad(lambda x: task.loss({"colorization": x}, batch)[0])(logits))
  assert np.all(np.isfinite(grad)) and np.all(grad[1] == 0) and np.any(grad[0] != 0)


def test_auc_accumulators_equal_ab_auc_at_full_resolution():
  weights = np.random.default_rng(4).uniform(0.2, 3.0, color.AbBins().num_bins).astype(np.float32)
  task = tasks.get_task("colorization", name="colorization", class_weights=weights)
  images = _images(5)
  logits = np.random.default_rng(6).normal(size=(B, H // 4, W // 4, task.bins.num_bins)).astype(np.float32)
  batch = {"image": images, "batch_mask": np.array([1, 1, 0], np.float32)}   # the last is padding
  step = jax.jit(evaluation.make_eval_step(None, {"colorization": task}, predict_fn=lambda _, __: {
      "colorization": jnp.asarray(logits)}))
  accs, _ = evaluation.run(step, None, [batch], {"colorization": task})
  got = task.result(accs["colorization"])
  pred_ab = np.asarray(jax.image.resize(task.predict(jnp.asarray(logits)), (B, H, W, 2), "linear"))[:2]
  gt_ab = color.rgb_to_lab(images[:2])[..., 1:]
  np.testing.assert_allclose(got["colorization/auc"], color_metrics.ab_auc(pred_ab, gt_ab), atol=2e-3)
  rebalanced = color_metrics.ab_auc(pred_ab, gt_ab, weights=color_metrics.rebalanced_pixel_weights(
      gt_ab, weights, task.bins))
  np.testing.assert_allclose(got["colorization/auc_rebalanced"], rebalanced, atol=2e-3)
  assert 0 < got["colorization/auc"] < 1


def test_perfect_prediction_has_auc_near_one():
  task = tasks.get_task("colorization", name="colorization", rebalance=False)
  # One colour per image (no edges for the 4x upsampling to blur); the prediction is a confident
  # one-hot on its nearest bin, so the only error is the quantization (<= 5 sqrt(2) ab units).
  images = np.broadcast_to(np.random.default_rng(7).uniform(0, 1, (B, 1, 1, 3)), (B, H, W, 3)).astype(np.float32)
  nearest = task.bins.hard_encode(color.rgb_to_lab(images[:, :H // 4, :W // 4])[..., 1:])
  logits = np.eye(task.bins.num_bins, dtype=np.float32)[nearest] * 50.0
  acc = task.update(task.init(), {"colorization": jnp.asarray(logits)}, {"image": images})
  auc = task.result(jax.device_get(acc))["colorization/auc"]
  assert 1 - 7.08 / 150 <= auc < 1


def test_training_prior_is_computed_once_and_cached(tmp_path, monkeypatch):
  monkeypatch.setenv("DENSE_JAX_CACHE", str(tmp_path))
  bins = color.AbBins()
  prior = task_lib.training_prior("dense_shapes/small_64", bins, max_examples=4)
  files = list((tmp_path / "ab_prior").glob("*.npy"))
  assert len(files) == 1 and prior.shape == (bins.num_bins,) and abs(prior.sum() - 1) < 1e-9
  from dense_jax import data
  want = color.dataset_ab_prior(data.get_source("dense_shapes/small_64", "train"), bins, 4)
  np.testing.assert_allclose(prior, want)
  np.save(files[0], prior * 0 + 1.0 / bins.num_bins)   # the cache is what is read back
  np.testing.assert_allclose(task_lib.training_prior("dense_shapes/small_64", bins, max_examples=4),
                             1.0 / bins.num_bins)
  task = tasks.get_task("colorization", info=data.dataset_info("dense_shapes/small_64"), prior_examples=4)
  np.testing.assert_allclose(task.class_weights, color.rebalancing_weights(np.full(bins.num_bins, 1.0 / bins.num_bins),
                                                                         bins), rtol=1e-6)


def test_bad_arguments_and_outputs():
  with pytest.raises(ValueError, match="temperature"):
    tasks.get_task("colorization", rebalance=False, temperature=0.0)
  with pytest.raises(ValueError, match="class_weights"):
    tasks.get_task("colorization", class_weights=np.ones(3))
  task = tasks.get_task("colorization", name="colorization", rebalance=False)
  with pytest.raises(ValueError, match=r"outputs\['colorization'\]: expected logits"):
    task.loss({"colorization": jnp.zeros((1, 4, 4, 2))}, {"image": np.zeros((1, 16, 16, 3), np.float32)})


def test_drawing_and_tta():
  task = tasks.get_task("colorization", rebalance=False)
  images = _images(8)
  ab = np.zeros((H // 4, W // 4, 2), np.float32)
  panels = task.draw(images[0], ab, {"image": images[0]})
  assert [t for t, _ in panels] == ["colorization input (L)", "colorization prediction", "colorization truth"]
  grey, pred, truth = (p for _, p in panels)
  np.testing.assert_array_equal(grey, pred)       # zero ab = the grey input
  assert np.all(grey[..., 0] == grey[..., 1]) or np.abs(grey.astype(int)[..., 0] - grey[..., 1]).max() <= 1
  assert truth.shape == (H, W, 3)
  a = jnp.asarray(np.random.default_rng(9).normal(size=(1, 2, 2, task.bins.num_bins)), jnp.float32)
  merged = task.merge([a, a])
  np.testing.assert_allclose(jax.nn.softmax(merged), jax.nn.softmax(a), rtol=1e-4, atol=1e-7)
