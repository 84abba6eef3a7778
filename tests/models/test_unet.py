"""U-Net: output shapes of both forms, parameter counts as named cases (against the published counts
and a PyTorch build of the same net), parity with PyTorch, bad input, and a short run that learns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dense_jax.models import get_model, unet


def _abstract_init(model, shape):
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                        jnp.zeros(shape, jnp.float32))


def _num_params(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name,kwargs,expected", [
    # The paper's network: valid 3x3 convs with bias, 64..1024 channels, 2x2 up-convs, 2 classes.
    # Layer by layer: contracting 18,843,200 + expanding 12,188,480 + 1x1 head 130.
    ("paper_valid_2_classes", dict(num_classes=2), 31_031_810),
    # milesial/Pytorch-UNet (padded, batch norm, bias-free convs, n_classes=1): its published summary
    # reports 31,037,633 parameters.
    ("padded_batchnorm_1_class", dict(num_classes=1, padding="same", norm="batch"), 31_037_633),
    # Bilinear up path: each 2x2 up-conv (4·Cin·Cout + Cout weights) becomes a 1x1 conv (Cin·Cout + Cout).
    ("padded_batchnorm_bilinear", dict(num_classes=1, padding="same", norm="batch", up="bilinear"),
     31_037_633 - 3 * sum((64 * 2 ** l) * (64 * 2 ** (l + 1)) for l in range(4))),
])
def test_param_counts(name, kwargs, expected):
  del name
  model = get_model("unet", **kwargs)
  size = 572 if kwargs.get("padding", "valid") == "valid" else 64
  assert _num_params(_abstract_init(model, (1, size, size, 3))) == expected


def test_valid_form_shapes():
  model = get_model("unet", num_classes=2)
  out = jax.eval_shape(
      lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 572, 572, 3)))[0])["semantic"]
  assert out.shape == (1, 388, 388, 2)
  assert unet.valid_output_size(572, 4) == 388
  assert 572 in unet.valid_sizes(4) and 570 not in unet.valid_sizes(4)


@pytest.mark.parametrize("up", ["transposed", "bilinear"])
def test_same_form_keeps_size(up):
  model = get_model("unet", num_classes=5, width=4, depth=3, padding="same", up=up, norm="batch")
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 48, 40, 3)))[0])["semantic"]
  assert out.shape == (2, 48, 40, 5)


@pytest.mark.parametrize("kwargs,shape,match", [
    (dict(padding="same"), (1, 60, 64, 3), "divisible by 2\\^depth"),
    (dict(padding="valid"), (1, 570, 570, 3), "nearby valid sides"),
    (dict(padding="full"), (1, 64, 64, 3), "padding"),
    (dict(up="nearest"), (1, 572, 572, 3), "up"),
    (dict(), (572, 572, 3), "rank-4"),
])
def test_bad_input(kwargs, shape, match):
  model = get_model("unet", **kwargs)
  with pytest.raises(ValueError, match=match):
    _abstract_init(model, shape)


def test_unknown_model_lists_known():
  with pytest.raises(ValueError, match="unet"):
    get_model("u-net")


@pytest.mark.torch
@pytest.mark.parametrize("padding,up,norm,size", [
    ("same", "transposed", "batch", 32), ("valid", "transposed", None, 44), ("same", "bilinear", None, 16)])
def test_matches_pytorch(padding, up, norm, size):
  torch = pytest.importorskip("torch")
  from experiments.benchmarks.torch_unet import TorchUNet, load_flax_params
  kwargs = dict(num_classes=3, width=4, depth=2, padding=padding, up=up, norm=norm)
  model = get_model("unet", **kwargs)
  x = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(1), jnp.asarray(x))
  if "batch_stats" in variables:  # non-trivial running statistics, so eval mode is really checked
    variables = dict(variables, batch_stats=jax.tree.map(
        lambda v: v + 0.1 * jnp.arange(v.size, dtype=v.dtype) / v.size, variables["batch_stats"]))
  ours = np.asarray(model.apply(variables, jnp.asarray(x), train=False)["semantic"])
  net = TorchUNet(**kwargs).eval()
  assert sum(p.numel() for p in net.parameters()) == _num_params(variables)
  load_flax_params(net, jax.device_get(variables))
  with torch.no_grad():
    theirs = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_learns():
  """A tiny U-Net separates bright squares from a noisy background in 60 Adam steps."""
  rng = np.random.default_rng(0)
  n, s = 8, 32
  labels = np.zeros((n, s, s), np.int32)
  for i in range(n):
    y, x = rng.integers(0, s - 10, 2)
    labels[i, y:y + 10, x:x + 10] = 1
  images = (0.3 * rng.normal(size=(n, s, s, 3)) + labels[..., None]).astype(np.float32)
  model = get_model("unet", num_classes=2, width=4, depth=2, padding="same", norm="batch")
  variables = model.init(jax.random.PRNGKey(0), images)
  tx = optax.adam(1e-2)
  params, stats = variables["params"], variables["batch_stats"]
  opt = tx.init(params)

  @jax.jit
  def step(params, stats, opt):
    def loss_fn(p):
      out, new = model.apply({"params": p, "batch_stats": stats}, images, train=True, mutable=["batch_stats"])
      logits = out["semantic"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), stats, opt, loss

  first = None
  for _ in range(60):
    params, stats, opt, loss = step(params, stats, opt)
    first = float(loss) if first is None else first
  assert float(loss) < 0.25 * first
  pred = model.apply({"params": params, "batch_stats": stats}, images, train=False)["semantic"].argmax(-1)
  assert np.mean(np.asarray(pred) == labels) > 0.95
