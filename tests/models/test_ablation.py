"""`stride_ablation` with task heads: semantic alone keeps its parameters (names, shapes, counts), depth
and normals heads give the `_dense_tasks` outputs at every output stride, bad tasks are refused, and the
depth + normals variant learns a tiny batch through the tasks' own losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model
from dense_jax.tasks import build as tasks_build, get_task

STEPS = 60
FAST_KEY = lambda: jax.random.key(0, impl="unsafe_rbg")  # Compiles much faster than threefry.


def _shapes(model, size=64, batch=2):
  x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)
  return out, variables["params"]


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf.shape
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("output_stride,expected", [(32, 640_770), (16, 391_938), (8, 329_730)])
def test_semantic_default_parameters_are_unchanged(output_stride, expected):
  """The quick dilation sweep's models (docs/results.md's table): same counts, same top-level names,
  and `tasks=('semantic',)` spelled out is the default itself."""
  default = get_model("stride_ablation", output_stride=output_stride)
  explicit = get_model("stride_ablation", output_stride=output_stride, tasks=("semantic",))
  out, params = _shapes(default)
  assert {k: v.shape for k, v in out.items()} == {"semantic": (2, 64, 64, 9)}
  assert set(params) == {"backbone", "classifier", "upsample"}
  assert param_counts(default, (1, 64, 64, 3))["params"] == expected
  assert _flat(_shapes(explicit)[1]) == _flat(params)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("upsample", ["learned", "bilinear"])
def test_depth_normals_heads_output_the_task_shapes(output_stride, upsample):
  model = get_model("stride_ablation", output_stride=output_stride, upsample=upsample,
                    tasks=("depth", "normals"))
  out, params = _shapes(model)
  assert {k: v.shape for k, v in out.items()} == {"depth": (2, 64, 64), "normals": (2, 64, 64, 3)}
  heads = {"depth_head", "normals_head"} | ({"depth_upsample", "normals_upsample"} if upsample == "learned" else set())
  assert set(params) == {"backbone"} | heads
  # The same backbone as the semantic model's, parameter for parameter; heads of 1 and 3 channels.
  semantic = _shapes(get_model("stride_ablation", output_stride=output_stride, upsample=upsample))[1]
  assert _flat(params["backbone"]) == _flat(semantic["backbone"])
  assert params["depth_head"]["kernel"].shape == (1, 1, 128, 1)
  assert params["normals_head"]["kernel"].shape == (1, 1, 128, 3)
  if upsample == "learned":
    k = 2 * output_stride
    assert params["normals_upsample"]["kernel"].shape == (k, k, 3, 3)


def test_all_three_heads_together():
  out, _ = _shapes(get_model("stride_ablation", output_stride=16, tasks=("semantic", "depth", "normals"),
                             num_classes=5))
  assert {k: v.shape for k, v in out.items()} == {"semantic": (2, 64, 64, 5), "depth": (2, 64, 64),
                                                 "normals": (2, 64, 64, 3)}


@pytest.mark.parametrize("tasks", [("colorization",), ("depth", "depth"), ()])
def test_bad_tasks_are_refused(tasks):
  model = get_model("stride_ablation", tasks=tasks)
  with pytest.raises(ValueError, match="tasks: expected a non-empty subset of \\('semantic', 'depth', 'normals'\\)"):
    _shapes(model)


def _tiny_scene(n=4, size=32):
  """Left half a near wall facing the camera, right half a far floor tilted up; the image shows which."""
  cols = np.arange(size) < size // 2
  depth = np.where(cols, 2.0, 8.0)[None, None, :].repeat(size, 1).repeat(n, 0).astype(np.float32)
  tilted = np.array([0.0, -np.sqrt(0.5), np.sqrt(0.5)], np.float32)
  normals = np.where(cols[:, None], np.array([0.0, 0.0, 1.0], np.float32), tilted)
  normals = np.broadcast_to(normals, (n, size, size, 3)).astype(np.float32)
  rng = np.random.default_rng(0)
  image = np.where(cols[None, None, :, None], 0.8, 0.2) + 0.05 * rng.standard_normal((n, size, size, 3))
  return {"image": image.astype(np.float32), "depth": depth, "normals": np.ascontiguousarray(normals)}


@pytest.mark.slow
def test_depth_normals_variant_learns_a_tiny_batch():
  """60 Adam steps on one batch with the depth and normals tasks' losses (scale-invariant log +
  gradient matching; negative cosine): both fall, the normals' mean angle from ~120° to below 40°
  (measured: depth loss 32.9 -> 0.12, normals loss 0.44 -> -0.87, angle 120° -> 25°)."""
  batch = _tiny_scene()
  model = get_model("stride_ablation", output_stride=8, width=0.25, tasks=("depth", "normals"))
  tasks = {"depth": get_task("depth", name="depth"), "normals": get_task("normals", name="normals")}
  variables = jax.jit(lambda x: model.init(FAST_KEY(), x))(batch["image"])
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, stats, opt_state):
    def loss_fn(p):
      out, new = model.apply({"params": p, "batch_stats": stats}, batch["image"], train=True,
                             mutable=["batch_stats"])
      loss, metrics = tasks_build.total_loss(tasks, out, batch)
      return loss, (new["batch_stats"], metrics, out)
    (_, (stats, metrics, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    unit = out["normals"] / jnp.linalg.norm(out["normals"], axis=-1, keepdims=True).clip(1e-6)
    angle = jnp.degrees(jnp.arccos(jnp.clip(jnp.sum(unit * batch["normals"], -1), -1, 1))).mean()
    return optax.apply_updates(params, updates), stats, opt_state, metrics, angle

  params, stats = variables["params"], variables["batch_stats"]
  opt_state = opt.init(params)
  history = []
  for _ in range(STEPS):
    params, stats, opt_state, metrics, angle = step(params, stats, opt_state)
    history.append((float(metrics["loss/depth"]), float(metrics["loss/normals"]), float(angle)))
  history = np.array(history)
  assert np.isfinite(history).all()
  first, last = history[0], history[-5:].min(0)
  assert last[0] < 0.5 * first[0], history[[0, -1]]          # depth loss (>= 0) halves at least
  assert last[1] < -0.7, history[[0, -1]]                     # normals: -mean cos, in [-1, 1]
  assert last[2] < 40.0, history[[0, -1]]                     # mean angle, degrees
