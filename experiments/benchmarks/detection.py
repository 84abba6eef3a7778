"""Mask R-CNN and Panoptic FPN speed: our training step and inference against torchvision's on the CPU,
where the time goes, and images/s, memory and FLOP/s in bfloat16 on one GPU (issue 12 §4, issue 13).

    python -m experiments.benchmarks.detection                   # CPU: 512x512, batch 2, float32, vs torchvision
    python -m experiments.benchmarks.detection --repeats 5       # the quiet measurement (5 is the default)
    python -m experiments.benchmarks.detection --smoke           # tiny shapes (~1-2 min): checks the code paths
    python -m experiments.benchmarks.detection --device-mode     # one GPU: batch 8, bfloat16, 512x512
    python -m experiments.benchmarks.detection --device-mode --size 800x1088   # about detectron2's scale
    python -m experiments.benchmarks.detection --device-mode --smoke           # device mode's paths, any backend

The load average is printed before and after; torchvision rows need `torch` + `torchvision` (absent: "-").

1. CPU (default). `maskrcnn_resnet50_fpn` (91 classes, float32) at `--size` (512x512), batch `--batch` (2),
   ours against torchvision's `maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
   min_size=max_size=512)` with every count and threshold copied from our model (RPN pre/post-NMS top-n,
   256 sampled anchors, 512 sampled RoIs, 100 detections per image; `torch_maskrcnn.SETTINGS`), the
   anchors too, `torch.set_num_threads(os.cpu_count())`. Both start from the same weights (torchvision's
   initialisation, imported into ours by `dense_jax.convert.torchvision`), so their proposals and
   detections agree and torchvision's data-dependent work (NMS sizes, detections, mask RoIs) is what
   ours faces. One synthetic batch for both (`synthetic_batch`: 2-5 elliptic instances per image,
   seed 0).
   - Training step, ours: the trainer's own step (`dense_jax.train.step.make_train_step` with the
     `instances` task's loss: forward in training mode, RPN / RoI sampling, losses, backward, SGD
     momentum 0.9, learning rate 1e-4, state donated); torchvision: `model(images, targets)`, summed
     losses, backward, `torch.optim.SGD(momentum=0.9)`.
   - Inference, ours: `apply_model(train=False)` jitted (proposals by padded NMS, box head on all
     proposals, the best 1000 (proposal, class) candidates, class-wise padded NMS, mask head on the 100
     padded detection slots, 28x28 masks); torchvision: `model.eval()` under `no_grad`, which also
     pastes every mask at image resolution (its `postprocess`, timed alone in table 2).
   Timed alternately (ours, torchvision, ours, ...; `zoo.interleaved_images_per_s`): images/s from the
   median of `--repeats` steps after a warm-up; ratio = ours / torchvision (>= 1: ours is faster).
   Static shapes cost work: ours runs the mask head on box_batch_size x positive_fraction = 128 RoI
   slots per image in training and on all 100 detection slots in eval, torchvision on the actual
   positives / detections; both counts are printed under the tables.
2. Where the time goes (`--skip-parts` to leave out). Ours: each part a separately jitted function of
   the model's own methods (`MaskRCNN.features`, `rpn_outputs`, `proposals`, `roi_features`, the head
   modules, `detect`, `box_branch`, `mask_branch`) or of the functions the model calls
   (`ops.rcnn_targets.rpn_targets / roi_targets / mask_targets`, `losses.rpn_loss /
   fast_rcnn_loss / mask_loss`, the optimizer update), fed the real intermediate arrays of this batch
   (computed once, untimed). 'fwd' runs the part alone; 'fwd+bwd' its forward plus the VJP with a
   random cotangent with respect to what the gradient flows through in training (parameters and
   incoming features; RoIAlign: the FPN maps; losses: the head outputs); parts without a gradient
   (top-k, NMS, matching, sampling, mask crops, the update) have 'fwd' only. Cut this way, XLA cannot
   fuse across part boundaries and each part pays its own dispatch, so the parts' sum differs from the
   one-program step (both are printed). Torchvision: its own modules on their real inputs
   (`torch_maskrcnn.parts` / `eval_parts`): `transform`, `backbone`, `rpn` (head, anchors, decode,
   NMS, matching, sampling, its losses), `roi_heads` (sampling, RoIAlign, box head, mask head, losses;
   in eval: box head, class-wise NMS, mask head); 'fwd' with autograd recording (as in its training
   step), 'fwd+bwd' adds the backward of the part's losses (of a random cotangent for the backbone).
   The grouped table sums our parts into torchvision's three modules. All parts, ours and theirs, are
   timed in turn (`gpu_suite._median_ms`), medians of `--repeats`.
3. `--device-mode` (one GPU): `--batch 8 --dtype bfloat16` (compute dtype of convolutions and dense
   layers, `dtype=` of the models; parameters, boxes, anchors, NMS, RoIAlign coordinates and losses stay
   float32) at `--size` (512x512) for `maskrcnn_resnet50_fpn` and `panoptic_fpn_resnet50` (`--models`;
   Panoptic FPN: 134 COCO panoptic classes, things 1..80, `instances` + `panoptic` task losses), random
   weights: step ms, images/s, TFLOP/s from `compiled.cost_analysis()` and its fraction of the measured
   `--dtype` matmul peak (`gpu_suite.matmul_peak`, 8192^3), peak memory: XLA's estimate for the compiled
   step (arguments + outputs + temporaries - donated aliases, `memory_analysis()`) and the allocator's
   peak (`memory_stats()['peak_bytes_in_use']`, cumulative over the process, so in run order);
   torchvision's `maskrcnn_resnet50_fpn` train step on cuda (`torch.autocast` bfloat16, same batch, same
   settings) timed alternately with ours when `torch.cuda` is available, with `max_memory_allocated`.
   Then detectron2's published figure beside ours: Mask R-CNN R50-FPN trains at 62 img/s on 8 V100s
   (docs/notes/benchmarks.md: iterations 100-500, 2 images per GPU, short side 800 / long side at most
   1333, no AMP in those configs, i.e. float32), 7.75 img/s per V100 -> ours per GPU; per FLOP of peak:
   (ours img/s / measured peak) / (7.75 / V100 peak) with V100 fp16 tensor 125 TFLOP/s (and, since
   their run was float32, fp32 15.7 TFLOP/s). Their images hold ~3-4x the pixels of 512x512:
   `--size 800x1088` is closer.
   JAX's preallocation is switched off in this mode (XLA_PYTHON_CLIENT_PREALLOCATE=false, unless set)
   so torch can share the GPU.
4. `--smoke`: the narrow variants (`maskrcnn_resnet50_fpn_narrow`, `panoptic_fpn_resnet50_narrow`) with
   small counts at 64x64, batch 2, 2 repeats (torchvision: full width, same counts): code paths only,
   the figures mean nothing. tests/experiments/test_detection_benchmark.py runs it.

Measured 2026-11-30, 2-core CPU, quiet (load average 1.2-2.1), jax 0.10.2, torch 2.14.1 with 2 threads:

    python -m experiments.benchmarks.detection                          # mask head on all 128 slots
      train step 0.327 vs 0.508 img/s (0.64x; 1110 GFLOP/step, 181 GFLOP/s), inference 1.090 vs 0.962 (1.13x)
      where it goes (fwd+bwd ms): mask head 3422 of the 6121 ms step, backbone 1784 (torchvision's 1774)
    python -m experiments.benchmarks.detection --num-sampled-masks 32   # 32 slots (>= this batch's 12-14 positives)
      train step 0.562 vs 0.496 img/s (1.13x; 691 GFLOP/step, 194 GFLOP/s of a 276 GFLOP/s matmul peak),
      inference 1.070 vs 1.006 (1.06x); roi_heads fwd+bwd 1294 ms vs torchvision's 1592

The static 128 mask slots cost the difference: torchvision's mask head runs on the actual positives
(13-19 per image here). `num_sampled_masks` bounds the slots (a random subset where an image has more
positives than K); with K at least the positives per image the loss is the same as with all slots.

Runs without tensorflow, tensorflow_datasets, grain, ml_collections, orbax and pycocotools (the GPU
machine has none of them): it imports the trainer's step from `dense_jax.train.step`, not the loop.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dense_jax import tasks as tasks_lib
from dense_jax.losses import detection as ld
from dense_jax.models._random import random_variables
from dense_jax.models.build import apply_model
from dense_jax.models.flops import count_params
from dense_jax.models.panoptic_fpn import PanopticFPN
from dense_jax.models.registry import get_model
from dense_jax.ops import rcnn_targets as tg
from dense_jax.ops.anchors import fpn_anchors_per_level
from dense_jax.train.state import TrainState
from dense_jax.train.step import make_train_step
from experiments.benchmarks.gpu_suite import (DTYPES, _median_ms, allocator_peak_bytes, flops_of, matmul_peak,
                                             xla_peak_bytes)
from experiments.benchmarks.zoo import interleaved_images_per_s

LR = 1e-4
SMOKE_SIZE = 64
SMOKE_COUNTS = dict(rpn_pre_nms_top_n_train=150, rpn_post_nms_top_n_train=60, rpn_pre_nms_top_n_test=100,
                    rpn_post_nms_top_n_test=40, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
                    box_detections_per_img=10, box_candidates_per_img=100)
D2_IMG_S, D2_GPUS = 62.0, 8            # detectron2 docs/notes/benchmarks.md, Mask R-CNN R50-FPN, 8 V100
V100_FP16_TENSOR, V100_FP32 = 125e12, 15.7e12


# --------------------------------------------------------------------------------------------------
# Inputs, models, steps.
# --------------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
  """'512' -> (512, 512); '800x1088' -> (800, 1088) (H x W, each a multiple of 32)."""
  try:
    hw = tuple(int(t) for t in str(text).lower().split("x"))
  except ValueError:
    hw = ()
  if len(hw) == 1:
    hw = hw * 2
  if len(hw) != 2 or min(hw) < 32 or any(s % 32 for s in hw):
    raise ValueError(f"--size: expected N or HxW with multiples of 32 (>= 32), got {text!r}")
  return hw


def synthetic_batch(batch: int, size: tuple[int, int], thing_classes, stuff_classes=(), max_instances: int = 6,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """A deterministic batch in the data contract (`dense_jax.data.sources`): `image (B, H, W, 3)` in [0, 1],
  2..max_instances-1 instances per image (the rest padding) with boxes `(B, M, 4)` (y0, x0, y1, x1) of
  1/8..1/2 of the image side, the filled ellipse inscribed in each box as its mask `(B, M, H, W)` uint8,
  classes drawn from `thing_classes`, `num_instances (B,)`, `batch_mask (B,)`; with `stuff_classes`
  also `semantic (B, H, W)`: four horizontal stuff bands, each instance's pixels its class."""
  rng = np.random.default_rng(seed)
  h, w = size
  boxes = np.zeros((batch, max_instances, 4), np.float32)
  classes = np.zeros((batch, max_instances), np.int32)
  masks = np.zeros((batch, max_instances, h, w), np.uint8)
  num = rng.integers(2, max_instances, size=batch).astype(np.int32)
  yy, xx = np.mgrid[:h, :w] + 0.5
  for b in range(batch):
    for i in range(num[b]):
      bh, bw = rng.integers(h // 8, h // 2 + 1), rng.integers(w // 8, w // 2 + 1)
      y0, x0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
      boxes[b, i] = (y0, x0, y0 + bh, x0 + bw)
      masks[b, i] = ((yy - y0 - bh / 2) / (bh / 2)) ** 2 + ((xx - x0 - bw / 2) / (bw / 2)) ** 2 <= 1.0
      classes[b, i] = rng.choice(np.asarray(thing_classes))
  out = {"image": rng.random((batch, h, w, 3), dtype=np.float32), "boxes": boxes, "classes": classes,
         "num_instances": num, "masks": masks, "batch_mask": np.ones((batch,), np.int32)}
  if len(stuff_classes):
    bands = rng.choice(np.asarray(stuff_classes), size=(batch, 4))
    semantic = np.repeat(bands[:, (np.arange(h) * 4) // h][:, :, None], w, axis=2).astype(np.int32)
    for b in range(batch):
      for i in range(num[b]):
        semantic[b][masks[b, i] > 0] = classes[b, i]
    out["semantic"] = semantic
  return out


def build(name: str, smoke: bool, dtype=jnp.float32, num_sampled_masks: int = 0):
  """Our registered model `name` (`_narrow` and small counts with `smoke`), compute dtype `dtype`, mask-head
  positive slots `num_sampled_masks` (0: all of box_batch_size x positive_fraction)."""
  kwargs = dict(SMOKE_COUNTS) if smoke else {}
  if dtype != jnp.float32:
    kwargs["dtype"] = dtype
  if num_sampled_masks:
    kwargs["num_sampled_masks"] = num_sampled_masks
  return get_model(f"{name}_narrow" if smoke else name, **kwargs)


def tasks_for(model) -> dict:
  """The tasks whose summed loss the trainer would train `model` with (no dataset: ids given here)."""
  if isinstance(model, PanopticFPN):
    things = tuple(int(c) for c in model.thing_classes)
    return {"instances": tasks_lib.get_task("instances", name="instances", category_ids=things),
            "panoptic": tasks_lib.get_task("panoptic", name="panoptic", num_classes=model.num_classes,
                                           thing_classes=things)}
  return {"instances": tasks_lib.get_task("instances", name="instances",
                                          category_ids=tuple(range(1, model.num_classes)))}


def batch_for(model, batch: int, size, seed: int = 0) -> dict[str, np.ndarray]:
  """`synthetic_batch` with the model's thing classes (all of 1..C-1 for Mask R-CNN) and stuff classes."""
  if isinstance(model, PanopticFPN):
    return synthetic_batch(batch, size, model.thing_classes, model.stuff_classes, seed=seed)
  return synthetic_batch(batch, size, np.arange(1, model.num_classes), seed=seed)


def imported_variables(model, tm, shape):
  """Our variables holding torchvision model `tm`'s weights (`dense_jax.convert.torchvision`, strict)."""
  from dense_jax.convert import torchvision as tvc  # pylint: disable=g-import-not-at-top
  from experiments.benchmarks import torch_maskrcnn  # pylint: disable=g-import-not-at-top
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct(shape, jnp.float32))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  return tvc.load_into(zeros, tvc.maskrcnn_resnet50_fpn(torch_maskrcnn.state_dict_numpy(tm)), strict=True)


def jax_train(model, variables, tasks: dict, batch: dict, lr: float = LR):
  """`(run, compiled, compile seconds)`: the trainer's step (`make_train_step`, state donated) compiled
  for `batch`; `run()` does one step on the carried state (copies of `variables`) and blocks."""
  tx = optax.sgd(lr, momentum=0.9)
  params = jax.tree.map(jnp.array, variables["params"])          # copies: the step donates its state
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=jax.tree.map(jnp.array, variables.get("batch_stats", {})),
                     opt_state=tx.init(params), rng=jax.random.key_data(jax.random.key(0)))
  step = jax.jit(make_train_step(model, tx, optax.constant_schedule(lr), False, tasks), donate_argnums=(0,))
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  carried = [state]

  def run():
    carried[0], metrics = compiled(carried[0], batch)
    jax.block_until_ready((carried[0], metrics))
    return metrics

  return run, compiled, compile_s


def jax_inference(model, variables, images):
  """`(run, compile seconds)`: the jitted eval forward; `run()` returns the blocked outputs."""
  fn = jax.jit(lambda v, x: apply_model(model, v, x, train=False))
  t0 = time.perf_counter()
  compiled = fn.lower(variables, images).compile()
  compile_s = time.perf_counter() - t0
  return (lambda: jax.block_until_ready(compiled(variables, images))), compile_s


def torch_module():
  """`experiments.benchmarks.torch_maskrcnn`, or None without torch + torchvision."""
  if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    return None
  from experiments.benchmarks import torch_maskrcnn  # pylint: disable=g-import-not-at-top
  return torch_maskrcnn


def load() -> str:
  return f"load average {os.getloadavg()[0]:.2f}"


# --------------------------------------------------------------------------------------------------
# Table 2: our parts.
# --------------------------------------------------------------------------------------------------
def _passes(f, diff: tuple, const: tuple = (), backward: bool = True) -> tuple[dict, object]:
  """`({'fwd': blocking f(*diff, *const)} plus, with `backward`, {'fwd+bwd': f's VJP w.r.t. diff with a
  random float cotangent of f's output}, f's output)`, each pass one jitted program."""
  fwd = jax.jit(f)
  value = jax.block_until_ready(fwd(*diff, *const))
  out = {"fwd": lambda: jax.block_until_ready(fwd(*diff, *const))}
  if backward:
    leaves, tree = jax.tree.flatten(value)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    ct = tree.unflatten([jax.random.normal(k, l.shape, jnp.float32).astype(l.dtype) for k, l in zip(keys, leaves)])
    fb = jax.jit(lambda d, c, ct: jax.vjp(lambda *d: f(*d, *c), *d)[1](ct))
    out["fwd+bwd"] = lambda: jax.block_until_ready(fb(diff, const, ct))
  return out, value


# Our parts, in order: (key, label, torchvision module it belongs to, trains?).
TRAIN_PARTS = [
    ("backbone", "backbone + FPN (normalise, ResNet, FPN; BN batch stats)", "backbone", True),
    ("rpn_head", "RPN head (3x3 conv, objectness, deltas)", "rpn", True),
    ("proposals", "RPN proposals (top-k, decode, clip, NMS 0.7)", "rpn", False),
    ("rpn_targets", "anchor targets (IoU match, sample)", "rpn", False),
    ("rpn_loss", "RPN losses", "rpn", True),
    ("roi_targets", "RoI targets (IoU match, sample)", "roi_heads", False),
    ("mask_targets", "mask targets (28x28 crops of the masks)", "roi_heads", False),
    ("box_pool", "RoIAlign 7x7 (box RoIs)", "roi_heads", True),
    ("box_head", "box head (fc6, fc7, predictor)", "roi_heads", True),
    ("mask_pool", "RoIAlign 14x14 (mask RoIs)", "roi_heads", True),
    ("mask_head", "mask head (4 convs, deconv, predictor)", "roi_heads", True),
    ("roi_loss", "RoI losses (class, box, mask)", "roi_heads", True),
    ("update", "SGD momentum update", None, False),
]
EVAL_PARTS = [
    ("eval_backbone", "backbone + FPN (BN running stats)", "eval backbone"),
    ("rpn_head", "RPN head", "eval rpn"),
    ("eval_proposals", "RPN proposals (test top-k, NMS)", "eval rpn"),
    ("detect", "detect: box branch + class-wise NMS + mask branch", "eval roi_heads"),
]


def jax_parts(model, variables, batch: dict, size) -> tuple[dict, dict]:
  """`({(part key, pass): blocking callable}, counts)` for our parts (module docstring, table 2)."""
  b = batch["image"].shape[0]
  params, stats = variables["params"], variables.get("batch_stats", {})

  def method(fn, train_bn: bool = False):
    """`f(params, *args)` = `fn(module, *args)` on the bound model (BN with batch statistics if train_bn)."""
    def f(p, *args):
      v = {"params": p, "batch_stats": stats}
      if train_bn:
        return model.apply(v, *args, method=fn, mutable=["batch_stats"])[0]
      return model.apply(v, *args, method=fn)
    return f

  x = batch["image"]
  fns = {}

  def part(key, f, diff, const=(), backward=True):
    """Registers part `key`'s passes; returns its output on these inputs."""
    passes, value = _passes(f, diff, const, backward)
    fns.update({(key, k): v for k, v in passes.items()})
    return value

  # ---- training
  feats = part("backbone", method(lambda m, x: m.features(x, True), train_bn=True), (params,), (x,))
  rpn_head = method(lambda m, f: tuple(m.rpn_outputs(f, size)[1:]))
  logits, deltas = part("rpn_head", rpn_head, (params, feats))
  anchors = fpn_anchors_per_level(size, model.anchor_sizes, model.aspect_ratios,
                                  feature_sizes=[f.shape[1:3] for f in feats.values()])
  proposals_fn = lambda train: method(lambda m, l, d: m.proposals(anchors, l, d, size, train))
  proposals, proposal_valid = part("proposals", proposals_fn(True), (params, logits, deltas), backward=False)
  gt = tg.ground_truth(batch)
  key_rpn, key_roi = jax.random.split(jax.random.key(0))
  anchors_all = jnp.asarray(np.concatenate(anchors, 0))
  rpn_labels, rpn_box_targets = part("rpn_targets", lambda gt, k: tg.rpn_targets(
      k, anchors_all, gt, fg_iou=model.rpn_fg_iou_thresh, bg_iou=model.rpn_bg_iou_thresh,
      num_samples=model.rpn_batch_size_per_image, positive_fraction=model.rpn_positive_fraction),
      (gt, key_rpn), backward=False)
  example = batch["batch_mask"]
  part("rpn_loss", lambda lg, dl: sum(ld.rpn_loss(jnp.concatenate(lg, 1), jnp.concatenate(dl, 1), rpn_labels,
                                                   rpn_box_targets, example)), (logits, deltas))
  rois, roi_labels, roi_gt, roi_box_targets = part("roi_targets", lambda p, pv, gt, k: tg.roi_targets(
      k, p, pv, gt, fg_iou=model.box_fg_iou_thresh, bg_iou=model.box_bg_iou_thresh,
      num_samples=model.box_batch_size_per_image, positive_fraction=model.box_positive_fraction),
      (proposals, proposal_valid, gt, key_roi), backward=False)
  num_pos = model.head_slots
  pos_rois, pos_labels, pos_gt = rois[:, :num_pos], roi_labels[:, :num_pos], roi_gt[:, :num_pos]
  mask_targets = part("mask_targets", lambda gt, r, g: tg.mask_targets(gt, r, g, 28, model.mask_target_sampling_ratio),
                      (gt, pos_rois, pos_gt), backward=False)
  pool = lambda boxes, side: (lambda f: model.apply(variables, f, boxes, side, size,
                                                    method=lambda m, *a: m.roi_features(*a)))
  pooled7 = part("box_pool", pool(rois, 7), (feats,))
  pooled14 = part("mask_pool", pool(pos_rois, 14), (feats,))
  cls_logits, box_deltas = part("box_head", method(lambda m, x: m.box_predictor(m.box_head(
      x.reshape(-1, *x.shape[2:])))), (params, pooled7))
  mask_out = part("mask_head", method(lambda m, x: m.mask_predictor(m.mask_head(x.reshape(-1, *x.shape[2:])))),
                  (params, pooled14))
  r = rois.shape[1]

  def roi_loss(cl, bd, mk):
    cl = cl.reshape(b, r, -1).astype(jnp.float32)
    bd = bd.reshape(b, r, -1, 4).astype(jnp.float32)
    mk = mk.reshape(b, num_pos, *mk.shape[1:]).astype(jnp.float32)
    mk = jnp.take_along_axis(mk, jnp.maximum(pos_labels, 0)[:, :, None, None, None], axis=-1)[..., 0]
    return (sum(ld.fast_rcnn_loss(cl, bd, roi_labels, roi_box_targets, example))
            + ld.mask_loss(mk, mask_targets, pos_labels > 0, example))
  part("roi_loss", roi_loss, (cls_logits, box_deltas, mask_out))
  tx = optax.sgd(LR, momentum=0.9)

  def update(g, s, p):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s
  part("update", update, (params, tx.init(params), params), backward=False)
  # ---- eval
  feats_e = part("eval_backbone", method(lambda m, x: m.features(x, False)), (params, x), backward=False)
  logits_e, deltas_e = jax.jit(rpn_head)(params, feats_e)
  props_e, valid_e = part("eval_proposals", proposals_fn(False), (params, logits_e, deltas_e), backward=False)
  dets = part("detect", method(lambda m, f, p, v: m.detect(f, p, v, size)), (params, feats_e, props_e, valid_e),
              backward=False)
  part("detect_box", method(lambda m, f, p: m.box_branch(f, p, size)), (params, feats_e, props_e), backward=False)
  part("detect_mask", method(lambda m, f, bx: m.mask_branch(f, bx, size)), (params, feats_e, dets["boxes"]),
       backward=False)
  counts = {"box RoIs / image": r, "mask RoI slots / image": num_pos,
            "positive RoIs / image": np.asarray((pos_labels > 0).sum(1)).tolist(),
            "proposals / image (train)": np.asarray(proposal_valid.sum(1)).tolist(),
            "proposals / image (eval)": np.asarray(valid_e.sum(1)).tolist(),
            "detections / image": np.asarray(dets["valid"].sum(1)).tolist()}
  return fns, counts


def _ms(x) -> str:
  return f"{x:9.1f}" if x is not None and math.isfinite(x) else f"{'-':>9s}"


def print_parts(ms: dict, step_ms: dict) -> None:
  """Table 2 from `{(side, part, pass): ms}` ('ours' / 'torch') and the one-program steps' ms."""
  print(f"\n## 2. Where the time goes: ms per part, medians ({load()})")
  print("### ours, training (parts jitted alone on the real intermediate arrays)")
  print(f"| part | fwd | fwd+bwd |\n|---|---|---|")
  total = 0.0
  for key, label, _, trains in TRAIN_PARTS:
    fwd, fb = ms.get(("ours", key, "fwd")), ms.get(("ours", key, "fwd+bwd"))
    total += fb if trains else fwd
    print(f"| {label} | {_ms(fwd)} | {_ms(fb) if trains else f'{chr(45):>9s}'} |")
  print(f"| sum (fwd+bwd where it trains) | | {_ms(total)} |")
  print(f"| one-program training step (table 1) | | {_ms(step_ms.get('ours train'))} |")
  print("### ours, inference")
  print(f"| part | fwd |\n|---|---|")
  e_total = 0.0
  for key, label, _ in EVAL_PARTS:
    e_total += ms[("ours", key, "fwd")]
    print(f"| {label} | {_ms(ms[('ours', key, 'fwd')])} |")
  box, mask, det = (ms[("ours", k, "fwd")] for k in ("detect_box", "detect_mask", "detect"))
  print(f"| - of which box branch (RoIAlign 7x7 on all proposals + box head) | {_ms(box)} |")
  print(f"| - of which mask branch (RoIAlign 14x14 + mask head on the detection slots) | {_ms(mask)} |")
  print(f"| - of which the rest: decode, top-k candidates, class-wise NMS (detect - branches) | {_ms(det - box - mask)} |")
  print(f"| sum | {_ms(e_total)} |")
  print(f"| one-program inference (table 1) | {_ms(step_ms.get('ours infer'))} |")
  if not any(k[0] == "torch" for k in ms):
    return
  print("### grouped as torchvision's modules: ours (sum of our parts) vs torchvision's module on its inputs")
  print("| module | ours fwd | torchvision fwd | ours fwd+bwd | torchvision fwd+bwd |\n|---|---|---|---|---|")
  print(f"| transform (ours: normalisation is in the backbone row) | {_ms(None)} | "
        f"{_ms(ms.get(('torch', 'transform', 'fwd')))} | {_ms(None)} | {_ms(ms.get(('torch', 'transform', 'fwd')))} |")
  for module in ("backbone", "rpn", "roi_heads"):
    parts = [(k, trains) for k, _, mod, trains in TRAIN_PARTS if mod == module]
    fwd = sum(ms[("ours", k, "fwd")] for k, _ in parts)
    fb = sum(ms[("ours", k, "fwd+bwd" if trains else "fwd")] for k, trains in parts)
    print(f"| {module} | {_ms(fwd)} | {_ms(ms.get(('torch', module, 'fwd')))} | {_ms(fb)} | "
          f"{_ms(ms.get(('torch', module, 'fwd+bwd')))} |")
  print("| module, inference | ours | torchvision |\n|---|---|---|")
  for module in ("eval transform", "eval backbone", "eval rpn", "eval roi_heads", "eval postprocess"):
    ours = [k for k, _, mod in EVAL_PARTS if mod == module]
    value = sum(ms[("ours", k, "fwd")] for k in ours) if ours else None
    print(f"| {module} | {_ms(value)} | {_ms(ms.get(('torch', module, 'fwd')))} |")


# --------------------------------------------------------------------------------------------------
# CPU mode: tables 1 and 2.
# --------------------------------------------------------------------------------------------------
def cpu_mode(args, size) -> None:
  dtype = DTYPES[args.dtype or "float32"]
  model = build("maskrcnn_resnet50_fpn", args.smoke, dtype, args.num_sampled_masks)
  tv = None if args.skip_torch else torch_module()
  shape = (args.batch, *size, 3)
  np_batch = batch_for(model, args.batch, size)
  batch = jax.tree.map(jnp.asarray, np_batch)
  tm = None
  if tv is not None:
    print(f"torch threads: {tv.set_threads()}")
    tm = tv.torchvision_like(model, size)
  if tm is not None and not args.smoke:
    variables, weights = imported_variables(model, tm, shape), "torchvision's initialisation, imported into ours"
  else:
    variables, weights = random_variables(model, shape), "random (ours He-normal; torchvision its own)"
  print(f"model {model.__class__.__name__} ({'narrow ' if args.smoke else ''}ResNet-50-FPN), "
        f"{count_params(variables['params']):,} parameters, {args.dtype or 'float32'} compute; weights: {weights}")
  train_run, compiled, compile_s = jax_train(model, variables, tasks_for(model), batch)
  infer_run, infer_compile_s = jax_inference(model, variables, batch["image"])
  print(f"ours: train step compiled in {compile_s:.1f} s ({flops_of(compiled) / 1e9:.1f} GFLOP per step, XLA), "
        f"inference in {infer_compile_s:.1f} s")
  train_runs, infer_runs = {"ours": train_run}, {"ours": infer_run}
  counter = None
  if tm is not None:
    import copy  # pylint: disable=g-import-not-at-top
    images, targets = tv.torch_inputs(np_batch)
    eval_model = copy.deepcopy(tm).eval()          # inference keeps the initial weights, as ours
    counter = tv.mask_roi_counter(tm)
    train_runs["torchvision"] = tv.train_step(tm, images, targets, LR)
    infer_runs["torchvision"] = tv.inference(eval_model, images)
  repeats = args.repeats
  print(f"\n## 1. {model.__class__.__name__} R50-FPN at {size[0]}x{size[1]}, batch {args.batch}: images/s, "
        f"median of {repeats}, timed alternately")
  print("| | ours | torchvision | ours / torchvision |\n|---|---|---|---|")
  step_ms = {}
  for label, runs in (("train step", train_runs), ("inference", infer_runs)):
    speed = interleaved_images_per_s(runs, args.batch, repeats)
    ours, theirs = speed["ours"], speed.get("torchvision")
    step_ms["ours train" if label == "train step" else "ours infer"] = 1e3 * args.batch / ours
    ratio = f"{ours / theirs:.2f}" if theirs else "-"
    print(f"| {label} | {ours:.3f} | {f'{theirs:.3f}' if theirs else '- (absent)'} | {ratio} |   ({load()})",
          flush=True)
  metrics = train_run()
  print(f"ours: loss after the timed steps {float(metrics['loss']):.4f} (finite: {math.isfinite(float(metrics['loss']))})")
  counts = {}
  fns = {}
  if not args.skip_parts:
    t0 = time.perf_counter()
    ours_fns, counts = jax_parts(model, variables, batch, size)
    fns.update({("ours", *k): v for k, v in ours_fns.items()})
    print(f"ours: {len(ours_fns)} part programs set up (forward passes compiled) in {time.perf_counter() - t0:.0f} s")
  if tm is not None:
    det = infer_runs["torchvision"]()
    counts["torchvision detections / image"] = [len(d["boxes"]) for d in det]
    counts["torchvision mask RoIs / image (train, last step)"] = counter[-1] if counter else "-"
    if not args.skip_parts:
      fns.update({("torch", *k): v for k, v in tv.parts(tm, images, targets).items()})
      fns.update({("torch", *k): v for k, v in tv.eval_parts(eval_model, images).items()})
  if fns:
    print_parts(_median_ms(fns, repeats), step_ms)
  if counts:
    print("\nwork per image (ours: static slots; torchvision: actual counts):")
    for k, v in counts.items():
      print(f"  {k}: {v}")


# --------------------------------------------------------------------------------------------------
# Device mode: table 3.
# --------------------------------------------------------------------------------------------------
def device_row(name: str, args, size, dtype, peak: float, tv) -> float:
  """Prints table 3's row(s) for model `name` (and torchvision's beside Mask R-CNN); returns our img/s."""
  model = build(name, args.smoke, dtype, args.num_sampled_masks)
  label = f"{name}_narrow" if args.smoke else name
  np_batch = batch_for(model, args.batch, size)
  batch = jax.tree.map(jnp.asarray, np_batch)
  variables = random_variables(model, (args.batch, *size, 3))
  run, compiled, compile_s = jax_train(model, variables, tasks_for(model), batch)
  flops, xla_peak = flops_of(compiled), xla_peak_bytes(compiled) / 1e9
  print(f"({label}: compiled in {compile_s:.0f} s, {flops / 1e12:.2f} TFLOP per step)", flush=True)
  fns = {"ours": run}
  if tv is not None and name.startswith("maskrcnn"):
    images, targets = tv.torch_inputs(np_batch, device="cuda")
    tm = tv.torchvision_like(model, size).cuda()
    tv.torch.cuda.reset_peak_memory_stats()
    fns["torchvision"] = tv.train_step(tm, images, targets, LR, autocast_dtype=tv.torch.bfloat16, device="cuda")
  ms = _median_ms(fns, args.repeats)
  alloc = allocator_peak_bytes()
  achieved = flops / ms["ours"] * 1e3
  img_s = args.batch / ms["ours"] * 1e3
  alloc_s = f"{alloc / 1e9:.2f}" if alloc else "n/a"
  print(f"| {label} | {ms['ours']:.1f} | {img_s:.2f} | {achieved / 1e12:.2f} | {achieved / peak:.0%} | "
        f"{xla_peak:.2f} ({xla_peak / args.batch:.2f}) | {alloc_s} |", flush=True)
  if "torchvision" in ms:
    t_img_s = args.batch / ms["torchvision"] * 1e3
    t_peak = tv.torch.cuda.max_memory_allocated() / 1e9
    print(f"| torchvision maskrcnn_resnet50_fpn, autocast | {ms['torchvision']:.1f} | {t_img_s:.2f} | - | - | - | "
          f"{t_peak:.2f} (torch max_memory_allocated) |")
    print(f"ours / torchvision (images/s): {img_s / t_img_s:.2f}", flush=True)
  return img_s


def print_detectron2(img_s: float, size, peak: float, dtype_name: str) -> None:
  """Our Mask R-CNN images/s beside detectron2's published figure (module docstring, item 3)."""
  per_gpu = D2_IMG_S / D2_GPUS
  print(f"\n## detectron2 (published): Mask R-CNN R50-FPN {D2_IMG_S:.0f} img/s on {D2_GPUS} V100 = {per_gpu:.2f} "
        f"img/s per GPU (short side 800, long <= 1333, 2 img/GPU, float32)")
  print(f"ours per GPU at {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.2f} MP per image; theirs ~0.8-1.1 MP): "
        f"{img_s:.2f} img/s = {img_s / per_gpu:.2f}x detectron2's per-GPU rate")
  for label, v100 in (("V100 fp16 tensor peak 125 TFLOP/s", V100_FP16_TENSOR), ("V100 fp32 peak 15.7 TFLOP/s",
                                                                               V100_FP32)):
    print(f"per FLOP of peak, ours (img/s / measured {dtype_name} peak {peak / 1e12:.1f} TFLOP/s) over detectron2 "
          f"(img/s / {label}): {(img_s / peak) / (per_gpu / v100):.3f}")


def device_mode(args, size) -> None:
  dtype_name = args.dtype or "bfloat16"
  dtype = DTYPES[dtype_name]
  n = 1024 if args.smoke else 8192
  peak = matmul_peak(dtype, n, args.repeats)
  print(f"device {jax.devices()[0].device_kind}, {dtype_name} matmul peak ({n}^3): {peak / 1e12:.2f} TFLOP/s")
  tv = None if args.skip_torch else torch_module()
  tv = tv if tv is not None and tv.torch.cuda.is_available() else None
  print(f"\n## 3. Training step, {dtype_name} compute (float32 parameters), batch {args.batch} at "
        f"{size[0]}x{size[1]}, median of {args.repeats} ({load()}); torchvision on cuda: "
        f"{'yes' if tv is not None else 'no'}")
  print("| model | step ms | img/s | TFLOP/s | of peak | XLA peak GB (per image) | allocator peak GB, cumulative |\n"
        "|---|---|---|---|---|---|---|", flush=True)
  results = {}
  for name in args.models.split(","):
    try:
      results[name] = device_row(name, args, size, dtype, peak, tv)
    except Exception:  # pylint: disable=broad-except  (one model's failure must not lose the other's row)
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
      print(f"| {name} | failed (traceback above) |", flush=True)
  mask = next((v for k, v in results.items() if k.startswith("maskrcnn")), None)
  if mask is not None:
    print_detectron2(mask, size, peak, dtype_name)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="narrow models, small counts, 64x64: code paths only")
  parser.add_argument("--device-mode", action="store_true", help="one GPU: batch 8, bfloat16, both models")
  parser.add_argument("--batch", type=int, default=None, help="default 2 (8 with --device-mode)")
  parser.add_argument("--size", default=None, help="N or HxW, multiples of 32 (default 512; 64 with --smoke)")
  parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                      help="compute dtype (default float32 on CPU, bfloat16 with --device-mode)")
  parser.add_argument("--repeats", type=int, default=None, help="default 5 (2 with --smoke, 10 device mode)")
  parser.add_argument("--models", default="maskrcnn_resnet50_fpn,panoptic_fpn_resnet50", help="device mode")
  parser.add_argument("--skip-parts", action="store_true", help="CPU mode: leave out table 2")
  parser.add_argument("--skip-torch", action="store_true", help="leave out torchvision")
  parser.add_argument("--num-sampled-masks", type=int, default=0,
                      help="our mask head's positive RoI slots per image in training (0: all 128; MaskRCNN field)")
  args = parser.parse_args(argv)
  size = parse_size(args.size or (SMOKE_SIZE if args.smoke else 512))
  args.batch = args.batch or (8 if args.device_mode and not args.smoke else 2)
  args.repeats = args.repeats or (2 if args.smoke else 10 if args.device_mode else 5)
  if args.batch < 1 or args.repeats < 1:
    raise ValueError(f"--batch, --repeats: expected >= 1, got {args.batch}, {args.repeats}")
  if args.device_mode:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  t0 = time.perf_counter()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}, cpu cores "
        f"{os.cpu_count()}, {load()}{' (smoke: tiny shapes, figures meaningless)' if args.smoke else ''}", flush=True)
  if args.device_mode:
    device_mode(args, size)
  else:
    cpu_mode(args, size)
  print(f"\nwall time {time.perf_counter() - t0:.0f} s, {load()}")


if __name__ == "__main__":
  main()
