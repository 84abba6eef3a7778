"""Learning-rate schedules, weight-decay masks and gradient clipping."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dense_jax.train import optimizers


def cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(name="sgd", learning_rate=0.01), **kw))


def test_poly_schedule_is_the_papers_formula():
  schedule = optimizers.make_schedule(cfg(schedule="poly", power=0.9), total_steps=100)
  for t in (0, 10, 50, 99, 100):
    np.testing.assert_allclose(float(schedule(t)), 0.01 * (1 - t / 100) ** 0.9, rtol=1e-5, atol=1e-9)


def test_warmup_then_cosine():
  schedule = optimizers.make_schedule(cfg(schedule="cosine", warmup_steps=10), total_steps=110)
  np.testing.assert_allclose([float(schedule(t)) for t in (0, 5, 10)], [0.0, 0.005, 0.01], rtol=1e-6)
  np.testing.assert_allclose(float(schedule(60)), 0.005, rtol=1e-5)   # half-way through the cosine
  np.testing.assert_allclose(float(schedule(110)), 0.0, atol=1e-9)


def test_weight_decay_mask_skips_biases_and_norm_params():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2)), "bias": jnp.ones(2)}, "bn": {"scale": jnp.ones(2)}}
  tx, _ = optimizers.make_optimizer(cfg(learning_rate=1.0, momentum=0.0, weight_decay=0.1), 10)
  grads = {"conv": {"kernel": jnp.zeros((3, 3, 2, 2)), "bias": jnp.zeros(2)}, "bn": {"scale": jnp.zeros(2)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1)   # sgd: -lr * wd * w
  assert not np.any(updates["conv"]["bias"]) and not np.any(updates["bn"]["scale"])


def test_gradient_clipping():
  params = {"w": jnp.zeros(4)}
  tx, _ = optimizers.make_optimizer(cfg(learning_rate=1.0, momentum=0.0, grad_clip_norm=1.0), 10)
  updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(float(optax.tree.norm(updates)), 1.0, rtol=1e-6)


def test_adamw_runs():
  params = {"w": jnp.ones((2, 2))}
  tx, _ = optimizers.make_optimizer(cfg(name="adamw", learning_rate=0.1, weight_decay=0.01), 10)
  updates, _ = tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * (1 + 0.01), rtol=1e-4)


@pytest.mark.parametrize("kw,match", [
    (dict(name="rmsprop"), "optimizer.name"), (dict(schedule="step"), "schedule"),
    (dict(learning_rate=0), "learning_rate"), (dict(lr=0.1), "unknown keys \\['lr'\\]"),
    (dict(warmup_steps=-1), "warmup_steps")])
def test_bad_config(kw, match):
  with pytest.raises(ValueError, match=match):
    optimizers.make_optimizer(cfg(**kw), 10)
