"""conv2d and conv_transpose2d: the lecture's example, float64 NumPy definitions (values and VJPs),
PyTorch parity, numerical gradients, jit/vmap, every fast form equal to the reference form, errors."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from dense_jax.ops import conv as conv_lib
from dense_jax.ops._hlo import has_scatter
from dense_jax.ops.conv import conv2d, conv_transpose2d

METHODS = ("reference", "phase")


# ------------------------------------------------------------------------------------------------
# float64 NumPy definitions (scatter-add / gather loops over kernel taps) and their VJPs
# ------------------------------------------------------------------------------------------------


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def _tap_slices(a, b, size_hw, stride, dilation):
  """Rows/columns `i·s + a·d` for `i < size`: the pixels that tap (a, b) touches."""
  (h, w), (sh, sw), (dh, dw) = size_hw, stride, dilation
  return (slice(None), slice(a * dh, a * dh + (h - 1) * sh + 1, sh),
          slice(b * dw, b * dw + (w - 1) * sw + 1, sw))


def np_conv_transpose2d(x, w, g=None, *, stride, padding=0, output_padding=0, dilation=1):
  """Definition: full[i·s + a·d] += x[i] @ w[a]; y = full cropped by `padding` (output_padding extends
  the bottom/right). With a cotangent `g`, also returns (dx, dw) = the VJP, gathering from g."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  s, p, op, d = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
  n, h, wd, _ = x.shape
  kh, kw, _, co = w.shape
  full_hw = [(m - 1) * si + di * (k - 1) + 1 + o for m, si, di, k, o in zip((h, wd), s, d, (kh, kw), op)]
  full = np.zeros((n, *full_hw, co))
  for a in range(kh):
    for b in range(kw):
      full[_tap_slices(a, b, (h, wd), s, d)] += x @ w[a, b]
  y = full[:, p[0]:full_hw[0] - p[0], p[1]:full_hw[1] - p[1]]
  if g is None:
    return y
  gfull = np.zeros_like(full)
  gfull[:, p[0]:full_hw[0] - p[0], p[1]:full_hw[1] - p[1]] = g
  dx, dw = np.zeros_like(x), np.zeros_like(w)
  for a in range(kh):
    for b in range(kw):
      ga = gfull[_tap_slices(a, b, (h, wd), s, d)]
      dx += ga @ w[a, b].T
      dw[a, b] = np.einsum("nhwc,nhwo->co", x, ga)
  return y, dx, dw


def np_conv2d(x, w, g=None, *, stride=1, pads=((0, 0), (0, 0)), dilation=1, groups=1):
  """Definition: y[o] = sum_a x_pad[o·s + a·d] @ w[a] (per channel group). With `g`, also (dx, dw)."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  s, d = _pair(stride), _pair(dilation)
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  kh, kw, cig, co = w.shape
  cog = co // groups
  out_hw = [(m - di * (k - 1) - 1) // si + 1 for m, di, k, si in zip(xp.shape[1:3], d, (kh, kw), s)]
  y = np.zeros((x.shape[0], *out_hw, co))
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for a in range(kh):
    for b in range(kw):
      sl = _tap_slices(a, b, out_hw, s, d)
      for j in range(groups):
        ci_, co_ = slice(j * cig, (j + 1) * cig), slice(j * cog, (j + 1) * cog)
        y[..., co_] += xp[sl][..., ci_] @ w[a, b][:, co_]
        if g is not None:
          dxp[(*sl, ci_)] += g[..., co_] @ w[a, b][:, co_].T
          dw[a, b][:, co_] = np.einsum("nhwc,nhwo->co", xp[sl][..., ci_], g[..., co_])
  if g is None:
    return y
  (lh, _), (lw, _) = pads
  return y, dxp[:, lh:lh + x.shape[1], lw:lw + x.shape[2]], dw


def _value_and_vjp(f, x, w, g):
  """Jitted (f(x, w), dx, dw) with cotangent g."""
  def run(x, w, g):
    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(g))
  return jax.jit(run)(jnp.asarray(x), jnp.asarray(w), jnp.asarray(g))


def _assert_close(got, want, scale=1.0):
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-4 * scale)


# ------------------------------------------------------------------------------------------------
# The lecture's example
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_lecture_3x3_stride2_pad1_takes_2x2_to_3x3(method):
  # Each input pixel stamps a 3x3 block of itself 2 pixels apart; overlaps add. By hand, with an
  # all-ones kernel the full 5x5 overlap-add ("actual output 5x5") is:
  full = np.array([[1, 1, 3, 2, 2],
                   [1, 1, 3, 2, 2],
                   [4, 4, 10, 6, 6],
                   [3, 3, 7, 4, 4],
                   [3, 3, 7, 4, 4]], np.float32)
  x = jnp.asarray([[1, 2], [3, 4]], jnp.float32)[None, :, :, None]
  ones = jnp.ones((3, 3, 1, 1), jnp.float32)
  np.testing.assert_array_equal(conv_transpose2d(x, ones, stride=2, method=method)[0, :, :, 0], full)
  y = conv_transpose2d(x, ones, stride=2, padding=1, method=method)
  assert y.shape == (1, 3, 3, 1)
  np.testing.assert_array_equal(y[0, :, :, 0], full[1:4, 1:4])
  # A kernel with distinct taps: the 3x3 output is the centre of the stamped overlap-add.
  w = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
  stamped = np.zeros((5, 5), np.float32)
  for i in range(2):
    for j in range(2):
      stamped[2 * i:2 * i + 3, 2 * j:2 * j + 3] += float(x[0, i, j, 0]) * w
  got = conv_transpose2d(x, jnp.asarray(w)[:, :, None, None], stride=2, padding=1, method=method)
  np.testing.assert_array_equal(got[0, :, :, 0], stamped[1:4, 1:4])


# ------------------------------------------------------------------------------------------------
# Transposed conv against the definition (always) and PyTorch (when installed)
# ------------------------------------------------------------------------------------------------

# (kernel, stride, padding, output_padding, dilation, (H, W), C_in, C_out)
_TCASES = [
    (3, 2, 1, 0, 1, (2, 2), 1, 1),             # the lecture
    (4, 2, 1, 0, 1, (5, 5), 3, 2),             # U-Net / DCGAN upsampler
    (3, 2, 1, 1, 1, (4, 3), 2, 3),             # output_padding: exact 2x
    (2, 2, 0, 0, 1, (3, 4), 2, 2),             # kernel == stride: no overlap
    (4, 2, 1, 0, 1, (1, 1), 2, 2),             # a single pixel
    (16, 8, 4, 0, 1, (3, 2), 2, 2),            # FCN x8 (kernel 2s)
    (16, 8, 0, 0, 1, (2, 2), 1, 2),            # FCN x8 as in FCN (crop done later)
    (32, 16, 8, 0, 1, (2, 1), 1, 1),           # FCN x16
    (64, 32, 16, 0, 1, (1, 2), 1, 1),          # FCN x32
    (5, 3, 2, 2, 1, (3, 4), 2, 1),             # odd kernel, stride 3
    (7, 4, 2, 3, 1, (2, 3), 1, 2),             # stride 4, largest output_padding
    (4, 4, 0, 1, 1, (3, 2), 2, 2),
    (3, 2, 4, 1, 1, (6, 6), 1, 1),             # padding beyond the kernel: crops input rows
    (3, 1, 0, 0, 1, (3, 4), 2, 2),             # stride 1 ("full" conv)
    (3, 1, 2, 0, 1, (4, 4), 2, 1),             # stride 1, padding > k - 1
    (3, 1, 1, 1, 2, (3, 4), 1, 2),             # stride 1, dilation 2, output_padding < dilation
    (3, 2, 1, 1, 2, (3, 3), 2, 2),             # dilated and strided
    (3, 2, 0, 2, 3, (2, 3), 1, 1),             # gcd(s, d) = 1, output_padding < dilation
    (3, 2, 0, 0, 4, (3, 2), 1, 2),             # d a multiple of s: odd phases empty
    (2, 3, 1, 0, 2, (3, 3), 2, 1),
    ((3, 2), (2, 3), (1, 0), (1, 2), (1, 1), (3, 4), 2, 3),  # per-axis everything
    ((5, 1), (3, 1), (2, 0), (0, 0), (2, 1), (2, 5), 1, 2),
    ((1, 4), (1, 2), (0, 1), (0, 1), (1, 1), (4, 3), 3, 1),
]


def _random_tcases(count, seed=0):
  rng = np.random.default_rng(seed)
  cases = []
  while len(cases) < count:
    k, s, d = (tuple(int(v) for v in rng.integers(1, hi, 2)) for hi in (6, 5, 3))
    p = tuple(int(v) for v in rng.integers(0, 4, 2))
    op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
    hw = tuple(int(v) for v in rng.integers(1, 6, 2))
    if all((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 >= 1
           for n, si, pi, di, ki, oi in zip(hw, s, p, d, k, op)):
      cases.append((k, s, p, op, d, hw, int(rng.integers(1, 4)), int(rng.integers(1, 4))))
  return cases


_ALL_TCASES = _TCASES + _random_tcases(8)


def _tcase_arrays(case, seed):
  k, s, p, op, d, (h, wd), ci, co = case
  kh, kw = _pair(k)
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((2, h, wd, ci)).astype(np.float32)
  w = rng.standard_normal((kh, kw, ci, co)).astype(np.float32)
  kwargs = dict(stride=s, padding=p, output_padding=op, dilation=d)
  y = np_conv_transpose2d(x, w, **kwargs)
  g = rng.standard_normal(y.shape).astype(np.float32)
  return x, w, g, kwargs


@functools.cache
def _jax_transposed(case, method):
  """(y, dx, dw) of `conv_transpose2d` on the case's arrays, computed once for both parity tests."""
  x, w, g, kwargs = _tcase_arrays(case, seed=len(str(case)))
  got = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, method=method, **kwargs), x, w, g)
  return tuple(np.asarray(a) for a in got)


@pytest.mark.parametrize("case", _ALL_TCASES, ids=str)
def test_conv_transpose2d_matches_definition(case):
  x, w, g, kwargs = _tcase_arrays(case, seed=len(str(case)))
  want = np_conv_transpose2d(x, w, g, **kwargs)
  for method in METHODS:
    got = _jax_transposed(case, method)
    assert got[0].shape == want[0].shape
    for a, b in zip(got, want):
      _assert_close(a, b, np.sqrt(w.size))


@pytest.mark.torch
@pytest.mark.parametrize("case", _ALL_TCASES, ids=str)
def test_conv_transpose2d_matches_torch(case):
  torch = pytest.importorskip("torch")
  x, w, g, kwargs = _tcase_arrays(case, seed=len(str(case)))
  xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(w.transpose(2, 3, 0, 1).copy(), dtype=torch.float64, requires_grad=True)
  yt = torch.nn.functional.conv_transpose2d(xt, wt, **kwargs)
  yt.backward(torch.tensor(g.transpose(0, 3, 1, 2).copy(), dtype=torch.float64))
  want = (yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
          wt.grad.numpy().transpose(2, 3, 0, 1))
  for method in METHODS:
    for a, b in zip(_jax_transposed(case, method), want):
      _assert_close(a, b, np.sqrt(w.size))


# ------------------------------------------------------------------------------------------------
# conv2d against the definition and PyTorch
# ------------------------------------------------------------------------------------------------

# (kernel, stride, padding ((lo, hi), (lo, hi)) or int, dilation, (H, W), C_in, C_out, groups)
_CCASES = [
    (3, 1, 1, 1, (5, 6), 2, 3, 1),
    (3, 2, 1, 1, (7, 8), 2, 3, 1),              # ResNet/U-Net downsampling
    (7, 2, 3, 1, (9, 8), 3, 2, 1),              # the ResNet stem
    (1, 2, 0, 1, (5, 4), 3, 2, 1),              # 1x1 projection shortcut (the matmul form)
    (1, 1, 0, 1, (4, 5), 3, 4, 1),              # 1x1 bottleneck conv (the matmul form)
    (1, 3, 0, 1, (7, 5), 2, 3, 1),              # 1x1, stride not dividing the size
    (1, 1, 1, 1, (3, 4), 2, 3, 1),              # 1x1 with padding (the lax conv)
    (3, 1, 2, 2, (6, 5), 2, 2, 1),              # dilated 'same'
    (3, 1, 4, 4, (5, 5), 1, 2, 1),              # rate larger than the image
    (3, 3, ((0, 2), (1, 0)), 1, (8, 7), 2, 1, 1),
    (4, 3, ((1, 2), (2, 1)), 1, (9, 10), 1, 2, 1),
    (3, 2, ((1, 1), (0, 1)), 2, (9, 8), 2, 2, 1),  # strided and dilated
    ((3, 2), (2, 3), ((1, 0), (0, 2)), (1, 2), (7, 9), 2, 3, 1),
    (3, 1, 1, 1, (4, 5), 4, 6, 2),              # grouped
    (3, 2, 1, 1, (6, 6), 4, 4, 4),              # depthwise, strided
    (5, 4, 2, 1, (11, 9), 1, 1, 1),
]


def _ccase_arrays(case, seed):
  k, s, pads, d, (h, wd), ci, co, groups = case
  kh, kw = _pair(k)
  if isinstance(pads, int):
    pads = ((pads, pads), (pads, pads))
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((2, h, wd, ci)).astype(np.float32)
  w = rng.standard_normal((kh, kw, ci // groups, co)).astype(np.float32)
  y = np_conv2d(x, w, stride=s, pads=pads, dilation=d, groups=groups)
  g = rng.standard_normal(y.shape).astype(np.float32)
  return x, w, g, pads, dict(stride=s, padding=pads, dilation=d, feature_group_count=groups)


@functools.cache
def _jax_conv(case):
  x, w, g, _, kwargs = _ccase_arrays(case, seed=len(str(case)))
  got = _value_and_vjp(lambda x, w: conv2d(x, w, **kwargs), x, w, g)
  return tuple(np.asarray(a) for a in got)


@pytest.mark.parametrize("case", _CCASES, ids=str)
def test_conv2d_matches_definition(case):
  x, w, g, pads, kwargs = _ccase_arrays(case, seed=len(str(case)))
  want = np_conv2d(x, w, g, stride=kwargs["stride"], pads=pads, dilation=kwargs["dilation"],
                   groups=kwargs["feature_group_count"])
  for a, b in zip(_jax_conv(case), want):
    _assert_close(a, b, np.sqrt(w.size))


@pytest.mark.torch
@pytest.mark.parametrize("case", _CCASES, ids=str)
def test_conv2d_matches_torch(case):
  torch = pytest.importorskip("torch")
  x, w, g, pads, kwargs = _ccase_arrays(case, seed=len(str(case)))
  (lh, hh), (lw, hw) = pads
  xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(w.transpose(3, 2, 0, 1).copy(), dtype=torch.float64, requires_grad=True)
  yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (lw, hw, lh, hh)), wt,
                                  stride=kwargs["stride"], dilation=kwargs["dilation"],
                                  groups=kwargs["feature_group_count"])
  yt.backward(torch.tensor(g.transpose(0, 3, 1, 2).copy(), dtype=torch.float64))
  want = (yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
          wt.grad.numpy().transpose(2, 3, 1, 0))
  for a, b in zip(_jax_conv(case), want):
    _assert_close(a, b, np.sqrt(w.size))


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (3, 1), (1, 3), (2, 2)])
def test_conv2d_same_and_valid_match_lax(stride, dilation):
  rng = np.random.default_rng(stride * 10 + dilation)
  x = jnp.asarray(rng.standard_normal((1, 9, 8, 2)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 2, 2, 3)), jnp.float32)
  for padding in ("SAME", "VALID", "same"):
    want = jax.lax.conv_general_dilated(x, w, (stride, stride), padding.upper(), rhs_dilation=(dilation,) * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert conv2d(x, w, stride=stride, padding="SAME").shape[1:3] == (-(-9 // stride), -(-8 // stride))


# ------------------------------------------------------------------------------------------------
# Fast forms == reference form; numerical gradients; jit / vmap; no inserted zeros, no scatter
# ------------------------------------------------------------------------------------------------


def test_phase_equals_reference_unet_upsampler_and_full_stride1():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 8, 16)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((4, 4, 16, 8)) * 0.1, jnp.float32)
  g = jnp.asarray(rng.standard_normal((2, 16, 16, 8)), jnp.float32)
  ref = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, method="reference"), x, w, g)
  fast = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, method="phase"), x, w, g)
  for a, b in zip(fast, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  # Stride 1, padding 0: the output is larger than the input, the phase form's hand-written VJP.
  g2 = jnp.asarray(rng.standard_normal((2, 11, 11, 8)), jnp.float32)
  ref = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, stride=1, method="reference"), x, w, g2)
  fast = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, stride=1, method="phase"), x, w, g2)
  for a, b in zip(fast, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_numerical_gradients(method):
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.standard_normal((1, 3, 2, 2)))
    w = jnp.asarray(rng.standard_normal((3, 4, 2, 3)))
    f = lambda x, w: conv_transpose2d(x, w, stride=(2, 3), padding=(1, 1), output_padding=(1, 0), method=method)
    jtu.check_grads(jax.jit(f), (x, w), order=1, modes=("rev",))
    x = jnp.asarray(rng.standard_normal((1, 7, 6, 2)))
    f = lambda x, w: conv_transpose2d(x, w, stride=1, dilation=(1, 2), method=method)
    jtu.check_grads(jax.jit(f), (x, w[:, :2]), order=1, modes=("rev",))
    # Second order (the hand-written VJPs are themselves differentiable), on a tiny case.
    f = lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, method=method)
    jtu.check_grads(jax.jit(f), (x[:, :2, :2], w[:2, :2, :, :1]), order=2, modes=("rev",))


def test_conv2d_numerical_gradients():
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.standard_normal((1, 7, 6, 2)))
    w = jnp.asarray(rng.standard_normal((3, 2, 2, 3)))
    f = lambda x, w: conv2d(x, w, stride=2, padding=((1, 0), (0, 1)), dilation=(1, 2))
    jtu.check_grads(jax.jit(f), (x, w), order=2, modes=("rev",))


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_batch_and_kernel(method):
  rng = np.random.default_rng(2)
  xs = jnp.asarray(rng.standard_normal((3, 2, 4, 4, 2)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((3, 4, 4, 2, 3)), jnp.float32)
  f = lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, method=method)
  loss = lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for in_axes in ((0, 0), (None, 0)):
    xa = xs if in_axes[0] == 0 else xs[0]
    wa = ws if in_axes[1] == 0 else ws[0]
    got = jax.jit(jax.vmap(jax.value_and_grad(loss, (0, 1)), in_axes))(xa, wa)
    one = jax.jit(jax.value_and_grad(loss, (0, 1)))
    for i in range(3):
      val, (gx, gw) = one(xs[i] if in_axes[0] == 0 else xa,
                                                       ws[i] if in_axes[1] == 0 else wa)
      np.testing.assert_allclose(got[0][i], val, rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(got[1][0][i] if in_axes[0] == 0 else gx, gx, rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(got[1][1][i] if in_axes[1] == 0 else gw, gw, rtol=1e-5, atol=1e-5)
  # Stride 1, padding 0 (the phase form's stride-1 VJP) and conv2d, batched.
  g = lambda x, w: jnp.sum(conv_transpose2d(x, w, stride=1, method=method) ** 2) + jnp.sum(conv2d(x, w) ** 2)
  got = jax.jit(jax.vmap(jax.grad(g, 1), (0, 0)))(xs, ws[:, :3, :3, :, :2])
  np.testing.assert_allclose(got[1], jax.jit(jax.grad(g, 1))(xs[1], ws[1, :3, :3, :, :2]), rtol=1e-5, atol=1e-4)


def test_auto_on_cpu_inserts_no_zeros_and_has_no_scatter():
  x = jnp.ones((1, 6, 6, 4), jnp.float32)
  w = jnp.ones((4, 4, 4, 2), jnp.float32)

  def fwd_bwd(method):
    def run(x, w):
      y, vjp = jax.vjp(lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, method=method), x, w)
      return y, vjp(jnp.ones_like(y))
    return jax.jit(run)

  def hlo(fn):
    return fn.lower(x, w).compile().as_text()
  assert "lhs_dilate" in hlo(fwd_bwd("reference"))  # the check can fail: the reference form inserts zeros
  assert not has_scatter(fwd_bwd("phase"), x, w)
  # 'auto' on CPU is the phase form: a `cond` between its finite-input path and the reference form
  # (kept for NaN/Inf inputs, see test_phase_propagates_nonfinite_like_reference); the path every
  # finite input takes inserts no zeros.
  conf = conv_lib._TransposeGeometry((2, 2), (1, 1), (0, 0), (1, 1))

  def finite_path(x, w):
    y = conv_lib._phase_forward(x, w, conf)
    return y, conv_lib._phase_vjp(conf, x, w, jnp.ones_like(y))
  assert "lhs_dilate" not in hlo(jax.jit(finite_path))
  auto = str(jax.make_jaxpr(fwd_bwd("auto"))(x, w))
  assert jax.default_backend() != "cpu" or auto.count("cond[") == 2  # forward and backward


# ------------------------------------------------------------------------------------------------
# conv2d's blocked weight gradient (the custom VJP) == jax.grad of the reference form
# ------------------------------------------------------------------------------------------------


def _random_ccases(count, seed):
  """(N, (H, W), C_in, C_out, kernel, stride, pads, dilation) with a valid output, shapes chosen so
  that the blocked weight gradient's loops see one and several blocks, remainder rows, several
  images per block."""
  rng = np.random.default_rng(seed)
  cases = []
  while len(cases) < count:
    k, s, d = (tuple(int(v) for v in rng.integers(1, hi, 2)) for hi in (5, 4, 4))
    pads = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
    hw = tuple(int(v) for v in rng.integers(1, 14, 2))
    if len(cases) % 4 == 0:  # a larger image: several row blocks and a remainder
      hw = (int(rng.integers(30, 70)), int(rng.integers(20, 40)))
    if all(n + lo + hi >= di * (ki - 1) + 1 for n, (lo, hi), di, ki in zip(hw, pads, d, k)):
      cases.append((int(rng.integers(1, 7)), hw, int(rng.integers(1, 6)), int(rng.integers(1, 6)), k, s, pads, d))
  return cases


def _conv_grads(case, dtype, method, x=None, g=None):
  """Jitted (y, dx, dw) of `conv2d(method=...)` for the case's arrays (or the given x and g)."""
  n, hw, ci, co, k, s, pads, d = case
  rng = np.random.default_rng(len(str(case)))
  x = rng.standard_normal((n, *hw, ci)) if x is None else x
  w = rng.standard_normal((*k, ci, co)) / np.sqrt(ci * k[0] * k[1])
  f = lambda x, w: conv2d(x, w, stride=s, padding=pads, dilation=d, method=method)
  y = jax.eval_shape(f, jnp.asarray(x, dtype), jnp.asarray(w, dtype))
  g = rng.standard_normal(y.shape) if g is None else g
  return _value_and_vjp(f, jnp.asarray(x, dtype), jnp.asarray(w, dtype), jnp.asarray(g, dtype))


@pytest.mark.parametrize("case", _random_ccases(14, seed=5), ids=str)
def test_blocked_conv2d_equals_reference_grad(case):
  ref, blocked = _conv_grads(case, jnp.float32, "reference"), _conv_grads(case, jnp.float32, "blocked")
  for name, a, b in zip(("y", "dx", "dw"), blocked, ref):
    assert a.dtype == b.dtype == jnp.float32, name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max() + 1), err_msg=name)


@pytest.mark.parametrize("case", _random_ccases(3, seed=6), ids=str)
def test_blocked_conv2d_bfloat16(case):
  """bf16 in, bf16 out; the blocked weight gradient accumulates in float32, so it is at least as close
  to the float32 value as XLA's bf16 gradient is (up to one bf16 rounding)."""
  ref, blocked = _conv_grads(case, jnp.bfloat16, "reference"), _conv_grads(case, jnp.bfloat16, "blocked")
  f32 = _conv_grads(case, jnp.float32, "reference")
  for name, a, b, e in zip(("y", "dx", "dw"), blocked, ref, f32):
    assert a.dtype == b.dtype == jnp.bfloat16, name
    a, b, e = (np.asarray(v, np.float64) for v in (a, b, e))
    scale = np.abs(e).max() + 1e-6
    assert np.abs(a - e).max() <= np.abs(b - e).max() + 2 ** -7 * scale, name


def _with_nonfinite(arr, rng, values=(np.nan, np.inf, -np.inf)):
  arr = np.array(arr, np.float32)
  flat = arr.reshape(-1)
  for v in values:
    flat[rng.integers(0, flat.size)] = v
  return arr


def _assert_same_nonfinite(got, want, name):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  for what, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
    np.testing.assert_array_equal(mask(got), mask(want), err_msg=f"{name}: {what} positions differ")
  finite = np.isfinite(want)
  np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4,
                             atol=1e-4 * (np.abs(want[finite]).max(initial=0) + 1))


@pytest.mark.parametrize("where", ["x", "dy"])
def test_blocked_conv2d_propagates_nonfinite_like_reference(where):
  rng = np.random.default_rng(7)
  for case in _random_ccases(4, seed=8):
    n, hw, ci, _, k, s, pads, d = case
    x = rng.standard_normal((n, *hw, ci))
    y_shape = _conv_grads(case, jnp.float32, "reference", x=x)[0].shape
    g = rng.standard_normal(y_shape)
    if where == "x":
      x = _with_nonfinite(x, rng)
    else:
      g = _with_nonfinite(g, rng)
    ref = _conv_grads(case, jnp.float32, "reference", x=x, g=g)
    for name, a, b in zip(("y", "dx", "dw"), _conv_grads(case, jnp.float32, "blocked", x=x, g=g), ref):
      _assert_same_nonfinite(a, b, f"{case} {name}")


def test_blocked_conv2d_second_order_and_vmap():
  rng = np.random.default_rng(9)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.standard_normal((2, 6, 5, 2)))
    w = jnp.asarray(rng.standard_normal((3, 2, 2, 3)))
    f = lambda x, w: conv2d(x, w, stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2), method="blocked")
    jtu.check_grads(jax.jit(f), (x, w), order=2, modes=("rev",))
  xs = jnp.asarray(rng.standard_normal((3, 2, 7, 7, 3)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((3, 3, 3, 3, 4)), jnp.float32)
  loss = lambda m: lambda x, w: jnp.sum(jnp.sin(conv2d(x, w, stride=2, padding=1, method=m)))
  got = jax.jit(jax.vmap(jax.grad(loss("blocked"), (0, 1))))(xs, ws)
  want = jax.jit(jax.vmap(jax.grad(loss("reference"), (0, 1))))(xs, ws)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.fixture
def single_device(monkeypatch):
  """The blocked weight gradients run only on a single-device JAX (`_loops_ok`); the suite has 8 fake
  CPU devices, so tests of those paths say 'one device' here."""
  monkeypatch.setattr(conv_lib, "_loops_ok", lambda: True)


def test_auto_keeps_xla_gradients_with_several_devices():
  if jax.device_count() < 2:
    pytest.skip("needs several devices")
  f = lambda x, w: jnp.sum(conv2d(x, w, padding=1))
  jaxpr = str(jax.make_jaxpr(jax.grad(f, 1))(jnp.ones((1, 8, 8, 64)), jnp.ones((3, 3, 64, 64))))
  assert not re.search(r"\b(scan|while)\[", jaxpr)


@pytest.mark.parametrize("case", [_TCASES[i] for i in (1, 2, 13, 15, 16, 20)], ids=str)
def test_phase_blocked_weight_gradient_matches_definition(case, single_device):
  x, w, g, kwargs = _tcase_arrays(case, seed=len(str(case)))
  want = np_conv_transpose2d(x, w, g, **kwargs)
  got = _value_and_vjp(lambda x, w: conv_transpose2d(x, w, method="phase", **kwargs), x, w, g)
  for a, b in zip(got, want):
    _assert_close(a, b, np.sqrt(w.size))


def test_auto_picks_blocked_on_cpu_for_wide_ungrouped_convs(single_device):
  def grad_jaxpr(ci, co, groups=1):
    x, w = jnp.ones((1, 8, 8, ci)), jnp.ones((3, 3, ci // groups, co))
    f = lambda x, w: jnp.sum(conv2d(x, w, padding=1, feature_group_count=groups))
    return bool(re.search(r"\b(scan|while)\[", str(jax.make_jaxpr(jax.grad(f, 1))(x, w))))
  wide = conv_lib._BLOCKED_MIN_CHANNELS
  # The blocked weight gradient's loop over blocks (a fori_loop: a scan in the jaxpr).
  assert grad_jaxpr(wide, wide) == (jax.default_backend() == "cpu")
  assert not grad_jaxpr(wide - 1, wide)
  assert not grad_jaxpr(wide, wide, groups=2)


@pytest.mark.parametrize("backend, undilated, dilated", [("cpu", "blocked", "blocked"), ("gpu", "reference", "blocked"),
                                                         ("tpu", "reference", "reference")])
def test_auto_per_backend_and_dilation(monkeypatch, single_device, backend, undilated, dilated):
  """The rule of `_conv_auto` (measured on CPU and on an H200; TPU not measured: XLA's)."""
  monkeypatch.setattr(conv_lib.jax, "default_backend", lambda: backend)
  x, wide = jnp.ones((1, 8, 8, conv_lib._BLOCKED_MIN_CHANNELS)), conv_lib._BLOCKED_MIN_CHANNELS
  assert conv_lib._conv_auto("auto", x, (3, 3, wide, wide), 1, (1, 1)) == undilated
  assert conv_lib._conv_auto("auto", x, (3, 3, wide, wide), 1, (2, 2)) == dilated
  assert conv_lib._conv_auto("auto", x, (3, 3, wide, wide - 1), 1, (2, 2)) == "reference"
  assert conv_lib._conv_auto("reference", x, (3, 3, wide, wide), 1, (2, 2)) == "reference"


def test_blocked_weight_gradient_block_rows():
  # Whole rows of every image, up to the block size, at least one row.
  for n, oh, ow in [(4, 64, 64), (3, 88, 72), (6, 8, 8), (5, 7, 9), (1, 3, 1000), (7, 23, 23)]:
    rows = conv_lib._block_rows(n, oh, ow)
    assert 1 <= rows <= oh
    assert rows == 1 or n * rows * ow <= conv_lib._DW_BLOCK_PIXELS
  assert conv_lib._block_rows(6, 8, 8) == 8 and conv_lib._block_rows(1, 3, 1000) == 1


@pytest.mark.parametrize("axis_type", ["Auto", "Explicit"])
def test_blocked_conv2d_keeps_a_sharded_batch_local(axis_type):
  """Data parallel over 2 devices: the same gradients, and no all-gather of activations (the blocks
  never slice the batch axis). ('auto' keeps XLA's gradient there, see `_loops_ok`: in a whole
  training step the partitioner can put the all-reduce inside the loop, and XLA:CPU deadlocks.)"""
  if jax.device_count() < 2:
    pytest.skip("needs 2 devices (tests/conftest.py sets 8 fake CPU devices)")
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((2,), ("data",), axis_types=(getattr(AxisType, axis_type),), devices=jax.devices()[:2])
  rng = np.random.default_rng(13)
  x = jax.device_put(jnp.asarray(rng.standard_normal((4, 10, 9, 32)), jnp.float32), NamedSharding(mesh, P("data")))
  w = jax.device_put(jnp.asarray(rng.standard_normal((3, 3, 32, 32)) / 17, jnp.float32), NamedSharding(mesh, P()))
  grads, texts = {}, {}
  for method in ("reference", "blocked", "auto"):
    f = jax.jit(jax.grad(lambda x, w, m=method: jnp.sum(jnp.sin(conv2d(x, w, padding=1, method=m))), (0, 1)))
    with jax.set_mesh(mesh):
      grads[method] = f(x, w)
      texts[method] = f.lower(x, w).compile().as_text()
  for method in ("blocked", "auto"):
    for a, b in zip(grads[method], grads["reference"]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert "all-gather" not in texts[method]
  # Spatially sharded x (H over the mesh): 'auto' keeps XLA's gradient.
  xh = jax.device_put(x, NamedSharding(mesh, P(None, "data")))
  if axis_type == "Explicit":
    with jax.set_mesh(mesh):
      jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(conv2d(x, w, padding=1)), 1))(xh, w))
    assert not re.search(r"\b(scan|while)\[", jaxpr)


# ------------------------------------------------------------------------------------------------
# conv_transpose2d: the fast forms propagate NaN / ±Inf as the reference form does (issue 10)
# ------------------------------------------------------------------------------------------------


def test_phase_one_nan_pixel_spreads_like_reference():
  # k3 s2 p1: the packed phase kernel has zero taps (3 taps padded to 2 phases x 2); before the fix
  # one NaN pixel gave 80 NaNs (16 positions x 5 channels) instead of the reference's 45, and an
  # Inf pixel 35 NaNs (0·Inf) where the reference has only ±Inf.
  rng = np.random.default_rng(10)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 5)), jnp.float32)
  for value in (np.nan, np.inf, -np.inf):
    x = np.asarray(rng.standard_normal((1, 6, 6, 3)), np.float32)
    x[0, 2, 3, 1] = value
    ys = {m: conv_transpose2d(jnp.asarray(x), w, stride=2, padding=1, method=m) for m in METHODS + ("auto",)}
    for m in ("phase", "auto"):
      _assert_same_nonfinite(ys[m], ys["reference"], f"{m} {value}")
    assert int((~jnp.isfinite(ys["reference"])).sum()) == 45


@pytest.mark.parametrize("where", ["x", "dy"])
def test_phase_propagates_nonfinite_like_reference(where):
  """Random transposed convs (strided, dilated, stride 1): y, dx, dw positions of NaN / ±Inf equal.
  (Non-finite *weights*: only the output is compared; where a NaN weight meets the zeros XLA pads a
  gradient with is up to XLA's kernel choice: the reference form's own dx has 60 NaNs in one program
  and 48 inside a `lax.cond`.)"""
  rng = np.random.default_rng(11)
  for case in [_TCASES[i] for i in (1, 2, 13, 16, 17)] + _random_tcases(2, seed=12):
    x, w, g, kwargs = _tcase_arrays(case, seed=len(str(case)))
    if where == "x":
      x = _with_nonfinite(x, rng)
    else:
      g = _with_nonfinite(g, rng)
    got = [_value_and_vjp(functools.partial(conv_transpose2d, method=m, **kwargs), x, w, g) for m in METHODS]
    for name, a, b in zip(("y", "dx", "dw"), got[1], got[0]):
      _assert_same_nonfinite(a, b, f"{case} {name}")
  x, w, _, kwargs = _tcase_arrays(_TCASES[1], seed=0)
  w = _with_nonfinite(w, rng)
  _assert_same_nonfinite(conv_transpose2d(x, w, method="phase", **kwargs),
                         conv_transpose2d(x, w, method="reference", **kwargs), "y, non-finite w")


# ------------------------------------------------------------------------------------------------
# Errors name the argument, the expected and the actual value
# ------------------------------------------------------------------------------------------------

_X = jnp.ones((1, 4, 4, 3))
_W = jnp.ones((3, 3, 3, 2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=jnp.ones((4, 4, 3))), r"x: expected a rank-4 array \(NHWC\), got shape \(4, 4, 3\)"),
    (dict(w=jnp.ones((3, 3, 3))), r"w: expected a rank-4"),
    (dict(w=jnp.ones((3, 3, 2, 2))), r"x: expected 2 channels, got 3"),
    (dict(stride=0), r"stride: expected values >= 1, got 0"),
    (dict(stride=(2, -1)), r"stride: expected values >= 1"),
    (dict(stride=1.5), r"stride: expected an int or a pair of ints, got 1.5"),
    (dict(dilation=0), r"dilation: expected values >= 1, got 0"),
    (dict(padding=-1), r"padding: expected values >= 0, got -1"),
    (dict(output_padding=2, stride=2), r"output_padding: expected a value smaller than stride \(2\) or "
                                       r"dilation \(1\) along H, got 2"),
    (dict(output_padding=(0, 1)), r"output_padding: .* along W, got 1"),
    (dict(padding=4), r"padding: .*got padding 4 \(output size -2\)"),
    (dict(method="fft"), r"method: expected one of \('auto', 'reference', 'phase'\), got 'fft'"),
])
def test_conv_transpose2d_errors(kwargs, match):
  args = dict(x=_X, w=_W, stride=1)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    conv_transpose2d(args.pop("x"), args.pop("w"), **args)


def test_conv_transpose2d_accepts_output_padding_below_dilation():
  assert conv_transpose2d(_X, _W, stride=1, dilation=2, output_padding=1).shape == (1, 9, 9, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=jnp.ones((1, 4, 4, 3, 1))), r"x: expected a rank-4 array"),
    (dict(w=jnp.ones((3, 3, 3, 2, 1))), r"w: expected a rank-4"),
    (dict(w=jnp.ones((3, 3, 4, 2))), r"x: expected 4 channels, got 3"),
    (dict(stride=(1, 0)), r"stride: expected values >= 1"),
    (dict(dilation=-2), r"dilation: expected values >= 1, got -2"),
    (dict(padding=((1, -1), (0, 0))), r"padding: expected values >= 0"),
    (dict(padding="FULL"), r"padding: expected one of \('SAME', 'VALID'\), got 'FULL'"),
    (dict(padding=(1, 2, 3)), r"padding: expected an int, a pair of ints or a pair of \(lo, hi\) pairs"),
    (dict(padding="VALID", dilation=2), r"x: padded H size 4 is smaller than the dilated kernel 5"),
    (dict(feature_group_count=0), r"feature_group_count: expected an int >= 1, got 0"),
    (dict(feature_group_count=3, w=jnp.ones((3, 3, 1, 2))), r"w: expected out channels divisible by "
                                                            r"feature_group_count=3, got 2"),
    (dict(method="winograd"), r"method: expected one of \('auto', 'reference', 'blocked'\), got 'winograd'"),
    (dict(method="blocked", feature_group_count=3, w=jnp.ones((3, 3, 1, 3))),
     r"method: expected 'reference' or 'auto' for a grouped conv \(feature_group_count=3\), got 'blocked'"),
])
def test_conv2d_errors(kwargs, match):
  args = dict(x=_X, w=_W)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    conv2d(args.pop("x"), args.pop("w"), **args)
