"""RoIAlign (both backends) against torchvision.ops.roi_align / MultiScaleRoIAlign forward and backward,
against each other, and against a float64 NumPy loop written from the paper's definition."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.ops.roi_align import fpn_level_of_boxes, multilevel_roi_align, roi_align

BACKENDS = ["gather", "einsum"]


def _ref_roi_align(x, rois, out_hw, scale, sampling_ratio, aligned):
  """float64 loop: x (N, H, W, C), rois (K, 5) = (b, x0, y0, x1, y1) -> (K, out_h, out_w, C)."""
  x = x.astype(np.float64)
  n, h, w, c = x.shape
  oh, ow = out_hw
  out = np.zeros((len(rois), oh, ow, c))

  def bilinear(img, y, xx):
    if y < -1.0 or y > h or xx < -1.0 or xx > w:
      return np.zeros(c)
    y, xx = max(y, 0.0), max(xx, 0.0)
    y0, x0 = int(np.floor(y)), int(np.floor(xx))
    if y0 >= h - 1:
      y0 = y1 = h - 1
      y = float(y0)
    else:
      y1 = y0 + 1
    if x0 >= w - 1:
      x0 = x1 = w - 1
      xx = float(x0)
    else:
      x1 = x0 + 1
    ly, lx = y - y0, xx - x0
    return ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x1] + ly * (1 - lx) * img[y1, x0]
            + ly * lx * img[y1, x1])

  off = 0.5 if aligned else 0.0
  for k, (b, bx0, by0, bx1, by1) in enumerate(rois.astype(np.float64)):
    sx, sy = bx0 * scale - off, by0 * scale - off
    rw, rh = bx1 * scale - off - sx, by1 * scale - off - sy
    if not aligned:
      rw, rh = max(rw, 1.0), max(rh, 1.0)
    gy = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / oh))
    gx = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / ow))
    count = max(gy * gx, 1)
    for p in range(oh):
      for q in range(ow):
        acc = np.zeros(c)
        for iy in range(max(gy, 0)):
          y = sy + p * rh / oh + (iy + 0.5) * (rh / oh) / gy
          for ix in range(max(gx, 0)):
            acc += bilinear(x[int(b)], y, sx + q * rw / ow + (ix + 0.5) * (rw / ow) / gx)
        out[k, p, q] = acc / count
  return out


def _rois(rng, n_img, r, size, scale_max=None):
  """(n_img, r, 4) xyxy boxes: random, some hanging over the border, some tiny or inverted-free."""
  xy = rng.uniform(-4, size, (n_img, r, 2))
  wh = rng.uniform(0.2, scale_max or size * 0.7, (n_img, r, 2))
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def _as_torch_rois(boxes):
  n, r, _ = boxes.shape
  idx = np.repeat(np.arange(n, dtype=np.float32), r)[:, None]
  return np.concatenate([idx, boxes.reshape(-1, 4)], 1)


CASES = [  # (output_size, spatial_scale, sampling_ratio, aligned)
    ((3, 4), 0.5, 2, False), ((5, 5), 1.0, -1, True), ((2, 3), 0.25, 0, False), ((4, 2), 0.5, 1, True),
    ((3, 3), 0.5, -1, False)]


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES)
def test_forward_backward_vs_torchvision_and_float64(case):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  out_hw, scale, ratio, aligned = case
  rng = np.random.default_rng(hash(case) % 2**32)
  x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  boxes = _rois(rng, 2, 6, 11 / scale)
  rois = _as_torch_rois(boxes)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  ref = torchvision.ops.roi_align(xt, torch.from_numpy(rois), out_hw, scale, ratio, aligned)
  cot = rng.normal(size=ref.shape).astype(np.float32)
  (ref * torch.from_numpy(cot)).sum().backward()
  ref_out = ref.detach().numpy().transpose(0, 2, 3, 1)
  ref_grad = xt.grad.numpy().transpose(0, 2, 3, 1)
  f64 = _ref_roi_align(x, rois, out_hw, scale, ratio, aligned)
  np.testing.assert_allclose(ref_out, f64, atol=1e-5)
  cot_nhwc = cot.transpose(0, 2, 3, 1).reshape(2, 6, *out_hw, 3)
  for backend in BACKENDS:
    f = lambda feats, backend=backend: roi_align(feats, boxes, out_hw, scale, ratio, aligned, backend=backend)
    out, vjp = jax.vjp(f, x)
    np.testing.assert_allclose(out.reshape(-1, *out_hw, 3), f64, atol=2e-5, err_msg=backend)
    np.testing.assert_allclose(vjp(jnp.asarray(cot_nhwc))[0], ref_grad, atol=2e-5, err_msg=backend)
  # (K, 4) + batch_indices layout, a shuffled order
  perm = rng.permutation(len(rois))
  out_k = roi_align(x, rois[perm, 1:], out_hw, scale, ratio, aligned, batch_indices=rois[perm, 0].astype(np.int32),
                    backend="einsum")
  np.testing.assert_allclose(out_k, f64[perm], atol=2e-5)


@pytest.mark.torch
def test_float64_torchvision_agree_with_reference_exactly():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(7)
  x = rng.normal(size=(1, 6, 7, 2))
  rois = _as_torch_rois(_rois(rng, 1, 5, 7))
  ref = torchvision.ops.roi_align(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(
      rois.astype(np.float64)), (3, 3), 1.0, -1, False).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(_ref_roi_align(x, rois, (3, 3), 1.0, -1, False), ref, rtol=1e-12, atol=1e-12)


def test_adaptive_sampling_static_bound_documented_deviation():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
  boxes = np.array([[[0.0, 0.0, 8.0, 8.0], [1.0, 2.0, 3.0, 5.0]]], np.float32)  # grids 4x4, 2x1 for out 2
  rois = _as_torch_rois(boxes)
  exact = _ref_roi_align(x, rois, (2, 2), 1.0, -1, False)
  np.testing.assert_allclose(roi_align(x, boxes, 2).reshape(2, 2, 2, 2), exact, atol=1e-5)
  capped = roi_align(x, boxes, 2, max_sampling_ratio=2).reshape(2, 2, 2, 2)
  # capped at 2: the big box uses 2x2 samples (= sampling_ratio 2), the small one is unaffected
  np.testing.assert_allclose(capped[0], _ref_roi_align(x, rois[:1], (2, 2), 1.0, 2, False)[0], atol=1e-5)
  np.testing.assert_allclose(capped[1], exact[1], atol=1e-5)


@pytest.mark.torch
def test_levels_follow_torchvision_level_mapper():
  poolers = pytest.importorskip("torchvision.ops.poolers")
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(5)
  sizes = np.exp(rng.uniform(np.log(4), np.log(1200), 400))
  boxes = np.stack([np.zeros(400), np.zeros(400), sizes, sizes * rng.uniform(0.3, 3, 400)], 1).astype(np.float32)
  boxes[:3] = [[0, 0, 0, 0], [0, 0, 224, 224], [0, 0, 112, 112]]
  mapper = poolers.LevelMapper(2, 5)
  ref = mapper([torch.from_numpy(boxes)]).numpy() + 2
  ours = np.asarray(fpn_level_of_boxes(boxes))
  np.testing.assert_array_equal(ours, ref)
  assert list(ours[:3]) == [2, 4, 3]


@pytest.mark.torch
@pytest.mark.parametrize("output_size,ratio", [(4, 2), (3, -1)])
def test_multilevel_vs_torchvision_multiscale(output_size, ratio):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(11)
  image = (64, 96)
  feats = [rng.normal(size=(2, 64 // 2**l, 96 // 2**l, 3)).astype(np.float32) for l in (2, 3, 4, 5)]
  boxes = _rois(rng, 2, 10, 64, scale_max=60)
  boxes[0, :4] = [[0, 0, 8, 8], [4, 4, 40, 50], [10, 3, 70, 60], [0, 0, 96, 64]]  # spread over levels
  # canonical scale 32 (instead of 224) spreads these small boxes over all four levels
  pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], output_size, ratio, canonical_scale=32)
  feats_t = {str(i): torch.from_numpy(f.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
             for i, f in enumerate(feats)}
  ref = pooler(feats_t, [torch.from_numpy(b) for b in boxes], [image, image])
  cot = rng.normal(size=ref.shape).astype(np.float32)
  (ref * torch.from_numpy(cot)).sum().backward()
  ref_out = ref.detach().numpy().transpose(0, 2, 3, 1).reshape(2, 10, output_size, output_size, 3)
  cot_nhwc = jnp.asarray(cot.transpose(0, 2, 3, 1).reshape(ref_out.shape))
  assert len(set(np.asarray(fpn_level_of_boxes(boxes, canonical_scale=32)).ravel())) == 4
  outs = {}
  for backend in BACKENDS:
    f = lambda fs, backend=backend: multilevel_roi_align(fs, boxes, output_size, image, ratio, canonical_scale=32,
                                                         backend=backend)
    out, vjp = jax.vjp(f, feats)
    outs[backend] = out
    np.testing.assert_allclose(out, ref_out, atol=2e-5, err_msg=backend)
    for g, ft in zip(vjp(cot_nhwc)[0], feats_t.values()):
      np.testing.assert_allclose(g, ft.grad.numpy().transpose(0, 2, 3, 1), atol=2e-5, err_msg=backend)
  np.testing.assert_allclose(outs["gather"], outs["einsum"], atol=1e-5)


def test_jit_vmap_single_trace_and_no_scatter_in_einsum_gradient():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  boxes = _rois(rng, 2, 3, 8)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(feats, b):
    return jnp.sum(roi_align(feats, b, 2, 1.0, 2, backend="einsum") ** 2)

  g1 = jax.grad(loss)(x, boxes)
  jax.grad(loss)(x + 1, boxes + 1)  # no retrace
  g2 = jax.grad(lambda f: jnp.sum(roi_align(f, boxes, 2, 1.0, 2, backend="gather") ** 2))(x)
  np.testing.assert_allclose(g1, g2, atol=1e-5)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda f: jnp.sum(roi_align(f, boxes, 2, 1.0, 2, backend="einsum"))))(x))
  assert "scatter" not in jaxpr
  # grads w.r.t. boxes are finite; vmap over an extra leading axis equals the loop
  gb = jax.grad(lambda b: jnp.sum(roi_align(x, b, 2, 1.0, 2)))(boxes)
  assert np.all(np.isfinite(gb))
  vm = jax.vmap(lambda f, b: roi_align(f, b, 2, 0.5, 2))(x[:, None], boxes[:, None])
  np.testing.assert_allclose(vm[:, 0], roi_align(x, boxes, 2, 0.5, 2), atol=1e-6)
  # bf16 features: computed in float32, returned in bf16
  assert roi_align(x.astype(jnp.bfloat16), boxes, 2, 1.0, 2).dtype == jnp.bfloat16


def test_bad_input_raises():
  x = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match="backend"):
    roi_align(x, np.zeros((2, 1, 4)), 2, backend="scatter")
  with pytest.raises(ValueError, match="batch_indices"):
    roi_align(x, np.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match="boxes"):
    roi_align(x, np.zeros((3, 1, 4)), 2)
  with pytest.raises(ValueError, match="features"):
    roi_align(np.zeros((4, 4, 1)), np.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match="output_size"):
    roi_align(x, np.zeros((2, 1, 4)), 0)
  with pytest.raises(ValueError, match="features"):
    multilevel_roi_align([x, np.zeros((2, 3, 2, 1), np.float32)], np.zeros((2, 1, 4)), 2, (16, 16))
