"""Panoptic FPN: output shapes (traced), the semantic head's parameter count against its layer table, mask
pasting against torchvision's rule, the merge inside the model on hand-made detections, bad arguments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models import get_model
from dense_jax.models.panoptic_fpn import PanopticFPN, paste_masks
from dense_jax.ops import paste_masks as paste_ref

THINGS = (4, 5, 6, 7, 8)   # dense_shapes: 9 classes, 0-3 stuff
KEY = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}


def narrow(**kwargs):
  return get_model("panoptic_fpn_resnet50_narrow", **{"num_classes": 9, "thing_classes": THINGS, **kwargs})


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_output_shapes_eval_and_train():
  model = narrow(box_detections_per_img=10, rpn_post_nms_top_n_test=50, rpn_pre_nms_top_n_test=100)
  images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  out, variables = jax.eval_shape(functools.partial(model.init_with_output, train=False), KEY, images)
  assert sorted(out) == ["instances", "panoptic", "panoptic_semantic"]
  assert out["panoptic_semantic"].shape == (2, 64, 64, 5)   # 4 stuff classes + "thing"
  s = 1 + 10 + 5
  pan = out["panoptic"]
  assert pan["panoptic"].shape == (2, 64, 64) and pan["panoptic"].dtype == jnp.int32
  for key in ("segment_classes", "segment_is_thing", "segment_valid", "segment_scores"):
    assert pan[key].shape == (2, s), key
  assert out["instances"]["masks"].shape == (2, 10, 28, 28)
  targets = {"boxes": jnp.zeros((2, 8, 4)), "classes": jnp.zeros((2, 8), jnp.int32),
             "num_instances": jnp.zeros((2,), jnp.int32), "masks": jnp.zeros((2, 8, 64, 64), jnp.uint8)}
  train_out, _ = jax.eval_shape(
      lambda v, x, t: model.apply(v, x, train=True, targets=t, rngs={"dropout": KEY["dropout"]},
                                  mutable=["batch_stats"]),
      variables, images, targets)
  assert sorted(train_out) == ["instances", "panoptic_semantic"]
  assert "mask_logits" in train_out["instances"] and train_out["panoptic_semantic"].shape == (2, 64, 64, 5)


def test_semantic_head_adds_its_layer_table_to_mask_rcnn():
  """Parameters = Mask R-CNN's (same classes and width) + the semantic head: 3×3 convs without bias
  (P2: 1, P3: 1, P4: 2, P5: 3 stages, the first of each from the FPN's width), GroupNorm scale+bias per
  stage, a 1×1 predictor with bias to n_stuff + 1."""
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  params = lambda m: jax.eval_shape(functools.partial(m.init, train=False), KEY, images)["params"]
  pan = params(narrow())
  mrcnn = params(get_model("maskrcnn_resnet50_fpn_narrow", num_classes=9))
  fpn, c, k = 64, 32, 5   # narrow: 256·0.25, 128·0.25, 4 stuff + 1
  head = 4 * 9 * fpn * c + 3 * 9 * c * c + 7 * 2 * c + c * k + k
  assert count(pan["semantic_head"]) == head
  assert count(pan) == count(mrcnn) + head


def test_paste_masks_equals_the_exact_paste_and_agrees_with_torchvision_rule():
  """The jit-able JAX paste equals `ops.paste_masks`'s 'exact' mode (NumPy, checked against grid_sample
  there); torchvision's rule (integer corners grown by one pixel) differs only along the box border."""
  y, x = np.mgrid[0:28, 0:28]
  blob = np.exp(-((y - 13.5) ** 2 + (x - 11) ** 2) / (2 * 7.0 ** 2)).astype(np.float32)
  square = np.zeros((28, 28), np.float32)
  square[4:24, 6:22] = 1.0
  masks = np.stack([blob, square, blob])[None]
  boxes = np.array([[[4.0, 6.0, 40.0, 30.0], [10.5, 0.0, 63.0, 50.2], [20.0, 20.0, 28.0, 27.0]]], np.float32)
  probs = np.asarray(paste_masks(jnp.asarray(masks), jnp.asarray(boxes), (64, 64)))[0]
  np.testing.assert_allclose(probs, paste_ref.paste_masks(masks[0], boxes[0], (64, 64), mode="exact"), atol=1e-5)
  ours = probs >= 0.5
  ref = paste_ref.paste_masks(masks[0], boxes[0], (64, 64), mode="torchvision") >= 0.5
  for i, (x0, y0, x1, y1) in enumerate(boxes[0]):
    differ = (ours[i] ^ ref[i]).sum()
    assert differ <= 2 * ((x1 - x0) + (y1 - y0)) / 2 + 4, (i, differ)   # about one border ring at most
    if min(x1 - x0, y1 - y0) >= 20:
      assert (ours[i] & ref[i]).sum() / (ours[i] | ref[i]).sum() > 0.9, i
  assert not ours[0, :, 41:].any() and not ours[0, 31:].any()   # nothing outside the box


def test_merge_inside_the_model_maps_stuff_channels_to_class_ids():
  model = narrow(score_threshold=0.5, stuff_area_fraction=4 / (32 * 32))
  h = w = 32
  # Two detections: a disc (class 4) filling box (0, 0)-(16, 16), a low-scoring square that is dropped.
  instances = {"masks": jnp.ones((1, 2, 28, 28)), "boxes": jnp.array([[[0.0, 0.0, 16.0, 16.0], [16, 16, 32, 32]]]),
               "scores": jnp.array([[0.9, 0.2]]), "labels": jnp.array([[4, 5]]), "valid": jnp.array([[True, True]])}
  logits = np.zeros((1, h, w, 5), np.float32)
  logits[0, :, :, 1] = 1.0             # channel 1 = class 1 (sky) everywhere ...
  logits[0, 20:, :, 3] = 2.0           # ... but channel 3 = class 3 (wall) in the bottom rows
  logits[0, :, 28:, 4] = 5.0           # and "thing" on the right edge: void unless an instance claims it
  out = model.apply({}, instances, jnp.asarray(logits), method=PanopticFPN.merge)
  ids = np.asarray(out["panoptic"][0])
  classes = np.asarray(out["segment_classes"][0])
  assert classes[ids[5, 5]] == 4 and out["segment_is_thing"][0, ids[5, 5]]
  assert ids[5, 5] == 1 and np.all(ids[:16, :16] == 1)
  assert classes[ids[18, 20]] == 1 and classes[ids[25, 5]] == 3
  assert np.all(ids[:, 28:] == 0)       # the thing channel without an instance is void
  assert set(np.unique(ids)) == {0, 1, 2, 3}


def test_bad_thing_classes():
  images = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match=r"thing_classes: expected distinct ids in \[1, num_classes=9\)"):
    narrow(thing_classes=(4, 9)).init(KEY, images)


def test_detector_predicts_only_thing_classes():
  model = narrow(width=0.125, box_score_thresh=0.0, box_detections_per_img=20, rpn_post_nms_top_n_test=30,
                 rpn_pre_nms_top_n_test=60)
  images = jax.random.uniform(jax.random.PRNGKey(3), (1, 32, 32, 3))
  out, _ = model.init_with_output(KEY, images, train=False)
  det = out["instances"]
  labels = np.asarray(det["labels"])[np.asarray(det["valid"])]
  assert labels.size and set(labels.tolist()) <= set(THINGS), labels
  assert set(np.asarray(out["panoptic"]["segment_classes"])[np.asarray(out["panoptic"]["segment_is_thing"])]
             .tolist()) <= set(THINGS)
