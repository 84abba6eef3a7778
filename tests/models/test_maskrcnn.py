"""Mask R-CNN / Keypoint R-CNN: parameter counts equal torchvision's (trainable and frozen-buffer BN),
output contracts (eval and train), finite losses (also on an image without instances), one compilation,
argument checks. Parity of the outputs with torchvision: test_maskrcnn_parity.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dense_jax.losses import detection as detection_losses
from dense_jax.models import build as build_lib
from dense_jax.models._random import random_variables
from dense_jax.models.flops import param_counts
from dense_jax.models.maskrcnn import heatmaps_to_keypoints
from dense_jax.models.registry import get_model


@pytest.mark.parametrize("name, frozen_bn, expected", [
    # torchvision 0.29 built without weights (trainable BatchNorm2d), and its pretrained builds'
    # published num_params (FrozenBatchNorm2d in the backbone: affine terms are buffers).
    pytest.param("maskrcnn_resnet50_fpn", False, 44_454_513, id="maskrcnn_r50"),
    pytest.param("maskrcnn_resnet50_fpn", "buffers", 44_401_393, id="maskrcnn_r50_frozen"),
    pytest.param("keypointrcnn_resnet50_fpn", False, 59_190_378, id="keypointrcnn_r50"),
    pytest.param("keypointrcnn_resnet50_fpn", "buffers", 59_137_258, id="keypointrcnn_r50_frozen"),
    # torchvision MaskRCNN / KeypointRCNN on resnet_fpn_backbone('resnet101', norm_layer=BatchNorm2d or
    # its default FrozenBatchNorm2d).
    pytest.param("maskrcnn_resnet101_fpn", False, 63_446_641, id="maskrcnn_r101"),
    pytest.param("maskrcnn_resnet101_fpn", "buffers", 63_341_297, id="maskrcnn_r101_frozen"),
    pytest.param("keypointrcnn_resnet101_fpn", False, 78_182_506, id="keypointrcnn_r101"),
    pytest.param("keypointrcnn_resnet101_fpn", "buffers", 78_077_162, id="keypointrcnn_r101_frozen"),
])
def test_param_counts_match_torchvision(name, frozen_bn, expected):
  assert param_counts(get_model(name, frozen_bn=frozen_bn), (1, 64, 64, 3))["params"] == expected


@pytest.mark.torch
def test_param_counts_equal_torchvision_built_here():
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  tm = tv.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
  assert sum(p.numel() for p in tm.parameters()) == param_counts(get_model("maskrcnn_resnet50_fpn"),
                                                                 (1, 64, 64, 3))["params"]
  del torch


def test_needs_targets_and_defaults():
  m, k = get_model("maskrcnn_resnet50_fpn"), get_model("keypointrcnn_resnet50_fpn")
  assert build_lib.needs_targets(m) and build_lib.needs_targets(k)
  assert (m.num_classes, m.masks, m.num_keypoints) == (91, True, 0)
  assert (k.num_classes, k.masks, k.num_keypoints) == (2, False, 17)


def test_full_size_eval_output_contract():
  model = get_model("maskrcnn_resnet50_fpn")
  x = jax.ShapeDtypeStruct((2, 256, 320, 3), jnp.float32)
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)["instances"]
  assert out["boxes"].shape == (2, 100, 4) and out["scores"].shape == (2, 100)
  assert out["labels"].dtype == jnp.int32 and out["valid"].dtype == jnp.bool_
  assert out["masks"].shape == (2, 100, 28, 28) and out["proposals"].shape == (2, 1000, 4)
  kp = get_model("keypointrcnn_resnet50_fpn")
  v = jax.eval_shape(lambda x: kp.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: kp.apply(v, x, train=False), v, x)["keypoints"]
  assert out["keypoints"].shape == (2, 100, 17, 3) and out["keypoint_scores"].shape == (2, 100, 17)


def test_keypoint_head_group_norm():
  """norm='gn': each conv loses its bias and gains a GroupNorm (scale + bias); the output is normalised per
  group of channels before the ReLU, so with a unit-scale, zero-bias GroupNorm half of it is positive."""
  from dense_jax.models.heads.keypoint import KeypointHead
  x = 30.0 * jax.random.normal(jax.random.key(0), (3, 14, 14, 16)) + 5.0   # the FPN's large, offset features
  plain, gn = KeypointHead((8, 8)), KeypointHead((8, 8), norm="gn")
  vp, vg = plain.init(jax.random.key(1), x), gn.init(jax.random.key(1), x)
  assert set(vp["params"]) == {"conv_fcn1", "conv_fcn2"} and "bias" in vp["params"]["conv_fcn1"]
  assert set(vg["params"]) == {"conv_fcn1", "conv_fcn2", "gn1", "gn2"} and "bias" not in vg["params"]["conv_fcn1"]
  # Parameter count: 2 convs of 9*16*8 + 9*8*8 weights, GroupNorm 2 x (8 + 8), no conv bias.
  assert sum(a.size for a in jax.tree.leaves(vg["params"])) == 9 * 16 * 8 + 9 * 8 * 8 + 2 * 16
  # Reference for the first layer: conv, then GroupNorm over groups of gcd(32, 8) = 8 channels -> 1 channel each.
  k = vg["params"]["conv_fcn1"]["kernel"]
  y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = (y - y.mean(axis=(1, 2), keepdims=True)) / jnp.sqrt(y.var(axis=(1, 2), keepdims=True) + 1e-5)
  first = KeypointHead((8,), norm="gn").apply({"params": {"conv_fcn1": vg["params"]["conv_fcn1"],
                                                          "gn1": vg["params"]["gn1"]}}, x)
  np.testing.assert_allclose(first, jax.nn.relu(y), atol=1e-4)
  assert 0.4 < float(jnp.mean(first > 0)) < 0.6
  with pytest.raises(ValueError, match=r"keypoint_head_norm: expected one of \('', 'gn'\), got 'bn'"):
    KeypointHead((8,), norm="bn").init(jax.random.key(0), x)


def test_heatmaps_to_keypoints_hand_case():
  logits = jnp.zeros((1, 4, 4, 2)).at[0, 1, 3, 0].set(5.0).at[0, 0, 0, 1].set(2.0)
  kp, score = heatmaps_to_keypoints(logits, jnp.asarray([[10.0, 20.0, 18.0, 24.0]]))
  # Keypoint 0 at cell (row 1, col 3): x = 10 + 3.5 * 8 / 4, y = 20 + 1.5 * 4 / 4.
  np.testing.assert_allclose(kp[0], [[17.0, 21.5, 1.0], [11.0, 20.5, 1.0]])
  np.testing.assert_allclose(score[0], [5.0, 2.0])


def test_bad_arguments():
  x = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="images"):
    get_model("maskrcnn_resnet50_fpn_narrow").init(jax.random.key(0), jnp.zeros((1, 60, 64, 3)), train=False)
  with pytest.raises(ValueError, match="rpn_post_nms_top_n_test"):
    get_model("maskrcnn_resnet50_fpn_narrow", rpn_post_nms_top_n_test=0).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="num_keypoints"):
    get_model("keypointrcnn_resnet50_fpn_narrow", num_keypoints=0).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match=r"object_classes: expected class ids >= 1 with merge_classes=True, got \(5,\)"):
    get_model("maskrcnn_resnet50_fpn_narrow", object_classes=(5,)).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match=r"object_classes: expected class ids >= 1.*got \(0,\)"):
    get_model("keypointrcnn_resnet50_fpn_narrow", object_classes=(0,)).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="targets"):
    m = get_model("maskrcnn_resnet50_fpn_narrow")
    jax.eval_shape(lambda: m.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=True))


# ------------------------------------------------------------------------------------------ training
SMALL = dict(rpn_pre_nms_top_n_train=150, rpn_post_nms_top_n_train=60, rpn_pre_nms_top_n_test=100,
             rpn_post_nms_top_n_test=40, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
             box_detections_per_img=10, box_candidates_per_img=100)


def _batch(num_keypoints=0, seed=0, size=64, m=4):
  """Two images: the first with 3 instances (one row of padding), the second with none."""
  rng = np.random.default_rng(seed)
  boxes = np.zeros((2, m, 4), np.float32)
  masks = np.zeros((2, m, size, size), np.uint8)
  keypoints = np.zeros((2, m, max(num_keypoints, 1), 3), np.float32)
  for i in range(3):
    y0, x0 = rng.integers(0, size // 2, 2)
    y1, x1 = y0 + rng.integers(8, size // 2), x0 + rng.integers(8, size // 2)
    boxes[0, i] = (y0, x0, y1, x1)
    masks[0, i, y0:y1, x0:x1] = 1
    keypoints[0, i, :, 0] = rng.uniform(x0, x1, keypoints.shape[2])
    keypoints[0, i, :, 1] = rng.uniform(y0, y1, keypoints.shape[2])
    keypoints[0, i, :, 2] = rng.integers(0, 3, keypoints.shape[2])
  batch = {"image": rng.random((2, size, size, 3)).astype(np.float32), "boxes": boxes,
           "classes": np.asarray([[1, 2, 1, 0], [0, 0, 0, 0]], np.int32), "num_instances": np.asarray([3, 0], np.int32),
           "masks": masks, "batch_mask": np.ones((2,), np.int32)}
  if num_keypoints:
    batch["keypoints"] = keypoints
  return jax.tree.map(jnp.asarray, batch)


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs", [
    ("maskrcnn_resnet50_fpn_narrow", dict(num_classes=3)),
    ("keypointrcnn_resnet50_fpn_narrow", dict(num_keypoints=4)),
])
def test_train_step_finite_losses_and_one_compilation(name, kwargs):
  model = get_model(name, **SMALL, **kwargs)
  task = "instances" if model.masks else "keypoints"
  batch = _batch(model.num_keypoints)
  variables = random_variables(model, batch["image"].shape)
  traces = []

  def loss_fn(params, batch_stats, batch, rng):
    traces.append(1)
    out, new = build_lib.apply_model(model, {"params": params, "batch_stats": batch_stats}, batch["image"],
                                     train=True, batch=batch, mutable=["batch_stats"], rngs={"dropout": rng})
    losses = detection_losses.detection_losses(out[task], batch["batch_mask"])
    return sum(losses.values()), (losses, out[task])

  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss, (losses, out)), grads = step(variables["params"], variables["batch_stats"], batch, jax.random.key(0))
  expected = {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box"} | ({"mask"} if model.masks else {"keypoint"})
  assert set(losses) == expected
  assert all(np.isfinite(float(v)) for v in losses.values()) and np.isfinite(float(loss))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads["rpn"]))) > 0
  # Sampled counts: RPN at most 64 anchors per image; RoIs: positives only where there are instances.
  assert int((out["rpn_labels"] >= 0).sum(axis=1).max()) <= 64
  assert int((out["roi_labels"] > 0)[1].sum()) == 0 and int((out["roi_labels"] > 0)[0].sum()) > 0
  assert out["roi_class_logits"].shape == (2, 32, model.num_classes)
  if model.masks:
    assert out["mask_logits"].shape == (2, 8, 28, 28) and not bool(out["mask_valid"][1].any())
    assert float(out["mask_targets"].max()) <= 1.0 + 1e-6 and float(out["mask_targets"].max()) > 0.5
  else:
    assert out["keypoint_logits"].shape == (2, 8, 56, 56, 4) and not bool(out["keypoint_valid"][1].any())
  # Another batch with other values (same shapes): no new trace.
  step(variables["params"], variables["batch_stats"], _batch(model.num_keypoints, seed=1), jax.random.key(1))
  assert len(traces) == 1
  # It learns: Adam on this one batch (same sampling key) lowers the total loss markedly.
  tx = optax.adam(1e-3)

  @jax.jit
  def update(grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, first = variables["params"], float(loss)
  opt_state = tx.init(params)
  for _ in range(15):
    (value, _), grads = step(params, variables["batch_stats"], batch, jax.random.key(0))
    params, opt_state = update(grads, opt_state, params)
  assert len(traces) == 1 and float(value) < 0.7 * first, (first, float(value))
  # A batch without any instance (same shapes, same program): finite, box / mask / keypoint terms 0.
  empty = {**batch, "num_instances": jnp.zeros((2,), jnp.int32), "classes": jnp.zeros((2, 4), jnp.int32)}
  (value, (losses, _)), grads = step(params, variables["batch_stats"], empty, jax.random.key(2))
  assert np.isfinite(float(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(losses["rpn_box"]) == 0.0 and float(losses["roi_box"]) == 0.0
  assert float(losses.get("mask", 0.0)) == 0.0 and float(losses.get("keypoint", 0.0)) == 0.0
  assert len(traces) == 1


@pytest.mark.slow
def test_num_sampled_masks_trains_the_heads_on_the_first_positive_slots():
  """K = num_sampled_masks: the mask head's slots are the first K of the unbounded run's (same sampling key),
  which hold min(K, #positives) positives, a uniformly random subset (positives come first, in random order)."""
  batch = _batch()
  outs = {}
  for k in (0, 2):
    model = get_model("maskrcnn_resnet50_fpn_narrow", num_classes=3, num_sampled_masks=k, **SMALL)
    variables = random_variables(model, batch["image"].shape)
    outs[k], _ = build_lib.apply_model(model, variables, batch["image"], train=True, batch=batch,
                                       mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)})
  full, bounded = outs[0]["instances"], outs[2]["instances"]
  assert full["mask_logits"].shape == (2, 8, 28, 28) and bounded["mask_logits"].shape == (2, 2, 28, 28)
  assert int(full["mask_valid"][0].sum()) > 2   # more positives than slots: the bound is what is tested
  for key in ("mask_logits", "mask_targets", "mask_valid"):
    np.testing.assert_allclose(bounded[key], full[key][:, :2], atol=1e-5, err_msg=key)
  np.testing.assert_array_equal(bounded["roi_labels"], full["roi_labels"])   # the box branch is unchanged
  with pytest.raises(ValueError, match="num_sampled_masks"):
    get_model("maskrcnn_resnet50_fpn_narrow", num_sampled_masks=-1).init(
        jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)


def test_bfloat16_train_outputs_trace():
  model = get_model("maskrcnn_resnet50_fpn_narrow", num_classes=3, dtype=jnp.bfloat16, **SMALL)
  batch = _batch()
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), batch["image"])
  out = jax.eval_shape(lambda v, b: model.apply(v, b["image"], train=True, targets=b, mutable=["batch_stats"],
                                                rngs={"dropout": jax.random.key(0)})[0], v, batch)["instances"]
  assert out["mask_logits"].dtype == jnp.float32 and out["roi_class_logits"].shape == (2, 32, 3)
