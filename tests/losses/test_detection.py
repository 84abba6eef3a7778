"""Detection losses equal torchvision's (RPN, Fast R-CNN, mask, keypoint) on the same sampled items, with
padding / unsampled rows ignored; empty images give finite (zero) terms; hand-computed cases. The keypoint
targets' own parity test: tests/ops/test_keypoint_targets.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.losses import detection
from dense_jax.ops.keypoint_targets import keypoint_targets
from tests.ops.test_keypoint_targets import rois_and_keypoints


def _torch():
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  return torch


def test_smooth_l1_hand_values():
  x = jnp.asarray([0.0, 0.05, -0.05, 0.2, -1.0])
  beta = 1.0 / 9.0
  np.testing.assert_allclose(detection.smooth_l1(x, beta), [0.0, 0.5 * 0.0025 * 9, 0.5 * 0.0025 * 9, 0.2 - beta / 2,
                                                     1.0 - beta / 2], rtol=1e-6)
  np.testing.assert_allclose(detection.smooth_l1(x, 0.0), np.abs(np.asarray(x)))


@pytest.mark.torch
def test_rpn_loss_equals_torchvision():
  torch = _torch()
  from torchvision.models.detection.rpn import RegionProposalNetwork
  rng = np.random.default_rng(0)
  b, a = 2, 50
  logits = rng.normal(size=(b, a)).astype(np.float32)
  deltas = rng.normal(size=(b, a, 4)).astype(np.float32)
  targets = rng.normal(size=(b, a, 4)).astype(np.float32)
  labels = rng.choice([-1, 0, 1], size=(b, a), p=[0.5, 0.35, 0.15]).astype(np.int32)
  rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": 1, "testing": 1},
                              {"training": 1, "testing": 1}, 0.7)
  rpn.fg_bg_sampler = lambda _: ([torch.from_numpy(l == 1) for l in labels], [torch.from_numpy(l == 0) for l in labels])
  ref_obj, ref_box = rpn.compute_loss(torch.from_numpy(logits.reshape(-1, 1)), torch.from_numpy(deltas.reshape(-1, 4)),
                                      [torch.from_numpy((l == 1).astype(np.float32)) for l in labels],
                                      [torch.from_numpy(t) for t in targets])
  obj, box = jax.jit(detection.rpn_loss)(logits, deltas, labels, targets)
  np.testing.assert_allclose(obj, ref_obj.item(), rtol=1e-5)
  np.testing.assert_allclose(box, ref_box.item(), rtol=1e-5)


@pytest.mark.torch
def test_fast_rcnn_loss_equals_torchvision_and_ignores_unsampled():
  torch = _torch()
  from torchvision.models.detection.roi_heads import fastrcnn_loss
  rng = np.random.default_rng(1)
  b, r, c = 2, 12, 5
  logits = rng.normal(size=(b, r, c)).astype(np.float32)
  deltas = rng.normal(size=(b, r, c, 4)).astype(np.float32)
  targets = rng.normal(size=(b, r, 4)).astype(np.float32)
  labels = rng.integers(0, c, size=(b, r)).astype(np.int32)
  labels[:, -3:] = -1                         # not sampled: dropped on our side, absent on theirs
  keep = labels >= 0
  ref_cls, ref_box = fastrcnn_loss(torch.from_numpy(logits[keep]), torch.from_numpy(deltas[keep].reshape(-1, 4 * c)),
                                   [torch.from_numpy(labels[keep].astype(np.int64))], [torch.from_numpy(targets[keep])])
  cls, box = detection.fast_rcnn_loss(logits, deltas, labels, targets)
  np.testing.assert_allclose(cls, ref_cls.item(), rtol=1e-5)
  np.testing.assert_allclose(box, ref_box.item(), rtol=1e-5)


@pytest.mark.torch
def test_mask_loss_equals_torchvision():
  torch = _torch()
  from torchvision.models.detection.roi_heads import maskrcnn_loss, project_masks_on_boxes
  rng = np.random.default_rng(2)
  h = w = 32
  gt_masks = (rng.random((3, h, w)) > 0.5).astype(np.float32)
  gt_labels = np.asarray([1, 3, 2])
  x0, y0 = rng.uniform(0, 16, (2, 6))
  proposals = np.stack([x0, y0, x0 + rng.uniform(4, 16, 6), y0 + rng.uniform(4, 16, 6)], 1).astype(np.float32)
  matched = np.asarray([0, 1, 2, 2, 0, 1])
  logits = rng.normal(size=(6, 4, 28, 28)).astype(np.float32)
  ref = maskrcnn_loss(torch.from_numpy(logits), [torch.from_numpy(proposals)], [torch.from_numpy(gt_masks)],
                      [torch.from_numpy(gt_labels[matched])], [torch.from_numpy(matched)])
  targets = project_masks_on_boxes(torch.from_numpy(gt_masks), torch.from_numpy(proposals),
                                   torch.from_numpy(matched), 28).numpy()
  own = logits[np.arange(6), gt_labels[matched]]
  # Two padding rows (valid False) with garbage must not count.
  own = np.concatenate([own, 1e3 * np.ones((2, 28, 28), np.float32)])[None]
  targets = np.concatenate([targets, np.zeros((2, 28, 28), np.float32)])[None]
  valid = np.asarray([[True] * 6 + [False] * 2])
  np.testing.assert_allclose(detection.mask_loss(own, targets, valid), ref.item(), rtol=1e-5)


@pytest.mark.torch
def test_keypoint_loss_equals_torchvision():
  torch = _torch()
  from torchvision.models.detection.roi_heads import keypointrcnn_loss
  rois, kps = rois_and_keypoints()
  r, k, s = *kps.shape[:2], 56
  idx, valid = keypoint_targets(jnp.asarray(kps), jnp.asarray(rois), s)
  logits = np.random.default_rng(4).normal(size=(r, k, s, s)).astype(np.float32)
  ref = keypointrcnn_loss(torch.from_numpy(logits), [torch.from_numpy(rois)], [torch.from_numpy(kps)],
                          [torch.arange(r)])
  ours = detection.keypoint_loss(logits.transpose(0, 2, 3, 1)[None], idx[None], valid[None])
  np.testing.assert_allclose(ours, ref.item(), rtol=1e-5)


def test_empty_and_padded_examples_give_finite_zero_terms():
  b, a, r, c = 2, 8, 6, 3
  z = jnp.zeros
  obj, box = detection.rpn_loss(z((b, a)), z((b, a, 4)), jnp.zeros((b, a), jnp.int32), z((b, a, 4)))
  assert float(box) == 0.0 and np.isclose(float(obj), np.log(2.0))   # only negatives sampled
  cls, rbox = detection.fast_rcnn_loss(z((b, r, c)), z((b, r, c, 4)), -jnp.ones((b, r), jnp.int32), z((b, r, 4)))
  assert float(cls) == 0.0 and float(rbox) == 0.0
  assert float(detection.mask_loss(z((b, r, 28, 28)), z((b, r, 28, 28)), jnp.zeros((b, r), bool))) == 0.0
  kl = detection.keypoint_loss(z((b, r, 56, 56, 4)), jnp.zeros((b, r, 4), jnp.int32), jnp.zeros((b, r, 4), bool))
  assert float(kl) == 0.0
  # Gradients stay finite with nothing to learn from.
  g = jax.grad(lambda x: detection.mask_loss(x, z((b, r, 28, 28)), jnp.zeros((b, r), bool)))(z((b, r, 28, 28)))
  assert bool(jnp.all(jnp.isfinite(g)))
  # A padded example (batch_mask 0) counts for nothing.
  labels = jnp.asarray([[1, 0, -1, -1], [1, 1, 1, 1]], jnp.int32)
  logits = jnp.asarray([[2.0, -1.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
  obj_masked, _ = detection.rpn_loss(logits, z((2, 4, 4)), labels, z((2, 4, 4)), example_mask=jnp.asarray([1, 0]))
  expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
  np.testing.assert_allclose(obj_masked, expected, rtol=1e-6)


def test_bad_shapes():
  with pytest.raises(ValueError, match="labels"):
    detection.rpn_loss(jnp.zeros((2, 5)), jnp.zeros((2, 5, 4)), jnp.zeros((2, 4), jnp.int32), jnp.zeros((2, 5, 4)))
  with pytest.raises(ValueError, match="example_mask"):
    detection.mask_loss(jnp.zeros((2, 3, 4, 4)), jnp.zeros((2, 3, 4, 4)), jnp.ones((2, 3), bool), jnp.ones((3,)))
