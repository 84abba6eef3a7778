"""Eigen & Fergus (ICCV 2015) multi-scale network: parameter counts against a layer-by-layer formula,
output shapes, task subsets, bad input, and a short run that learns all three tasks on a tiny batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model

FAST_KEY = lambda: jax.random.key(0, impl="unsafe_rbg")  # Compiles much faster than threefry.


def conv_params(k, c_in, c_out):
  return k * k * c_in * c_out + c_out


def dense_params(n_in, n_out):
  return n_in * n_out + n_out


def eigen_fergus_params(h, w, out_channels, width=1.0):
  """The paper's layer table, layer by layer, for an h×w input and tasks with `out_channels` (C each)."""
  s = lambda c: max(1, round(c * width))
  total, c_in = 0, 3
  for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):  # VGG16 "D"
    for c in block:
      total += conv_params(3, c_in, s(c))
      c_in = s(c)
  total += dense_params(s(512) * (h // 32) * (w // 32), s(4096))          # full1 on pool5
  total += dense_params(s(4096), s(64) * (h // 16) * (w // 16))          # full2: 64 maps at 1/16
  total += 2 * conv_params(9, 3, s(96))                                   # conv 2.1 and conv 3.1
  for c in out_channels:
    total += conv_params(5, s(96) + s(64), s(64)) + 2 * conv_params(5, s(64), s(64))   # conv 2.2-2.4
    total += conv_params(5, s(64), c)                                                   # conv 2.5
    total += conv_params(5, s(96) + sum(out_channels), s(64)) + conv_params(5, s(64), s(64))  # 3.2-3.3
    total += conv_params(5, s(64), c)                                                   # conv 3.4
  return total


@pytest.mark.parametrize("name, kwargs, shape, channels, expected", [
    # NYUv2 at half resolution (240x320): depth (1), normals (3) and 40 semantic classes.
    ("eigen_fergus", {"tasks": ("depth", "normals", "semantic")}, (1, 240, 320, 3), (1, 3, 40), 242_732_120),
    ("eigen_fergus", {}, (1, 240, 320, 3), (1, 3), None),
    ("eigen_fergus_narrow", {"tasks": ("depth", "normals", "semantic"), "num_classes": 9}, (1, 64, 64, 3),
     (1, 3, 9), None),
])
def test_param_counts_match_the_layer_table(name, kwargs, shape, channels, expected):
  width = 0.125 if name.endswith("narrow") else 1.0
  formula = eigen_fergus_params(shape[1], shape[2], channels, width)
  counts = param_counts(get_model(name, **kwargs), shape)
  assert counts["params"] == formula and counts["state"] == 0
  if expected is not None:
    assert formula == expected


def test_full_size_output_shapes():
  model = get_model("eigen_fergus", tasks=("semantic", "depth", "normals"))
  x = jax.ShapeDtypeStruct((2, 240, 320, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert {k: v.shape for k, v in out.items()} == {
      "depth": (2, 240, 320), "normals": (2, 240, 320, 3), "semantic": (2, 240, 320, 40)}


def test_narrow_forward_and_scale2_intermediates():
  model = get_model("eigen_fergus_narrow", tasks=("normals", "semantic"), num_classes=5)
  x = jax.random.uniform(jax.random.key(1), (2, 48, 64, 3))
  out, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
      random_variables(model, x.shape), x)
  assert set(out) == {"normals", "semantic"}
  assert out["normals"].shape == (2, 48, 64, 3) and out["semantic"].shape == (2, 48, 64, 5)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in out.values())
  inter = state["intermediates"]
  assert inter["normals_scale2"][0].shape == (2, 12, 16, 3)      # scale 2 predicts at 1/4
  assert inter["semantic_scale2"][0].shape == (2, 12, 16, 5)


def test_task_subset_changes_only_the_task_stacks():
  shape = (1, 64, 64, 3)
  one = jax.eval_shape(lambda x: get_model("eigen_fergus_narrow", tasks=("depth",)).init(
      jax.random.key(0), x), jax.ShapeDtypeStruct(shape, jnp.float32))["params"]
  two = jax.eval_shape(lambda x: get_model("eigen_fergus_narrow", tasks=("depth", "normals")).init(
      jax.random.key(0), x), jax.ShapeDtypeStruct(shape, jnp.float32))["params"]
  shared = {k for k in one if not k.startswith("depth_")}
  assert shared == {k for k in two if not k.startswith(("depth_", "normals_"))}
  assert {k for k in two if k.startswith("normals_")} == {
      "normals_scale2_conv2", "normals_scale2_conv3", "normals_scale2_conv4", "normals_scale2_conv5",
      "normals_scale3_conv2", "normals_scale3_conv3", "normals_scale3_conv4"}


def test_bad_input():
  x = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="tasks: expected a non-empty subset"):
    get_model("eigen_fergus_narrow", tasks=("depth", "colorization")).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="tasks: expected a non-empty subset"):
    get_model("eigen_fergus_narrow", tasks=()).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="images: expected height and width divisible by 16"):
    get_model("eigen_fergus_narrow").init(jax.random.key(0), jnp.zeros((1, 40, 64, 3)))
  with pytest.raises(ValueError, match="images: expected a rank-4"):
    get_model("eigen_fergus_narrow").init(jax.random.key(0), jnp.zeros((64, 64, 3)))


def tiny_batch(size=32, seed=0):
  """Quadrants bright or dark (checkerboard and its inverse); each label has its own depth and normal."""
  rng = np.random.default_rng(seed)
  checker = np.array([[1, 0], [0, 1]])
  labels = np.repeat(np.repeat(np.stack([checker, 1 - checker]), size // 2, 1), size // 2, 2)
  images = np.where(labels[..., None] == 1, 0.7, 0.3) + 0.1 * rng.normal(size=labels.shape + (3,))
  log_depth = np.where(labels == 1, np.log(2.0), np.log(5.0))
  normals = np.where(labels[..., None] == 1, [0.0, 0.0, 1.0], [0.0, -0.6, 0.8])
  return (jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), jnp.asarray(log_depth, jnp.float32),
          jnp.asarray(normals, jnp.float32))


@pytest.mark.slow
def test_narrow_model_learns_a_tiny_batch():
  """30 Adam steps on one batch: log-depth L2 + (1 - cosine) of normals + cross-entropy all fall."""
  images, labels, log_depth, normals = tiny_batch()
  model = get_model("eigen_fergus_narrow", tasks=("depth", "normals", "semantic"), num_classes=2,
                    dropout_rate=0.0)
  params = jax.jit(lambda x: model.init(FAST_KEY(), x))(images)["params"]
  opt = optax.adam(1e-3)

  def losses(p):
    out = model.apply({"params": p}, images, train=True)
    unit = out["normals"] / jnp.linalg.norm(out["normals"], axis=-1, keepdims=True).clip(1e-6)
    return jnp.stack([jnp.mean(jnp.square(out["depth"] - log_depth)),
                      jnp.mean(1.0 - jnp.sum(unit * normals, -1)),
                      optax.softmax_cross_entropy_with_integer_labels(out["semantic"], labels).mean()])

  @jax.jit
  def step(p, s):
    def total(p):
      parts = losses(p)
      return jnp.sum(parts), parts
    (_, parts), g = jax.value_and_grad(total, has_aux=True)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, parts

  state = opt.init(params)
  history = []
  for _ in range(30):
    params, state, parts = step(params, state)
    history.append(np.asarray(parts))
  history = np.array(history)
  assert np.isfinite(history).all()
  first, last = history[0], history[-5:].min(0)
  assert (last < 0.5 * first).all(), history[[0, -1]]
