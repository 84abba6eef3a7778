"""keypoint_targets equals torchvision's keypoints_to_heatmap, including a keypoint on the RoI's far corner."""

import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.ops.keypoint_targets import keypoint_targets


def rois_and_keypoints(r: int = 7, k: int = 5, seed: int = 3):
  """`r` random RoIs (x0, y0, x1, y1) and `(r, k, 3)` keypoints around them, keypoint 0 of RoI 0 exactly on
  its far corner (cell S - 1), visible."""
  rng = np.random.default_rng(seed)
  x0, y0 = rng.uniform(0, 20, (2, r))
  rois = np.stack([x0, y0, x0 + rng.uniform(5, 30, r), y0 + rng.uniform(5, 30, r)], 1).astype(np.float32)
  kps = np.stack([rng.uniform(-5, 60, (r, k)), rng.uniform(-5, 60, (r, k)), rng.integers(0, 3, (r, k))], -1)
  kps = kps.astype(np.float32)
  kps[0, 0, :2] = rois[0, 2:]
  kps[0, 0, 2] = 2
  return rois, kps


@pytest.mark.torch
def test_keypoint_targets_equal_torchvision():
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection.roi_heads import keypoints_to_heatmap
  rois, kps = rois_and_keypoints()
  r, k, s = *kps.shape[:2], 56
  ref_idx, ref_valid = keypoints_to_heatmap(torch.from_numpy(kps), torch.from_numpy(rois), s)
  idx, valid = keypoint_targets(jnp.asarray(kps), jnp.asarray(rois), s)
  np.testing.assert_array_equal(np.asarray(valid), ref_valid.numpy().reshape(r, k) > 0)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx.numpy().reshape(r, k))
  assert idx[0, 0] == s * s - 1 and bool(valid[0, 0])
