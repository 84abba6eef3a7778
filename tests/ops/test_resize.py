"""resize_bilinear against PyTorch's interpolate and a float64 loop; bilinear_upsample_kernel against
FCN's formula, a float64 transposed conv and PyTorch's conv_transpose2d."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from dense_jax.ops.resize import bilinear_upsample_kernel, resize_bilinear

# (H, W, H_out, W_out): up, down, mixed, odd, to/from a single pixel.
SIZES = [(4, 4, 8, 8), (5, 7, 11, 3), (9, 6, 4, 13), (7, 7, 3, 5), (1, 3, 5, 1), (3, 2, 1, 1),
         (6, 5, 6, 5)]


def _ref_resize(x, out_h, out_w, align_corners):
  """Per-pixel float64 bilinear resize with PyTorch's source-index rule (no antialias)."""
  n, h, w, c = x.shape

  def src(o, out_size, in_size):
    if align_corners:
      return 0.0 if out_size == 1 else o * (in_size - 1) / (out_size - 1)
    return max((o + 0.5) * in_size / out_size - 0.5, 0.0)

  y = np.zeros((n, out_h, out_w, c))
  for oi in range(out_h):
    r = src(oi, out_h, h)
    r0 = int(np.floor(r))
    r1, lr = min(r0 + 1, h - 1), r - r0
    for oj in range(out_w):
      s = src(oj, out_w, w)
      s0 = int(np.floor(s))
      s1, ls = min(s0 + 1, w - 1), s - s0
      y[:, oi, oj] = ((1 - lr) * ((1 - ls) * x[:, r0, s0] + ls * x[:, r0, s1])
                      + lr * ((1 - ls) * x[:, r1, s0] + ls * x[:, r1, s1]))
  return y


def _fcn_upsampling_weight(channels, kernel_size):
  """FCN's `get_upsampling_weight` (Long et al.), written as in their code: ogrid, OIHW float64."""
  factor = (kernel_size + 1) // 2
  center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  og = np.ogrid[:kernel_size, :kernel_size]
  filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
  weight = np.zeros((channels, channels, kernel_size, kernel_size), np.float64)
  weight[range(channels), range(channels), :, :] = filt
  return weight


def _ref_conv_transpose(x, w_hwio, stride, padding):
  """float64 transposed conv by its definition: out[i·s - p + a] += x[i] · w[a] (NHWC, HWIO)."""
  n, h, wd, _ = x.shape
  k = w_hwio.shape[0]
  full = np.zeros((n, (h - 1) * stride + k, (wd - 1) * stride + k, w_hwio.shape[3]))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
          "nc,abcd->nabd", x[:, i, j], w_hwio)
  out_h, out_w = (h - 1) * stride - 2 * padding + k, (wd - 1) * stride - 2 * padding + k
  return full[:, padding:padding + out_h, padding:padding + out_w]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("h,w,oh,ow", SIZES)
def test_resize_matches_float64_reference(h, w, oh, ow, align_corners):
  x = np.random.default_rng(h * 100 + oh).standard_normal((2, h, w, 3))
  got = resize_bilinear(jnp.asarray(x, jnp.float32), (oh, ow), align_corners)
  np.testing.assert_allclose(got, _ref_resize(x, oh, ow, align_corners), rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("h,w,oh,ow", SIZES)
def test_resize_matches_torch_forward_and_gradient(h, w, oh, ow, align_corners):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(7 * h + ow)
  x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
  ct = rng.standard_normal((2, oh, ow, 3)).astype(np.float32)
  xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
  yt = torch.nn.functional.interpolate(xt, size=(oh, ow), mode="bilinear", align_corners=align_corners)
  yt.backward(torch.tensor(ct).permute(0, 3, 1, 2))
  y, vjp = jax.vjp(lambda v: resize_bilinear(v, (oh, ow), align_corners), jnp.asarray(x))
  np.testing.assert_allclose(y, yt.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(vjp(jnp.asarray(ct))[0], xt.grad.permute(0, 2, 3, 1).numpy(),
                             rtol=1e-5, atol=1e-5)


def test_resize_differs_from_antialiased_jax_image_resize_when_downsampling():
  # Guards the reason this op exists: jax.image.resize antialiases, PyTorch does not.
  x = np.random.default_rng(0).standard_normal((1, 12, 12, 1)).astype(np.float32)
  ours = resize_bilinear(jnp.asarray(x), 4)
  np.testing.assert_allclose(ours, _ref_resize(x.astype(np.float64), 4, 4, False), atol=1e-5)
  assert np.abs(ours - jax.image.resize(x, (1, 4, 4, 1), "bilinear")).max() > 1e-2


def test_same_size_is_identity_and_gradients_are_numerically_right():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 5, 4, 2)), jnp.float32)
  np.testing.assert_allclose(resize_bilinear(x, (5, 4)), x, atol=1e-6)
  with jax.enable_x64(True):
    x64 = jnp.asarray(np.random.default_rng(2).standard_normal((1, 3, 4, 2)))
    for ac in (False, True):
      jtu.check_grads(lambda v, ac=ac: resize_bilinear(v, (5, 2), ac), (x64,), order=2,
                      modes=("fwd", "rev"))


def test_low_precision_keeps_dtype_and_jit_vmap():
  x = jnp.ones((2, 3, 3, 1), jnp.bfloat16)
  assert resize_bilinear(x, 6).dtype == jnp.bfloat16
  xs = jnp.asarray(np.random.default_rng(3).standard_normal((3, 1, 4, 4, 2)), jnp.float32)
  batched = jax.jit(jax.vmap(lambda v: resize_bilinear(v, (7, 3))))(xs)
  np.testing.assert_allclose(batched[1], resize_bilinear(xs[1], (7, 3)), atol=1e-6)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8, 32])
def test_upsample_kernel_is_fcn_formula_diagonal_in_channels(factor):
  k = 2 * factor - factor % 2
  w = np.asarray(bilinear_upsample_kernel(factor, 3, jnp.float32))
  assert w.shape == (k, k, 3, 3)
  ref = _fcn_upsampling_weight(3, k).transpose(2, 3, 1, 0)  # OIHW -> HWIO (diagonal: I/O symmetric)
  np.testing.assert_allclose(w, ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_upsample_kernel_transposed_conv_is_bilinear_resize_float64(factor):
  x = np.random.default_rng(factor).standard_normal((1, 5, 4, 2))
  w = np.asarray(bilinear_upsample_kernel(factor, 2, jnp.float32), np.float64)
  ref = _ref_resize(x, 5 * factor, 4 * factor, False)
  up = _ref_conv_transpose(x, w, factor, factor // 2)
  assert up.shape == ref.shape
  b = factor // 2  # zero padding vs edge repetition differs only in this border
  np.testing.assert_allclose(up[:, b:up.shape[1] - b, b:up.shape[2] - b], ref[:, b:ref.shape[1] - b,
                                                                               b:ref.shape[2] - b], atol=1e-6)
  xe = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  np.testing.assert_allclose(_ref_conv_transpose(xe, w, factor, factor // 2 + factor), ref, atol=1e-6)
  np.testing.assert_allclose(resize_bilinear(jnp.asarray(x, jnp.float32), (5 * factor, 4 * factor)),
                             ref, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("factor", [2, 3, 8, 32])
def test_upsample_kernel_with_torch_conv_transpose2d(factor):
  """FCN's upsamplers (kernel 2f, stride f) through PyTorch's transposed conv equal our resize."""
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(10 + factor).standard_normal((2, 3, 4, 2)).astype(np.float32)
  w = np.asarray(bilinear_upsample_kernel(factor, 2))
  xe = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  up = torch.nn.functional.conv_transpose2d(
      torch.tensor(xe).permute(0, 3, 1, 2), torch.tensor(w).permute(2, 3, 0, 1), stride=factor,
      padding=factor // 2 + factor).permute(0, 2, 3, 1).numpy()
  ref = resize_bilinear(jnp.asarray(x), (3 * factor, 4 * factor))
  np.testing.assert_allclose(up, ref, rtol=1e-5, atol=1e-5)
  tw = torch.tensor(_fcn_upsampling_weight(2, w.shape[0]), dtype=torch.float32)
  np.testing.assert_allclose(torch.tensor(w).permute(2, 3, 0, 1).numpy(), tw.numpy(), atol=1e-7)


@pytest.mark.parametrize("call,match", [
    (lambda: resize_bilinear(jnp.ones((4, 4, 1)), 2), "x: expected a rank-4"),
    (lambda: resize_bilinear(jnp.ones((1, 4, 4, 1)), 0), "size: expected values >= 1"),
    (lambda: resize_bilinear(jnp.ones((1, 4, 4, 1)), (2, 2, 2)), "size: expected an int or a pair"),
    (lambda: resize_bilinear(jnp.ones((1, 4, 4, 1), jnp.int32), 2), "x: expected a floating dtype"),
    (lambda: bilinear_upsample_kernel(0, 3), "factor: expected an int >= 1, got 0"),
    (lambda: bilinear_upsample_kernel(2.0, 3), "factor: expected an int >= 1"),
    (lambda: bilinear_upsample_kernel(2, 0), "channels: expected an int >= 1, got 0"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
