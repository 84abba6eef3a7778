"""Argmax pooling and max-unpooling: the lecture's example, float64 references with PyTorch's rules,
PyTorch itself, gradients, the two unpooling forms against each other, and no scatter."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from dense_jax.ops._hlo import has_scatter
from dense_jax.ops.pooling import max_pool_with_argmax, max_unpool, unpooled_size

# (H, W, window, stride, padding): tiles, floor-mode remainders, overlapping, padded, rectangular.
CONFIGS = [
    (4, 4, 2, 2, 0),
    (7, 9, 2, 2, 0),
    (6, 6, 3, 3, 0),
    (9, 8, 3, 2, 1),
    (8, 7, 3, 1, 1),
    (10, 7, 3, 2, 0),
    (5, 7, (2, 3), (1, 2), (1, 1)),
    (9, 9, 4, 2, 2),
    (6, 5, 2, 1, 0),
]


def _pairs(window, stride, padding):
  k = (window, window) if isinstance(window, int) else window
  s = (stride, stride) if isinstance(stride, int) else stride
  p = (padding, padding) if isinstance(padding, int) else padding
  return k, s, p


def _ref_pool(x, window, stride, padding):
  """PyTorch's CPU max_pool2d loop in float64 (NHWC): start at the first unpadded pixel with -inf,
  take a value if it is greater or NaN; returns pooled values and flat indices."""
  (kh, kw), (sh, sw), (ph, pw) = _pairs(window, stride, padding)
  n, h, w, c = x.shape
  oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
  pooled = np.zeros((n, oh, ow, c))
  idx = np.zeros((n, oh, ow, c), np.int64)
  for i in range(oh):
    for j in range(ow):
      hs, ws = i * sh - ph, j * sw - pw
      best = np.full((n, c), -np.inf)
      arg = np.full((n, c), max(hs, 0) * w + max(ws, 0))
      for a in range(kh):
        for b in range(kw):
          r, q = hs + a, ws + b
          if 0 <= r < h and 0 <= q < w:
            v = x[:, r, q]
            take = (v > best) | np.isnan(v)
            best = np.where(take, v, best)
            arg = np.where(take, r * w + q, arg)
      pooled[:, i, j], idx[:, i, j] = best, arg
  return pooled, idx


def _ref_pool_grad(g, idx, h, w):
  """Gradient of max pooling: each output gradient added at its argmax."""
  n, oh, ow, c = g.shape
  gx = np.zeros((n, h * w, c))
  for i in range(oh):
    for j in range(ow):
      for nn in range(n):
        for cc in range(c):
          gx[nn, idx[nn, i, j, cc], cc] += g[nn, i, j, cc]
  return gx.reshape(n, h, w, c)


def _ref_unpool(y, idx, h, w):
  """PyTorch's CPU max_unpool2d: sequential writes in row-major order (the last one wins)."""
  n, oh, ow, c = y.shape
  out = np.zeros((n, h * w, c))
  for i in range(oh):
    for j in range(ow):
      for nn in range(n):
        for cc in range(c):
          out[nn, idx[nn, i, j, cc], cc] = y[nn, i, j, cc]
  return out.reshape(n, h, w, c)


def _ref_unpool_grad(g, idx):
  """PyTorch's max_unpool2d backward: the output gradient gathered at every index."""
  n, h, w, c = g.shape
  flat = g.reshape(n, h * w, c)
  return np.take_along_axis(flat, idx.reshape(n, -1, c), axis=1).reshape(idx.shape)


# Jitted once per configuration: op-by-op (eager) dispatch compiles every small primitive and
# would dominate the test time.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _pool_and_grad(x, g, window, stride, padding):
  pooled, idx = max_pool_with_argmax(x, window, stride, padding)
  _, vjp = jax.vjp(lambda v: max_pool_with_argmax(v, window, stride, padding)[0], x)
  return pooled, idx, vjp(g)[0]


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _unpool_and_grad(y, idx, g, window, stride, padding, size, method="auto"):
  out, vjp = jax.vjp(lambda v: max_unpool(v, idx, window, stride, padding, size, method=method), y)
  return out, vjp(g)[0]


def _input(h, w, seed, ties=False):
  rng = np.random.default_rng(seed)
  if ties:  # few distinct values: exercises the first-maximum rule
    return rng.integers(0, 3, (2, h, w, 3)).astype(np.float32)
  return rng.standard_normal((2, h, w, 3)).astype(np.float32)


def test_lecture_max_pooling_and_unpooling():
  x = jnp.asarray([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]], jnp.float32)[None, :, :, None]
  pooled, idx = max_pool_with_argmax(x, 2, 2)
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 6], [7, 8]])
  np.testing.assert_array_equal(idx[0, :, :, 0], [[1 * 4 + 1, 0 * 4 + 2], [3 * 4 + 0, 3 * 4 + 3]])
  assert idx.dtype == jnp.int32
  y = jnp.asarray([[1, 2], [3, 4]], jnp.float32)[None, :, :, None]
  out = max_unpool(y, idx, 2, 2, output_size=(4, 4))
  np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("h,w,window,stride,padding", CONFIGS)
def test_against_float64_reference(h, w, window, stride, padding, ties):
  x = _input(h, w, seed=h * 31 + w, ties=ties)
  ref_pooled, ref_idx = _ref_pool(x.astype(np.float64), window, stride, padding)
  g = np.random.default_rng(1).standard_normal(ref_pooled.shape).astype(np.float32)
  pooled, idx, grad = _pool_and_grad(x, g, window, stride, padding)
  np.testing.assert_array_equal(pooled, ref_pooled)
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_allclose(grad, _ref_pool_grad(g, ref_idx, h, w), rtol=1e-6, atol=1e-6)

  y = np.random.default_rng(2).standard_normal(pooled.shape).astype(np.float32)
  gu = np.random.default_rng(3).standard_normal((2, h, w, 3)).astype(np.float32)
  for method in ("window", "dense"):
    out, grad = _unpool_and_grad(y, idx, gu, window, stride, padding, (h, w), method)
    np.testing.assert_array_equal(out, _ref_unpool(y, ref_idx, h, w), err_msg=method)
    np.testing.assert_array_equal(grad, _ref_unpool_grad(gu, ref_idx), err_msg=method)


@pytest.mark.torch
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("h,w,window,stride,padding", CONFIGS)
def test_against_torch(h, w, window, stride, padding, ties):
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  x = _input(h, w, seed=h * 17 + w + 1, ties=ties)
  xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
  pt, it = F.max_pool2d(xt, window, stride, padding, return_indices=True)
  g = np.random.default_rng(4).standard_normal(pt.permute(0, 2, 3, 1).shape).astype(np.float32)
  pt.backward(torch.tensor(g).permute(0, 3, 1, 2))
  pooled, idx, grad = _pool_and_grad(x, g, window, stride, padding)
  np.testing.assert_array_equal(pooled, pt.detach().permute(0, 2, 3, 1).numpy())
  np.testing.assert_array_equal(idx, it.permute(0, 2, 3, 1).numpy())
  np.testing.assert_allclose(grad, xt.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)

  y = np.random.default_rng(5).standard_normal(g.shape).astype(np.float32)
  yt = torch.tensor(y).permute(0, 3, 1, 2).requires_grad_()
  ut = F.max_unpool2d(yt, it, window, stride, padding, output_size=(h, w))
  gu = np.random.default_rng(6).standard_normal((2, h, w, 3)).astype(np.float32)
  ut.backward(torch.tensor(gu).permute(0, 3, 1, 2))
  out, grad = _unpool_and_grad(y, idx, gu, window, stride, padding, (h, w))
  np.testing.assert_array_equal(out, ut.detach().permute(0, 2, 3, 1).numpy())
  np.testing.assert_array_equal(grad, yt.grad.permute(0, 2, 3, 1).numpy())


@pytest.mark.torch
def test_nan_and_all_minus_infinity_windows_follow_torch():
  x = _input(6, 6, seed=9)
  x[0, 1, 1, 0] = np.nan        # a NaN wins its windows
  x[1, :3, :3, 1] = -np.inf     # a window with nothing but -inf (and padding): index = first pixel
  for window, stride, padding in [(2, 2, 0), (3, 2, 1), (3, 3, 1)]:
    ref_pooled, ref_idx = _ref_pool(x.astype(np.float64), window, stride, padding)
    pooled, idx, _ = _pool_and_grad(x, np.zeros(ref_pooled.shape, np.float32), window, stride, padding)
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(idx, ref_idx)
  torch = pytest.importorskip("torch")
  for window, stride, padding in [(2, 2, 0), (3, 2, 1), (3, 3, 1)]:
    pt, it = torch.nn.functional.max_pool2d(torch.tensor(x).permute(0, 3, 1, 2), window, stride, padding,
                                            return_indices=True)
    pooled, idx, _ = _pool_and_grad(x, np.zeros(pt.permute(0, 2, 3, 1).shape, np.float32), window, stride,
                                    padding)
    np.testing.assert_array_equal(pooled, pt.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(idx, it.permute(0, 2, 3, 1).numpy())


def test_numerical_gradients():
  with jax.enable_x64(True):
    # Distinct values far apart compared with the finite-difference step: max is smooth there.
    x = jnp.asarray(np.random.default_rng(0).permutation(2 * 6 * 6 * 2).reshape(2, 6, 6, 2) * 0.1)
    for window, stride, padding in [(2, 2, 0), (3, 2, 1)]:
      jtu.check_grads(jax.jit(lambda v, k=window, s=stride, p=padding: max_pool_with_argmax(v, k, s, p)[0]),
                      (x,), order=1, modes=("fwd", "rev"), eps=1e-3)
    y = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 3, 2)))
    _, idx = max_pool_with_argmax(x, 2, 2)
    jtu.check_grads(jax.jit(lambda v: max_unpool(v, idx, 2, 2, output_size=(6, 6))), (y,), order=1,
                    modes=("fwd", "rev"))
    # Overlapping windows, indices without repeats (offset (1, 1) of every window): there the
    # custom VJP (PyTorch's gather) is the true derivative.
    rows = jnp.arange(3) * 2 - 1 + 1
    idx = jnp.broadcast_to((rows[:, None] * 6 + rows[None, :])[None, :, :, None], (2, 3, 3, 2))
    for method in ("window", "dense"):
      jtu.check_grads(jax.jit(lambda v, m=method: max_unpool(v, idx, 3, 2, 1, (6, 6), method=m)), (y,), order=1,
                      modes=("rev",))


@pytest.mark.parametrize("window,stride,padding", [(2, 2, 0), (3, 2, 1)])
def test_window_and_dense_unpooling_agree_including_gradients(window, stride, padding):
  x = jnp.asarray(_input(9, 10, seed=3, ties=True))
  y, idx = max_pool_with_argmax(x, window, stride, padding)
  ct = jnp.asarray(np.random.default_rng(8).standard_normal(x.shape), jnp.float32)

  for a, b in zip(_unpool_and_grad(y, idx, ct, window, stride, padding, (9, 10), "window"),
                  _unpool_and_grad(y, idx, ct, window, stride, padding, (9, 10), "dense")):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("window,stride,padding", [(2, 2, 0), (3, 2, 1)])
def test_pool_unpool_forward_backward_compiles_without_scatter(window, stride, padding):
  x = jnp.ones((2, 8, 8, 3))

  def loss(v):
    y, idx = max_pool_with_argmax(v, window, stride, padding)
    return jnp.sum(max_unpool(y, idx, window, stride, padding, (8, 8)) ** 2)

  assert not has_scatter(jax.jit(jax.value_and_grad(loss)), x)


def test_jit_and_vmap():
  xs = jnp.asarray(np.random.default_rng(5).standard_normal((3, 1, 4, 6, 2)), jnp.float32)

  def pool_unpool(v):
    y, idx = max_pool_with_argmax(v, 2)
    return max_unpool(y, idx, 2, output_size=(4, 6)), idx

  out, idx = jax.jit(jax.vmap(pool_unpool))(xs)
  ref_out, ref_idx = pool_unpool(xs[1])
  np.testing.assert_array_equal(out[1], ref_out)
  np.testing.assert_array_equal(idx[1], ref_idx)


def test_default_output_size_and_stride():
  assert unpooled_size((3, 4), 2) == (6, 8)
  assert unpooled_size((5, 5), 3, 2, 1) == (9, 9)
  x = jnp.asarray(_input(7, 7, seed=1))
  y, idx = max_pool_with_argmax(x, 3, padding=1)  # stride defaults to the window
  assert y.shape == (2, 3, 3, 3)
  assert max_unpool(y, idx, 3, padding=1).shape == (2, 7, 7, 3)


X = jnp.ones((1, 4, 4, 1))
Y = jnp.ones((1, 2, 2, 1))
IDX = jnp.zeros((1, 2, 2, 1), jnp.int32)


@pytest.mark.parametrize("call,match", [
    (lambda: max_pool_with_argmax(jnp.ones((4, 4, 1)), 2), "x: expected a rank-4"),
    (lambda: max_pool_with_argmax(X, 0), "window: expected values >= 1"),
    (lambda: max_pool_with_argmax(X, 2, 0), "stride: expected values >= 1"),
    (lambda: max_pool_with_argmax(X, 2, 2, -1), "padding: expected values >= 0"),
    (lambda: max_pool_with_argmax(X, 2, 2, 2), r"padding: expected at most half the window \(2, 2\)"),
    (lambda: max_pool_with_argmax(X, 5), r"x: expected spatial size >= .*got \(4, 4\)"),
    (lambda: max_pool_with_argmax(X.astype(jnp.int32), 2), "x: expected a floating dtype"),
    (lambda: max_unpool(Y, IDX[:, :1], 2), r"indices: expected the shape of y \(1, 2, 2, 1\), got \(1, 1, 2, 1\)"),
    (lambda: max_unpool(Y, IDX.astype(jnp.float32), 2), "indices: expected an integer dtype"),
    (lambda: max_unpool(Y[0], IDX[0], 2), "y: expected a rank-4"),
    (lambda: max_unpool(Y, IDX, 2, output_size=(6, 4)), r"output_size: .*H in \[4, 5\].*got \(6, 4\)"),
    (lambda: max_unpool(Y, IDX, 2, output_size=(4, 3)), r"output_size: .*W in \[4, 5\], got \(4, 3\)"),
    (lambda: max_unpool(Y, IDX, 2, 0), "stride: expected values >= 1"),
    (lambda: max_unpool(Y, IDX, 2, method="scatter"),
     r"method: expected one of \('auto', 'window', 'dense'\), got 'scatter'"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# Indices that max pooling cannot produce. A 2×2/2 pooling of a 4×4 map: window (i, j) covers rows
# 2i..2i+1 and columns 2j..2j+1, so its flat indices are 8i + 2j + {0, 1, 4, 5}.
GOOD = [[0, 3], [9, 15]]


def _idx(rows):
  return jnp.asarray(rows, jnp.int32)[None, :, :, None]


@pytest.mark.parametrize("method", ["window", "dense"])
@pytest.mark.parametrize("bad,value", [(16, 16), (-1, -1), (1000, 1000)])
def test_out_of_range_indices_are_refused_outside_jit(method, bad, value):
  rows = [row[:] for row in GOOD]
  rows[1][1] = bad
  with pytest.raises(ValueError, match=rf"indices: expected flat positions h·W \+ w in \[0, 16\) of the "
                                       rf"\(4, 4\) output, got {value} at \(n, i, j, c\) = \(0, 1, 1, 0\)"):
    max_unpool(Y, _idx(rows), 2, method=method)


@pytest.mark.torch
def test_out_of_range_indices_are_refused_by_torch_too():
  torch = pytest.importorskip("torch")
  y = torch.ones(1, 1, 2, 2)
  with pytest.raises(RuntimeError, match="invalid max index"):
    torch.nn.functional.max_unpool2d(y, torch.tensor([[[[0, 3], [9, 16]]]]), 2, 2)


def test_index_outside_its_window_is_refused_by_window_and_honoured_by_dense():
  rows = [[0, 0], [9, 15]]   # window (0, 1) names position 0, which lies in window (0, 0)
  with pytest.raises(ValueError, match=r"indices: expected each index inside its own pooling window .* "
                                       r"got 0 = \(row 0, col 0\) at \(n, i, j, c\) = \(0, 0, 1, 0\), whose "
                                       r"window covers rows 0..1 and cols 2..3"):
    max_unpool(Y, _idx(rows), 2)
  y = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
  out = max_unpool(y, _idx(rows), 2, method="dense")   # any in-range index, last one wins (PyTorch's rule)
  np.testing.assert_array_equal(out, _ref_unpool(np.asarray(y), np.asarray(_idx(rows)), 4, 4))
  assert float(out[0, 0, 0, 0]) == 2.0


def test_inside_jit_a_bad_index_drops_its_value_as_documented():
  y = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
  rows = [[0, 3], [9, 16]]
  out = jax.jit(lambda v, i: max_unpool(v, i, 2))(y, _idx(rows))   # traced: not checkable, not an error
  expected = _ref_unpool(np.asarray(y), np.asarray(_idx(GOOD)), 4, 4)
  expected[0, 3, 3, 0] = 0.0   # 15 was the good index of the last window; 16 writes nothing
  np.testing.assert_array_equal(out, expected)
  grad = jax.jit(jax.grad(lambda v, i: jnp.sum(max_unpool(v, i, 2) * 1.0), argnums=0))(y, _idx(rows))
  np.testing.assert_array_equal(grad[0, :, :, 0], [[1.0, 1.0], [1.0, 0.0]])
