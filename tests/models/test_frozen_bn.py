"""`frozen_bn=True` on the VGG16-BN / residual-trunk models: a training-mode apply normalises with the
running statistics (output = eval-mode output) and leaves `batch_stats` unchanged; parameters unchanged."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models.registry import get_model

MODELS = [   # (name, kwargs, image size)
    ("segnet_narrow", dict(num_classes=3), 32),
    ("deconvnet_narrow", dict(num_classes=3, fc_padding="same", fc_channels=64), 32),
    ("multitask_narrow", dict(tasks=("semantic",), num_classes=3, scales=(1.0,), remat=False), 32),
    ("stride_ablation", dict(num_classes=3, width=0.25), 32),
    ("stride_ablation", dict(num_classes=3, backbone="resnet50", width=0.0625, output_stride=16), 32),
]


def _filled(shapes, seed):
  """Arrays of `shapes` (model.init is slow op by op: its initialisers compile per shape): weights
  ~ N(0, 0.1²), BN running variances in [0.5, 1.5), running means ~ N(0, 0.3²) — away from their init
  (mean 0, var 1), so batch and running statistics differ."""
  rng = np.random.default_rng(seed)
  def one(path, s):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
    return jnp.asarray(rng.normal(0.0, 0.3 if "batch_stats" in jax.tree_util.keystr(path) else 0.1, s.shape),
                       s.dtype)
  return jax.tree_util.tree_map_with_path(one, shapes)


@pytest.mark.parametrize("name,kw,size", MODELS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODELS)])
def test_frozen_bn_uses_and_keeps_running_statistics(name, kw, size):
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 3))
  model = get_model(name, frozen_bn=True, **kw)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images, train=False))
  reference = jax.eval_shape(lambda: get_model(name, **kw).init(jax.random.PRNGKey(0), images, train=False))
  assert jax.tree.structure(reference) == jax.tree.structure(shapes)   # the same params and statistics
  variables = _filled(shapes, seed=0)

  train_out, updated = model.apply(variables, images, train=True, mutable=["batch_stats"])
  eval_out = model.apply(variables, images, train=False)
  chex.assert_trees_all_equal(updated["batch_stats"], variables["batch_stats"])
  chex.assert_trees_all_close(train_out, eval_out, rtol=1e-5, atol=1e-5)

  # Without frozen_bn the same training apply does update the statistics (the test can tell).
  _, moved = get_model(name, **kw).apply(variables, images, train=True, mutable=["batch_stats"])
  assert not all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(moved["batch_stats"]), jax.tree.leaves(variables["batch_stats"])))
