"""Conv, ConvTranspose, BilinearUpsample: parameter shapes and counts, equality with the ops and with
PyTorch modules carrying the same weights, bilinear initialisation, learnable vs fixed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.nn import BilinearUpsample, Conv, ConvTranspose
from dense_jax.ops.conv import conv2d, conv_transpose2d
from dense_jax.ops.resize import bilinear_upsample_kernel, resize_bilinear


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _count(params):
  return sum(p.size for p in jax.tree_util.tree_leaves(params))


def test_conv_params_and_same_padding_keeps_resolution_at_any_rate():
  x = _x((2, 9, 10, 4))
  for rate in (1, 2, 4):
    m = Conv(6, 3, dilation=rate)
    params = jax.jit(m.init)(jax.random.PRNGKey(0), x)
    assert params["params"]["kernel"].shape == (3, 3, 4, 6)
    assert _count(params) == 3 * 3 * 4 * 6 + 6
    y = jax.jit(m.apply)(params, x)
    assert y.shape == (2, 9, 10, 6)
    want = conv2d(x, params["params"]["kernel"], padding=rate, dilation=rate) + params["params"]["bias"]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_conv_strided_grouped_no_bias():
  x = _x((1, 8, 8, 6))
  m = Conv(4, (3, 1), stride=2, feature_group_count=2, use_bias=False)
  params = jax.jit(m.init)(jax.random.PRNGKey(1), x)
  assert jax.tree_util.tree_map(jnp.shape, params) == {"params": {"kernel": (3, 1, 3, 4)}}
  assert jax.jit(m.apply)(params, x).shape == (1, 4, 4, 4)
  with pytest.raises(ValueError, match="feature_group_count: expected a divisor of the input channels 6"):
    Conv(4, feature_group_count=4).init(jax.random.PRNGKey(0), x)


def test_conv_transpose_doubles_resolution_and_equals_op():
  x = _x((2, 5, 7, 3))
  m = ConvTranspose(2)  # kernel 4, stride 2, padding 1
  params = jax.jit(m.init)(jax.random.PRNGKey(0), x)
  assert params["params"]["kernel"].shape == (4, 4, 3, 2)
  assert _count(params) == 4 * 4 * 3 * 2 + 2
  y = jax.jit(m.apply)(params, x)
  assert y.shape == (2, 10, 14, 2)
  want = conv_transpose2d(x, params["params"]["kernel"], stride=2, padding=1, method="reference")
  np.testing.assert_allclose(y, want + params["params"]["bias"], rtol=1e-5, atol=1e-5)
  # output_padding and dilation pass through.
  m = ConvTranspose(2, kernel_size=3, stride=2, padding=1, output_padding=1, dilation=1, use_bias=False)
  assert jax.jit(m.apply)(jax.jit(m.init)(jax.random.PRNGKey(0), x), x).shape == (2, 10, 14, 2)


@pytest.mark.torch
def test_modules_match_torch_modules_with_the_same_weights():
  torch = pytest.importorskip("torch")
  x = _x((2, 6, 5, 4), seed=3)
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
  conv_t = torch.nn.Conv2d(4, 3, 3, stride=2, padding=2, dilation=2)
  conv = Conv(3, 3, stride=2, padding=2, dilation=2)
  params = {"params": {"kernel": jnp.asarray(conv_t.weight.detach().numpy().transpose(2, 3, 1, 0)),
                       "bias": jnp.asarray(conv_t.bias.detach().numpy())}}
  np.testing.assert_allclose(jax.jit(conv.apply)(params, x),
                             conv_t(xt).detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
  tconv_t = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
  tconv = ConvTranspose(3, kernel_size=3, stride=2, padding=1, output_padding=1)
  params = {"params": {"kernel": jnp.asarray(tconv_t.weight.detach().numpy().transpose(2, 3, 0, 1)),
                       "bias": jnp.asarray(tconv_t.bias.detach().numpy())}}
  np.testing.assert_allclose(jax.jit(tconv.apply)(params, x),
                             tconv_t(xt).detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_upsample_starts_as_bilinear_interpolation(factor):
  x = _x((1, 5, 6, 2), seed=factor)
  m = BilinearUpsample(factor)
  params = jax.jit(m.init)(jax.random.PRNGKey(0), x)
  k = 2 * factor - factor % 2
  np.testing.assert_array_equal(params["params"]["kernel"], bilinear_upsample_kernel(factor, 2))
  assert params["params"]["kernel"].shape == (k, k, 2, 2)
  y = jax.jit(m.apply)(params, x)
  assert y.shape == (1, 5 * factor, 6 * factor, 2)
  # Equal to bilinear resizing away from the border of factor // 2 pixels.
  ref = resize_bilinear(x, (5 * factor, 6 * factor))
  b = factor // 2 + factor
  np.testing.assert_allclose(y[:, b:-b, b:-b], ref[:, b:-b, b:-b], rtol=1e-5, atol=1e-5)
  # A constant image stays constant inside.
  ones = jax.jit(m.apply)(params, jnp.ones((1, 4, 4, 2)))
  np.testing.assert_allclose(ones[:, b:-b, b:-b], 1.0, rtol=1e-6)


def test_bilinear_upsample_learnable_vs_fixed():
  x = _x((2, 4, 4, 3))
  target = _x((2, 8, 8, 3), seed=1)
  learn = BilinearUpsample(2, use_bias=True)
  params = jax.jit(learn.init)(jax.random.PRNGKey(0), x)
  assert _count(params) == 4 * 4 * 3 * 3 + 3
  loss = lambda p: jnp.mean((jax.jit(learn.apply)(p, x) - target) ** 2)
  grads = jax.grad(loss)(params)
  assert float(jnp.abs(grads["params"]["kernel"]).sum()) > 0  # the kernel trains
  stepped = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads)
  assert loss(stepped) < loss(params)
  fixed = BilinearUpsample(2, learnable=False)
  variables = jax.jit(fixed.init)(jax.random.PRNGKey(0), x)
  assert _count(variables) == 0
  np.testing.assert_allclose(jax.jit(fixed.apply)(variables, x),
                             BilinearUpsample(2).apply({"params": {"kernel": bilinear_upsample_kernel(2, 3)}}, x),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="use_bias: expected False"):
    BilinearUpsample(2, learnable=False, use_bias=True).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="factor: expected an int >= 1, got 0"):
    BilinearUpsample(0).init(jax.random.PRNGKey(0), x)


def test_modules_jit_and_bfloat16():
  x = _x((2, 8, 8, 4))
  for m in (Conv(4, 3, stride=2, dtype=jnp.bfloat16), ConvTranspose(4, dtype=jnp.bfloat16),
            BilinearUpsample(2, dtype=jnp.bfloat16)):
    params = jax.jit(m.init)(jax.random.PRNGKey(0), x)
    y = jax.jit(m.apply)(params, x)
    assert y.dtype == jnp.bfloat16
    assert jax.tree_util.tree_leaves(params)[0].dtype == jnp.float32
