"""torchvision's Mask R-CNN configured like one of our `MaskRCNN` models, and its timed pieces, for
`experiments/benchmarks/detection.py`.

`torchvision_like(model, size)`: `torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None,
weights_backbone=None)` (so BatchNorm2d with batch statistics in training, every layer trainable, as
ours with `frozen_bn=False`) with `min_size = min(H, W)`, `max_size = max(H, W)` (no resize: scale 1)
and every count and threshold copied from our model's fields (`SETTINGS`), the anchor sizes and
aspect ratios too; `num_classes` ours. The ResNet-50 width is torchvision's: compare with a full-width
model of ours (a narrow one gives meaningless ratios, as in `--smoke`).

Inputs: `torch_inputs(batch)` turns our batch (`boxes (B, M, 4)` y0, x0, y1, x1 px, `classes`,
`num_instances`, `masks (B, M, H, W)`, `image (B, H, W, 3)` in [0, 1]) into torchvision's list of
`(3, H, W)` images and list of target dicts (`boxes` x0, y0, x1, y1; `labels`; `masks`), dropping
padding rows.

Only imported where torch is installed.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator

# Fields of our `MaskRCNN` that torchvision's `MaskRCNN` takes under the same name and meaning.
SETTINGS = ("rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
            "rpn_post_nms_top_n_test", "rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh",
            "rpn_batch_size_per_image", "rpn_positive_fraction", "rpn_score_thresh", "box_score_thresh",
            "box_nms_thresh", "box_detections_per_img", "box_fg_iou_thresh", "box_bg_iou_thresh",
            "box_batch_size_per_image", "box_positive_fraction")


def torchvision_like(model, size: tuple[int, int], seed: int = 0):
  """torchvision's `maskrcnn_resnet50_fpn` with our model's settings (module docstring), in train mode."""
  if model.depth != 50 or not model.masks or model.num_keypoints:
    raise ValueError(f"model: expected a Mask R-CNN on ResNet-50 (depth 50, masks, no keypoints), got depth "
                     f"{model.depth}, masks {model.masks}, num_keypoints {model.num_keypoints}")
  torch.manual_seed(seed)
  sizes = tuple(tuple(int(v) for v in np.atleast_1d(s)) for s in model.anchor_sizes)   # one or more per level
  anchors = AnchorGenerator(sizes, (tuple(float(r) for r in model.aspect_ratios),) * len(sizes))
  return torchvision.models.detection.maskrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=model.num_classes, min_size=min(size), max_size=max(size),
      rpn_anchor_generator=anchors, **{k: getattr(model, k) for k in SETTINGS}).train()


def state_dict_numpy(tm) -> dict[str, np.ndarray]:
  """The model's state dict as NumPy arrays (for `dense_jax.convert.torchvision`)."""
  return {k: v.detach().cpu().numpy() for k, v in tm.state_dict().items()}


def torch_inputs(batch: dict, device: str = "cpu"):
  """(images, targets) in torchvision's form (module docstring)."""
  images, targets = [], []
  for b in range(batch["image"].shape[0]):
    n = int(batch["num_instances"][b])
    images.append(torch.from_numpy(np.ascontiguousarray(batch["image"][b].transpose(2, 0, 1))).to(device))
    targets.append({"boxes": torch.from_numpy(batch["boxes"][b, :n][:, [1, 0, 3, 2]].copy()).to(device),
                    "labels": torch.from_numpy(batch["classes"][b, :n].astype(np.int64)).to(device),
                    "masks": torch.from_numpy(batch["masks"][b, :n].copy()).to(device)})
  return images, targets


def _sync(device: str):
  if device.startswith("cuda"):
    torch.cuda.synchronize()


def train_step(tm, images, targets, lr: float, autocast_dtype=None, device: str = "cpu"):
  """A no-argument callable: one training step (losses summed, backward, SGD momentum 0.9)."""
  opt = torch.optim.SGD(tm.parameters(), lr=lr, momentum=0.9)

  def run():
    tm.train()
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None):
      losses = tm(images, targets)
    sum(losses.values()).backward()
    opt.step()
    _sync(device)

  return run


def inference(tm, images, device: str = "cpu"):
  """A no-argument callable: the eval forward (RPN, detection with NMS, masks pasted at image size)."""
  def run():
    tm.eval()
    with torch.no_grad():
      out = tm(images)
    _sync(device)
    return out

  return run


def mask_roi_counter(tm) -> list:
  """A list that collects, on each forward, the number of RoIs the mask head gets per image."""
  counts = []

  def hook(module, inputs, output):
    del module, output
    counts.append([len(b) for b in inputs[1]])   # MultiScaleRoIAlign(features, boxes, image_sizes)

  tm.roi_heads.mask_roi_pool.register_forward_hook(hook)
  return counts


def parts(tm, images, targets) -> dict:
  """No-argument callables for torchvision's own modules on their real inputs: `{(part, pass): fn}`.

  Training (`tm.train()`, batch statistics): 'transform' (normalise, resize at scale 1, batch);
  'backbone' (ResNet-50 + FPN), 'rpn' (head, anchors, decode, top-k, NMS, matching, sampling, its
  losses), 'roi_heads' (sampling, RoIAlign, box head, mask head, losses) — each 'fwd' (autograd
  recording, as in a training step) and 'fwd+bwd' (backward of the losses, or of a random cotangent
  for the backbone's maps). The inputs of each part are computed once, untimed.
  """
  tm.train()
  with torch.no_grad():
    il, tg = tm.transform(images, targets)
    feats = tm.backbone(il.tensors)
    proposals, _ = tm.rpn(il, feats, tg)
  gen = torch.Generator().manual_seed(1)
  cts = [torch.randn(f.shape, generator=gen) for f in feats.values()]

  def detached(require_grad: bool):
    return {k: v.detach().requires_grad_(require_grad) for k, v in feats.items()}

  def backbone_fwd():
    tm.backbone(il.tensors)

  def backbone_fb():
    torch.autograd.backward(list(tm.backbone(il.tensors).values()), cts)

  def rpn(backward: bool):
    def run():
      _, losses = tm.rpn(il, detached(backward), tg)
      if backward:
        sum(losses.values()).backward()
    return run

  def roi_heads(backward: bool):
    def run():
      _, losses = tm.roi_heads(detached(backward), [p.detach() for p in proposals], il.image_sizes, tg)
      if backward:
        sum(losses.values()).backward()
    return run

  def train_mode(fn):   # the eval parts may run in between (timed in turn)
    def timed():
      tm.train()
      fn()
    return timed

  fns = {("transform", "fwd"): lambda: tm.transform(images, targets),
         ("backbone", "fwd"): backbone_fwd, ("backbone", "fwd+bwd"): backbone_fb,
         ("rpn", "fwd"): rpn(False), ("rpn", "fwd+bwd"): rpn(True),
         ("roi_heads", "fwd"): roi_heads(False), ("roi_heads", "fwd+bwd"): roi_heads(True)}
  return {k: train_mode(f) for k, f in fns.items()}


def eval_parts(tm, images) -> dict:
  """No-argument callables for the eval pieces (`no_grad`) on their real inputs: `{(part, 'fwd'): fn}`:
  'eval transform', 'eval backbone', 'eval rpn', 'eval roi_heads' (box head, class-wise NMS, mask head on
  the detections), 'eval postprocess' (boxes rescaled, masks pasted at image resolution: work our model
  does not do, it returns the 28×28 masks)."""
  tm.eval()
  with torch.no_grad():
    il, _ = tm.transform(images)
    feats = tm.backbone(il.tensors)
    proposals, _ = tm.rpn(il, feats)
    detections, _ = tm.roi_heads(feats, proposals, il.image_sizes)
  original = [tuple(im.shape[-2:]) for im in images]

  def run(fn):
    def timed():
      tm.eval()
      with torch.no_grad():
        fn()
    return timed

  return {("eval transform", "fwd"): run(lambda: tm.transform(images)),
          ("eval backbone", "fwd"): run(lambda: tm.backbone(il.tensors)),
          ("eval rpn", "fwd"): run(lambda: tm.rpn(il, feats)),
          ("eval roi_heads", "fwd"): run(lambda: tm.roi_heads(feats, proposals, il.image_sizes)),
          ("eval postprocess", "fwd"): run(lambda: tm.transform.postprocess(
              [{k: v.clone() for k, v in d.items()} for d in detections], il.image_sizes, original))}

