"""Mask R-CNN with `dtype=bfloat16` (compute dtype; float32 parameters): the forward runs in training and
eval with float32 boxes, scores, logits and losses, and its outputs are close to float32's.

"Close" is measured against the network's own sensitivity: a randomly initialised ResNet-50 trunk with
batch statistics is chaotic (perturbing the input by bfloat16's rounding, 2^-8 relative, moves the FPN
maps by ~30 % of their maximum in float32 alone), so the trunk's bfloat16 error must stay within a small
factor of that; the heads, fed the same float32 features, must agree to ~2 %.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.losses import detection as ld
from dense_jax.models._random import random_variables
from dense_jax.models.maskrcnn import MaskRCNN
from dense_jax.models.registry import get_model

SMALL = dict(rpn_pre_nms_top_n_train=150, rpn_post_nms_top_n_train=60, rpn_pre_nms_top_n_test=100,
             rpn_post_nms_top_n_test=40, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
             box_detections_per_img=10, box_candidates_per_img=100)
SIZE = (64, 64)


def _batch():
  rng = np.random.default_rng(0)
  boxes = np.asarray([[[8, 10, 40, 44], [20, 30, 60, 62], [0, 0, 0, 0]]] * 2, np.float32)   # y0, x0, y1, x1
  masks = np.zeros((2, 3, *SIZE), np.uint8)
  for b in range(2):
    for i in range(2):
      y0, x0, y1, x1 = boxes[b, i].astype(int)
      masks[b, i, y0:y1, x0:x1] = 1
  return jax.tree.map(jnp.asarray, {
      "image": rng.random((2, *SIZE, 3), dtype=np.float32), "boxes": boxes, "masks": masks,
      "classes": np.asarray([[1, 2, 0]] * 2, np.int32), "num_instances": np.asarray([2, 2], np.int32),
      "batch_mask": np.ones((2,), np.int32)})


def _rel(a, ref):
  a, ref = np.asarray(a, np.float32), np.asarray(ref, np.float32)
  return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.slow
def test_bfloat16_forward_runs_and_is_close_to_float32():
  f32 = get_model("maskrcnn_resnet50_fpn_narrow", num_classes=3, **SMALL)
  b16 = get_model("maskrcnn_resnet50_fpn_narrow", num_classes=3, dtype=jnp.bfloat16, **SMALL)
  batch = _batch()
  v = random_variables(f32, batch["image"].shape)
  features = lambda m: jax.jit(lambda v, x: m.apply(v, x, True, method=MaskRCNN.features,
                                                    mutable=["batch_stats"])[0])
  ref = features(f32)(v, batch["image"])
  low = features(b16)(v, batch["image"])
  noise = 2.0 ** -8 * jax.random.normal(jax.random.key(1), batch["image"].shape)
  perturbed = features(f32)(v, batch["image"] * (1 + noise))
  for level in ref:
    assert low[level].dtype == jnp.bfloat16
    err, sensitivity = _rel(low[level], ref[level]), _rel(perturbed[level], ref[level])
    assert err < 3 * sensitivity + 0.02, (level, err, sensitivity)
  # The heads on the same float32 features and RoIs: bfloat16 matmuls/convs, float32 outputs.
  rois = jnp.asarray([[[4.0, 6.0, 40.0, 50.0], [10.0, 12.0, 60.0, 44.0]]] * 2)
  for branch in (MaskRCNN.box_branch, MaskRCNN.mask_branch):
    run = lambda m, branch=branch: jax.jit(lambda v, f, r: m.apply(v, f, r, SIZE, method=branch))(v, ref, rois)
    out_ref, out_low = run(f32), run(b16)
    for a, b in zip(jax.tree.leaves(out_low), jax.tree.leaves(out_ref)):
      assert a.dtype == jnp.float32 and _rel(a, b) < 0.02, (branch.__name__, _rel(a, b))
  # Whole forward in bfloat16: training losses and eval detections finite, float32 where they must be.
  out = jax.jit(lambda v, b: b16.apply(v, b["image"], train=True, targets=b, mutable=["batch_stats"],
                                       rngs={"dropout": jax.random.key(0)})[0]["instances"])(v, batch)
  losses = ld.detection_losses(out, batch["batch_mask"])
  assert set(losses) == {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box", "mask"}
  assert all(v.dtype == jnp.float32 and np.isfinite(float(v)) for v in losses.values()), losses
  det = jax.jit(lambda v, x: b16.apply(v, x, train=False))(v, batch["image"])["instances"]
  for key in ("boxes", "scores", "masks", "proposals"):
    assert det[key].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(det[key]))), key
