"""Mask R-CNN / Keypoint R-CNN with imported torchvision weights equal torchvision's forward (eval): FPN
features, RPN proposals, final boxes / scores / labels, 28×28 mask probabilities and 56×56 keypoint logits.

Random weights, so the score threshold is lowered (0.01) to get detections, and the objectness layer is
re-drawn with std 1 (and the FPN outputs scaled to O(1)) so the proposals' scores are well separated
(float rounding cannot reorder them).
Small images (128²) and few proposals keep it to seconds. Tolerances: features rtol 1e-4 (atol 1e-4 of the
map's max); boxes 1e-3 px; scores 1e-4; masks and keypoint logits 1e-4 (absolute, relative to the max).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc
from dense_jax.models.maskrcnn import MaskRCNN
from dense_jax.models.registry import get_model

SIZE = 128
SETTINGS = dict(rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=40, box_score_thresh=0.01,
                box_detections_per_img=25)


def _torchvision_model(torch, tv, builder, **kwargs):
  torch.manual_seed(0)
  tm = builder(weights=None, weights_backbone=None, min_size=SIZE, max_size=SIZE, **SETTINGS, **kwargs)
  for m in tm.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.uniform_(-0.3, 0.3)
      m.running_var.uniform_(0.5, 1.5)
      m.weight.data.uniform_(0.5, 1.5)
      m.bias.data.uniform_(-0.3, 0.3)
  with torch.no_grad():  # Random BN in a deep trunk blows activations up to ~1e3: bring P2-P6 back to O(1).
    for block in tm.backbone.fpn.layer_blocks:
      block[0].weight.mul_(1e-3)
      block[0].bias.mul_(1e-3)
  torch.nn.init.normal_(tm.rpn.head.cls_logits.weight, std=1.0)
  return tm.eval()


def _ours(name, imported, images, **kwargs):
  model = get_model(name, **SETTINGS, **kwargs)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  return model, tvc.load_into(zeros, imported, strict=True)


def _torch_forward(torch, tm, image):
  with torch.no_grad():
    images, _ = tm.transform([torch.from_numpy(image)])
    assert tuple(images.tensors.shape[-2:]) == (SIZE, SIZE)      # no resize, no padding: same input
    feats = tm.backbone(images.tensors)
    proposals, _ = tm.rpn(images, feats)
    detections, _ = tm.roi_heads(feats, proposals, images.image_sizes)
  return feats, proposals[0].numpy(), detections[0]


def _close(ours, ref, rel=1e-4):
  ref = np.asarray(ref)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=rel, atol=rel * max(1.0, float(np.abs(ref).max())))


# kind -> (the builders' head argument, seed of the random image, the model's output key)
EVAL_CASES = {"maskrcnn": (dict(num_classes=5), 0, "instances"),
              "keypointrcnn": (dict(num_keypoints=5), 1, "keypoints")}


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(EVAL_CASES))
def test_eval_forward_equals_torchvision(kind):
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  head, seed, key = EVAL_CASES[kind]
  tm = _torchvision_model(torch, tv, getattr(tv.models.detection, f"{kind}_resnet50_fpn"), **head)
  image = np.random.default_rng(seed).random((3, SIZE, SIZE)).astype(np.float32)
  feats, proposals, det = _torch_forward(torch, tm, image)
  sd = {k: v.numpy() for k, v in tm.state_dict().items()}
  images = jnp.asarray(image.transpose(1, 2, 0)[None])
  model, v = _ours(f"{kind}_resnet50_fpn", getattr(tvc, f"{kind}_resnet50_fpn")(sd), images, **head)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False)[key])(v, images)
  ours_feats = jax.jit(lambda v, x: model.apply(v, x, False, method=MaskRCNN.features))(v, images)
  for level, name in zip(("p2", "p3", "p4", "p5", "p6"), ("0", "1", "2", "3", "pool")):
    _close(ours_feats[level][0], feats[name][0].numpy().transpose(1, 2, 0))
  n = int(out["proposal_valid"][0].sum())
  assert n == len(proposals)
  np.testing.assert_allclose(np.asarray(out["proposals"][0, :n]), proposals, atol=1e-3)
  d = int(out["valid"][0].sum())
  assert d == len(det["boxes"]) and d > 0
  np.testing.assert_allclose(np.asarray(out["boxes"][0, :d]), det["boxes"].numpy(), atol=1e-3)
  np.testing.assert_allclose(np.asarray(out["scores"][0, :d]), det["scores"].numpy(), atol=1e-4)
  np.testing.assert_array_equal(np.asarray(out["labels"][0, :d]), det["labels"].numpy())
  assert not bool(out["valid"][0, d:].any()) and float(jnp.abs(out["boxes"][0, d:]).sum()) == 0.0
  if kind == "maskrcnn":
    _close(out["masks"][0, :d], det["masks"].numpy()[:, 0])
    return
  # The 56×56 keypoint logits at the detected boxes (torchvision's heads on its own boxes).
  with torch.no_grad():
    rh = tm.roi_heads
    x = rh.keypoint_roi_pool(feats, [det["boxes"]], [(SIZE, SIZE)])
    ref = rh.keypoint_predictor(rh.keypoint_head(x)).numpy().transpose(0, 2, 3, 1)
  logits = jax.jit(lambda v, f, b: model.apply(v, f, b, (SIZE, SIZE), method=MaskRCNN.keypoint_branch))(
      v, ours_feats, out["boxes"][:, :d])
  _close(logits[0], ref)
  # Keypoints: the arg-max cell of each map, inside its box.
  kp = np.asarray(out["keypoints"][0, :d])
  boxes = np.asarray(out["boxes"][0, :d])
  right = np.maximum(boxes[:, None, 2], boxes[:, None, 0] + 1)   # width clamped to >= 1
  assert np.all(kp[..., 0] >= boxes[:, None, 0]) and np.all(kp[..., 0] <= right)


# ------------------------------------------------------------------------------------------ training
# With sample sizes above the candidate counts and positive fraction 1, both samplers take every anchor /
# RoI, so torchvision's training losses are deterministic and must equal ours (batch-statistics BN in both).
TRAIN = dict(rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_batch_size_per_image=4096,
             rpn_positive_fraction=1.0, box_batch_size_per_image=64, box_positive_fraction=1.0)


def _instances(rng, num_keypoints=0):
  boxes = np.asarray([[10, 12, 60, 70], [40, 30, 120, 100], [70, 5, 100, 50]], np.float32)  # xyxy
  masks = np.zeros((3, SIZE, SIZE), np.uint8)
  for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
    masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > 0.3
  kps = np.stack([rng.uniform(boxes[:, :1], boxes[:, 2:3], (3, max(num_keypoints, 1))),
                  rng.uniform(boxes[:, 1:2], boxes[:, 3:4], (3, max(num_keypoints, 1))),
                  rng.integers(0, 3, (3, max(num_keypoints, 1))).astype(np.float32)], -1).astype(np.float32)
  return boxes, np.asarray([1, 1, 1] if num_keypoints else [1, 2, 1]), masks, kps


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("kind", ["maskrcnn", "keypointrcnn"])
def test_training_losses_equal_torchvision(kind):
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  rng = np.random.default_rng(5)
  k = 5 if kind == "keypointrcnn" else 0
  builder = getattr(tv.models.detection, f"{kind}_resnet50_fpn")
  extra = dict(num_classes=3) if k == 0 else dict(num_keypoints=k)
  tm = _torchvision_model(torch, tv, builder, **extra, **TRAIN).train()
  image = rng.random((3, SIZE, SIZE)).astype(np.float32)
  boxes, labels, masks, kps = _instances(rng, k)
  target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
  target.update({"keypoints": torch.from_numpy(kps)} if k else {"masks": torch.from_numpy(masks)})
  with torch.no_grad():
    ref = {n: float(v) for n, v in tm([torch.from_numpy(image)], [target]).items()}
  sd = {n: v.numpy() for n, v in tm.state_dict().items()}
  imported = getattr(tvc, f"{kind}_resnet50_fpn")(sd)
  images = jnp.asarray(image.transpose(1, 2, 0)[None])
  model, v = _ours(f"{kind}_resnet50_fpn", imported, images, **extra, **TRAIN)
  batch = {"boxes": jnp.asarray(boxes[None][..., [1, 0, 3, 2]]), "classes": jnp.asarray(labels[None], jnp.int32),
           "num_instances": jnp.asarray([3]), "masks": jnp.asarray(masks[None]), "keypoints": jnp.asarray(kps[None])}
  from dense_jax.losses import detection as ld
  out = jax.jit(lambda v, x, b: ld.detection_losses(model.apply(
      v, x, train=True, targets=b, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})[0][model.task]))(
          v, images, batch)
  names = {"rpn_objectness": "loss_objectness", "rpn_box": "loss_rpn_box_reg", "roi_classifier": "loss_classifier",
           "roi_box": "loss_box_reg", "mask": "loss_mask", "keypoint": "loss_keypoint"}
  assert {names[n] for n in out} == set(ref)
  for n, value in out.items():
    np.testing.assert_allclose(float(value), ref[names[n]], rtol=2e-4, err_msg=n)
