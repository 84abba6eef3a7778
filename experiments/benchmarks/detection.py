"""Mask R-CNN and Panoptic FPN speed: our training step and inference against torchvision's on the CPU,
where the time goes by the model's own stages, and images/s, memory and FLOP/s in bfloat16 on one GPU.

    python -m experiments.benchmarks.detection                   # CPU: 512x512, batch 2, float32, vs torchvision
    python -m experiments.benchmarks.detection --repeats 5       # the quiet measurement (5 is the default)
    python -m experiments.benchmarks.detection --smoke           # tiny shapes (~1-2 min): checks the code paths
    python -m experiments.benchmarks.detection --device-mode     # one GPU: batch 8, bfloat16, 512x512
    python -m experiments.benchmarks.detection --device-mode --size 800x1088   # about detectron2's scale
    python -m experiments.benchmarks.detection --device-mode --smoke           # device mode's paths, any backend
    ... --json PATH                                              # also write the rows and the machine record

What each mode measures (rows: `cpu_rows` / `device_rows`, tables printed from them):
1. CPU: `maskrcnn_resnet50_fpn` (91 classes, float32) at `--size`, batch `--batch`, ours against
   torchvision's `maskrcnn_resnet50_fpn` with every count and threshold copied from ours
   (`torch_maskrcnn.SETTINGS`), both from the same weights (torchvision's initialisation imported into
   ours), on one synthetic batch (`synthetic_batch`). Training step: ours is the trainer's own step
   (`dense_jax.train.step.make_train_step`, the `instances` task's loss, SGD momentum 0.9, state donated);
   torchvision's `model(images, targets)`, summed losses, backward, SGD. Inference: our jitted
   `apply_model(train=False)` against `model.eval()` under `no_grad`. Timed alternately
   (`timing.images_per_s`); ratio = ours / torchvision (>= 1: ours is faster).
2. Where the time goes (`--skip-parts` leaves it out): each stage of `MaskRCNN` (`features`,
   `rpn_outputs`, `proposals`, `rpn_training_targets`, `roi_training_targets`, `mask_training_targets`,
   `roi_features`, `box_predictions`, `head_mask_logits`, `detect`, `box_branch`, `mask_branch`), the
   `instances` task's loss terms and the optimizer update, each jitted alone on this batch's real
   intermediate arrays; 'fwd+bwd' adds the VJP of a random cotangent where the stage trains. XLA cannot
   fuse across stage boundaries and each pays its own dispatch, so the sum differs from the one-program
   step (both are reported). Torchvision: its own modules on their real inputs (`torch_maskrcnn.parts`).
3. `--device-mode`: `--batch 8 --dtype bfloat16` compute (parameters, boxes, NMS and losses float32) for
   `maskrcnn_resnet50_fpn` and `panoptic_fpn_resnet50` (`--models`): step ms, images/s, FLOP/s from XLA's
   cost analysis and its fraction of the measured matmul peak, XLA's and the allocator's peak memory;
   torchvision's train step on cuda (autocast bfloat16) beside it when available; detectron2's published
   Mask R-CNN R50-FPN rate (62 img/s on 8 V100, float32) per GPU and per FLOP of peak.
4. `--smoke`: the narrow variants with small counts at 64x64, batch 2, 2 repeats: code paths only.

Current result (2-core CPU, 2026-11-30, `--num-sampled-masks 32`): train step 0.562 vs 0.496 img/s
(1.13x), inference 1.070 vs 1.006 img/s (1.06x). The full measurement log is in docs/results.md
("Benchmark logs").

Runs without tensorflow, tensorflow_datasets, grain, ml_collections, orbax and pycocotools: it imports the
trainer's step from `dense_jax.train.step`, not the loop.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dense_jax import tasks as tasks_lib
from dense_jax.models._random import random_variables
from dense_jax.models.build import apply_model
from dense_jax.models.flops import count_params
from dense_jax.models.panoptic_fpn import PanopticFPN
from dense_jax.models.registry import get_model
from dense_jax.train.state import TrainState
from dense_jax.train.step import make_train_step
from experiments.benchmarks import table, timing
from experiments.benchmarks.timing import DTYPES

LR = 1e-4
SMOKE_SIZE = 64
SMOKE_COUNTS = dict(rpn_pre_nms_top_n_train=150, rpn_post_nms_top_n_train=60, rpn_pre_nms_top_n_test=100,
                    rpn_post_nms_top_n_test=40, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
                    box_detections_per_img=10, box_candidates_per_img=100)
D2_IMG_S, D2_GPUS = 62.0, 8            # detectron2 docs/notes/benchmarks.md, Mask R-CNN R50-FPN, 8 V100
V100_FP16_TENSOR, V100_FP32 = 125e12, 15.7e12


def optimizer(lr: float = LR):
  """Both sides' optimizer: SGD with momentum 0.9."""
  return optax.sgd(lr, momentum=0.9)


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
  tx = optimizer(lr)
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
  """`experiments.benchmarks.torch_maskrcnn` (PyTorch's threads set), or None without torch + torchvision."""
  if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    return None
  from experiments.benchmarks import torch_maskrcnn  # pylint: disable=g-import-not-at-top
  timing.torch_threads()
  return torch_maskrcnn


# --------------------------------------------------------------------------------------------------
# Stages of our model, each its own program.
# --------------------------------------------------------------------------------------------------
def _passes(f, diff: tuple, const: tuple = (), backward: bool = True) -> tuple[dict, object]:
  """`({'fwd': blocking f(*diff, *const)} plus, with `backward`, {'fwd+bwd': f's VJP w.r.t. diff with a
  random float cotangent of f's output}, f's output)`, each pass one jitted program."""
  fwd = jax.jit(f)
  value = jax.block_until_ready(fwd(*diff, *const))
  out = {"fwd": timing.blocking(fwd, *diff, *const)}
  if backward:
    leaves, tree = jax.tree.flatten(value)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    ct = tree.unflatten([jax.random.normal(k, l.shape, jnp.float32).astype(l.dtype) for k, l in zip(keys, leaves)])
    fb = jax.jit(lambda d, c, ct: jax.vjp(lambda *d: f(*d, *c), *d)[1](ct))
    out["fwd+bwd"] = timing.blocking(fb, diff, const, ct)
  return out, value


# Our training stages, in order: (key, label, torchvision module it belongs to, trains?).
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
# Inference stages: (key, label, torchvision module); 'rpn_head' is the training stage's program.
EVAL_PARTS = [
    ("eval_backbone", "backbone + FPN (BN running stats)", "eval backbone"),
    ("rpn_head", "RPN head", "eval rpn"),
    ("eval_proposals", "RPN proposals (test top-k, NMS)", "eval rpn"),
    ("detect", "detect: box branch + class-wise NMS + mask branch", "eval roi_heads"),
]
DETECT_SHARES = ("detect_box", "detect_mask")   # timed too: the branches inside `detect`


def jax_parts(model, variables, batch: dict, size, tasks: dict | None = None) -> tuple[dict, dict]:
  """`({(stage key, pass): blocking callable}, counts)`: each stage a `MaskRCNN` method (or the task's loss
  terms, or the optimizer update) jitted alone on this batch's intermediate arrays (module docstring)."""
  params, stats = variables["params"], variables.get("batch_stats", {})
  task = (tasks or tasks_for(model))["instances"]

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
    """Registers stage `key`'s passes; returns its output on these inputs."""
    passes, value = _passes(f, diff, const, backward)
    fns.update({(key, k): v for k, v in passes.items()})
    return value

  # ---- training
  feats = part("backbone", method(lambda m, x: m.features(x, True), train_bn=True), (params,), (x,))
  anchors = model.apply(variables, feats, size, method=lambda m, f, s: m.rpn_outputs(f, s))[0]   # NumPy, static
  rpn_head = method(lambda m, f: tuple(m.rpn_outputs(f, size)[1:]))
  logits, deltas = part("rpn_head", rpn_head, (params, feats))
  proposals_fn = lambda train: method(lambda m, l, d: m.proposals(anchors, l, d, size, train))
  proposals, proposal_valid = part("proposals", proposals_fn(True), (params, logits, deltas), backward=False)
  gt = jax.jit(method(lambda m, t: m.training_ground_truth(t)))(params, batch)
  key_rpn, key_roi = jax.random.split(jax.random.key(0))
  part("rpn_targets", method(lambda m, k, g: m.rpn_training_targets(k, anchors, g)), (params, key_rpn, gt),
       backward=False)
  rois, roi_labels, roi_gt, _ = part("roi_targets", method(lambda m, *a: m.roi_training_targets(*a)),
                                     (params, key_roi, proposals, proposal_valid, gt), backward=False)
  pos_rois, pos_labels, pos_gt = model.apply(variables, rois, roi_labels, roi_gt,
                                             method=lambda m, *a: m.head_rois(*a))
  part("mask_targets", method(lambda m, *a: m.mask_training_targets(*a)), (params, gt, pos_rois, pos_gt),
       backward=False)
  pool = lambda boxes, side: (lambda f: model.apply(variables, f, boxes, side, size,
                                                    method=lambda m, *a: m.roi_features(*a)))
  pooled7 = part("box_pool", pool(rois, 7), (feats,))
  pooled14 = part("mask_pool", pool(pos_rois, 14), (feats,))
  part("box_head", method(lambda m, x: m.box_predictions(x)), (params, pooled7))
  part("mask_head", method(lambda m, x: m.head_mask_logits(x, pos_labels)), (params, pooled14))
  # The loss stages read the model's own training outputs (`training_outputs`, as the trainer's step).
  out = jax.jit(lambda v, f, l, d, p, pv: model.apply(v, f, anchors, l, d, p, pv, batch, size,
                                                      method=lambda m, *a: m.training_outputs(*a),
                                                      rngs={"dropout": jax.random.key(0)}))(
      variables, feats, logits, deltas, proposals, proposal_valid)

  def loss_terms(keys, rpn: bool):
    """The task's loss terms (RPN ones or the others) as a function of the output entries `keys`."""
    def f(*values):
      terms = task.loss({task.name: {**out, **dict(zip(keys, values))}}, batch)[1]
      return sum(v for k, v in terms.items() if ("/loss_rpn_" in k) == rpn)
    return f
  rpn_keys = ("rpn_logits", "rpn_deltas")
  roi_keys = tuple(k for k in ("roi_class_logits", "roi_box_deltas", "mask_logits", "keypoint_logits") if k in out)
  part("rpn_loss", loss_terms(rpn_keys, True), tuple(out[k] for k in rpn_keys))
  part("roi_loss", loss_terms(roi_keys, False), tuple(out[k] for k in roi_keys))
  tx = optimizer()

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
  counts = {"box RoIs / image": int(rois.shape[1]), "mask RoI slots / image": int(pos_rois.shape[1]),
            "positive RoIs / image": np.asarray((pos_labels > 0).sum(1)).tolist(),
            "proposals / image (train)": np.asarray(proposal_valid.sum(1)).tolist(),
            "proposals / image (eval)": np.asarray(valid_e.sum(1)).tolist(),
            "detections / image": np.asarray(dets["valid"].sum(1)).tolist()}
  return fns, counts


def part_rows(ms: dict) -> list[dict]:
  """Rows of table 2 from `{(side, stage, pass): ms}`: one per (side, stage, pass), with its label,
  phase ('train' / 'eval') and torchvision module."""
  labels = {k: (label, "train", module) for k, label, module, _ in TRAIN_PARTS}
  labels.update({k: (label, "eval", module) for k, label, module in EVAL_PARTS if k != "rpn_head"})
  labels.update({"detect_box": ("of which box branch (RoIAlign 7x7 + box head)", "eval", None),
                 "detect_mask": ("of which mask branch (RoIAlign 14x14 + mask head)", "eval", None)})
  rows = []
  for (side, key, pass_), value in ms.items():
    label, phase, module = labels.get(key, (key, "train" if not key.startswith("eval") else "eval", key))
    if side == "torch":
      phase = "eval" if key.startswith("eval") else "train"
      label, module = key, key
    rows.append({"table": "parts", "side": side, "stage": key, "label": label, "phase": phase, "module": module,
                 "pass": pass_, "ms": value})
  return rows


def stage_sums(rows: list[dict]) -> dict:
  """Our stages summed: 'train' (fwd+bwd where the stage trains, else fwd) and 'eval' (EVAL_PARTS, fwd)."""
  ms = {(r["stage"], r["pass"]): r["ms"] for r in table.select(rows, table="parts", side="ours")}
  train = sum(ms[(k, "fwd+bwd" if trains else "fwd")] for k, _, _, trains in TRAIN_PARTS)
  return {"train": train, "eval": sum(ms[(k, "fwd")] for k, _, _ in EVAL_PARTS)}


# --------------------------------------------------------------------------------------------------
# CPU mode: tables 1 and 2.
# --------------------------------------------------------------------------------------------------
def cpu_rows(smoke: bool = False, batch_size: int = 2, size=(512, 512), repeats: int = 5, dtype_name: str = "float32",
             num_sampled_masks: int = 0, skip_parts: bool = False, skip_torch: bool = False,
             log=print) -> list[dict]:
  """Tables 1 and 2 as rows (`table` 'speed', 'parts', 'stage_sums', 'counts'); `log` gets progress lines."""
  model = build("maskrcnn_resnet50_fpn", smoke, DTYPES[dtype_name], num_sampled_masks)
  tv = None if skip_torch else torch_module()
  shape = (batch_size, *size, 3)
  np_batch = batch_for(model, batch_size, size)
  batch = jax.tree.map(jnp.asarray, np_batch)
  tm = tv.torchvision_like(model, size) if tv is not None else None
  if tm is not None and not smoke:
    variables, weights = imported_variables(model, tm, shape), "torchvision's initialisation, imported into ours"
  else:
    variables, weights = random_variables(model, shape), "random (ours He-normal; torchvision its own)"
  log(f"model {model.__class__.__name__} ({'narrow ' if smoke else ''}ResNet-50-FPN), "
      f"{count_params(variables['params']):,} parameters, {dtype_name} compute; weights: {weights}")
  tasks = tasks_for(model)
  train_run, compiled, compile_s = jax_train(model, variables, tasks, batch)
  infer_run, infer_compile_s = jax_inference(model, variables, batch["image"])
  flops = timing.flops_of(compiled)
  log(f"ours: train step compiled in {compile_s:.1f} s ({flops / 1e9:.1f} GFLOP per step, XLA), "
      f"inference in {infer_compile_s:.1f} s")
  train_runs, infer_runs = {"ours": train_run}, {"ours": infer_run}
  counter = None
  if tm is not None:
    images, targets = tv.torch_inputs(np_batch)
    eval_model = copy.deepcopy(tm).eval()          # inference keeps the initial weights, as ours
    counter = tv.mask_roi_counter(tm)
    train_runs["torchvision"] = tv.train_step(tm, images, targets, LR)
    infer_runs["torchvision"] = tv.inference(eval_model, images)
  common = {"model": model.__class__.__name__, "size": f"{size[0]}x{size[1]}", "batch": batch_size,
            "dtype": dtype_name, "repeats": repeats}
  rows = []
  for label, runs in (("train step", train_runs), ("inference", infer_runs)):
    speed = timing.images_per_s(runs, batch_size, repeats)
    ours, theirs = speed["ours"], speed.get("torchvision")
    row = {"table": "speed", "pass": label, **common, "ours_images_per_s": ours, "ours_ms": 1e3 * batch_size / ours,
           "torchvision_images_per_s": theirs, "ratio": ours / theirs if theirs else None,
           "load_average": os.getloadavg()[0]}
    if label == "train step":
      row.update(flops=flops, gflop_per_s=flops / row["ours_ms"] / 1e6)
    rows.append(row)
  loss = float(train_run()["loss"])
  rows[0]["loss_after"] = loss
  counts = {}
  fns = {}
  if not skip_parts:
    t0 = time.perf_counter()
    ours_fns, counts = jax_parts(model, variables, batch, size, tasks)
    fns.update({("ours", *k): v for k, v in ours_fns.items()})
    log(f"ours: {len(ours_fns)} stage programs set up in {time.perf_counter() - t0:.0f} s")
  if tm is not None:
    det = infer_runs["torchvision"]()
    counts["torchvision detections / image"] = [len(d["boxes"]) for d in det]
    counts["torchvision mask RoIs / image (train, last step)"] = counter[-1] if counter else None
    if not skip_parts:
      fns.update({("torch", *k): v for k, v in tv.parts(tm, images, targets).items()})
      fns.update({("torch", *k): v for k, v in tv.eval_parts(eval_model, images).items()})
  if fns:
    parts = part_rows(timing.median_ms(fns, repeats))
    rows += parts
    sums = stage_sums(parts)
    rows.append({"table": "stage_sums", **common, "ours_train_sum_ms": sums["train"],
                 "ours_train_step_ms": rows[0]["ours_ms"], "ours_eval_sum_ms": sums["eval"],
                 "ours_inference_ms": rows[1]["ours_ms"]})
  rows += [{"table": "counts", "name": k, "value": v} for k, v in counts.items()]
  return rows


def _ms(x) -> str:
  return f"{x:9.1f}" if x is not None and math.isfinite(x) else f"{'-':>9s}"


def print_cpu(rows: list[dict]) -> None:
  """Tables 1 and 2 from `cpu_rows`' rows."""
  speed = table.select(rows, table="speed")
  s = speed[0]
  print(table.markdown(speed, ["pass", "ours_images_per_s", "torchvision_images_per_s", "ratio", "ours_ms",
                               "load_average"],
                       title=f"\n## 1. {s['model']} R50-FPN at {s['size']}, batch {s['batch']}: images/s, median "
                             f"of {s['repeats']}, timed alternately"))
  print(f"ours: {s['flops'] / 1e9:.1f} GFLOP per train step (XLA), {s['gflop_per_s']:.1f} GFLOP/s; loss after the "
        f"timed steps {s['loss_after']:.4f} (finite: {math.isfinite(s['loss_after'])})")
  parts = table.select(rows, table="parts")
  if parts:
    ms = {(r["side"], r["stage"], r["pass"]): r["ms"] for r in parts}
    sums = table.select(rows, table="stage_sums")[0]
    print(f"\n## 2. Where the time goes: ms per stage, medians ({timing.load()})")
    print("### ours, training (stages jitted alone on the real intermediate arrays)")
    print("| stage | fwd | fwd+bwd |\n|---|---|---|")
    for key, label, _, trains in TRAIN_PARTS:
      fb = _ms(ms.get(("ours", key, "fwd+bwd"))) if trains else f"{'-':>9s}"
      print(f"| {label} | {_ms(ms.get(('ours', key, 'fwd')))} | {fb} |")
    print(f"| sum (fwd+bwd where it trains) | | {_ms(sums['ours_train_sum_ms'])} |")
    print(f"| one-program training step (table 1) | | {_ms(sums['ours_train_step_ms'])} |")
    print("### ours, inference\n| stage | fwd |\n|---|---|")
    for key, label, _ in EVAL_PARTS:
      print(f"| {label} | {_ms(ms[('ours', key, 'fwd')])} |")
    box, mask, det = (ms[("ours", k, "fwd")] for k in ("detect_box", "detect_mask", "detect"))
    print(f"| - of which box branch (RoIAlign 7x7 on all proposals + box head) | {_ms(box)} |")
    print(f"| - of which mask branch (RoIAlign 14x14 + mask head on the detection slots) | {_ms(mask)} |")
    print(f"| - of which the rest: decode, top-k candidates, class-wise NMS (detect - branches) | "
          f"{_ms(det - box - mask)} |")
    print(f"| sum | {_ms(sums['ours_eval_sum_ms'])} |")
    print(f"| one-program inference (table 1) | {_ms(sums['ours_inference_ms'])} |")
    if any(k[0] == "torch" for k in ms):
      print("### grouped as torchvision's modules: ours (sum of our stages) vs torchvision's module on its inputs")
      print("| module | ours fwd | torchvision fwd | ours fwd+bwd | torchvision fwd+bwd |\n|---|---|---|---|---|")
      t = ms.get(("torch", "transform", "fwd"))
      print(f"| transform (ours: normalisation is in the backbone row) | {_ms(None)} | {_ms(t)} | {_ms(None)} | "
            f"{_ms(t)} |")
      for module in ("backbone", "rpn", "roi_heads"):
        stages = [(k, trains) for k, _, mod, trains in TRAIN_PARTS if mod == module]
        fwd = sum(ms[("ours", k, "fwd")] for k, _ in stages)
        fb = sum(ms[("ours", k, "fwd+bwd" if trains else "fwd")] for k, trains in stages)
        print(f"| {module} | {_ms(fwd)} | {_ms(ms.get(('torch', module, 'fwd')))} | {_ms(fb)} | "
              f"{_ms(ms.get(('torch', module, 'fwd+bwd')))} |")
      print("| module, inference | ours | torchvision |\n|---|---|---|")
      for module in ("eval transform", "eval backbone", "eval rpn", "eval roi_heads", "eval postprocess"):
        ours = [k for k, _, mod in EVAL_PARTS if mod == module]
        value = sum(ms[("ours", k, "fwd")] for k in ours) if ours else None
        print(f"| {module} | {_ms(value)} | {_ms(ms.get(('torch', module, 'fwd')))} |")
  counts = table.select(rows, table="counts")
  if counts:
    print("\nwork per image (ours: static slots; torchvision: actual counts):")
    for r in counts:
      print(f"  {r['name']}: {table.cell(r['value'])}")


# --------------------------------------------------------------------------------------------------
# Device mode: table 3.
# --------------------------------------------------------------------------------------------------
def device_model_rows(name: str, smoke: bool, batch_size: int, size, dtype_name: str, repeats: int, peak: float,
                      tv=None, num_sampled_masks: int = 0, log=print) -> list[dict]:
  """Table 3's row for model `name` (and torchvision's beside a Mask R-CNN, `tv` given)."""
  model = build(name, smoke, DTYPES[dtype_name], num_sampled_masks)
  label = f"{name}_narrow" if smoke else name
  np_batch = batch_for(model, batch_size, size)
  batch = jax.tree.map(jnp.asarray, np_batch)
  variables = random_variables(model, (batch_size, *size, 3))
  run, compiled, compile_s = jax_train(model, variables, tasks_for(model), batch)
  flops, xla_peak = timing.flops_of(compiled), timing.xla_peak_bytes(compiled)
  log(f"({label}: compiled in {compile_s:.0f} s, {flops / 1e12:.2f} TFLOP per step)")
  fns = {"ours": run}
  if tv is not None and name.startswith("maskrcnn"):
    images, targets = tv.torch_inputs(np_batch, device="cuda")
    tm = tv.torchvision_like(model, size).cuda()
    tv.torch.cuda.reset_peak_memory_stats()
    fns["torchvision"] = tv.train_step(tm, images, targets, LR, autocast_dtype=tv.torch.bfloat16, device="cuda")
  ms = timing.median_ms(fns, repeats)
  alloc = timing.allocator_peak_bytes()
  common = {"table": "device", "size": f"{size[0]}x{size[1]}", "batch": batch_size, "dtype": dtype_name,
            "repeats": repeats}
  achieved = flops / ms["ours"] * 1e3
  rows = [{**common, "model": label, "side": "ours", "step_ms": ms["ours"],
           "images_per_s": batch_size / ms["ours"] * 1e3,
           "flops": flops, "tflop_per_s": achieved / 1e12, "of_peak": achieved / peak, "xla_peak_gb": xla_peak / 1e9,
           "xla_peak_gb_per_image": xla_peak / 1e9 / batch_size,
           "allocator_peak_gb": alloc / 1e9 if alloc else None, "compile_s": compile_s}]
  if "torchvision" in ms:
    rows.append({**common, "model": "torchvision maskrcnn_resnet50_fpn, autocast", "side": "torchvision",
                 "step_ms": ms["torchvision"], "images_per_s": batch_size / ms["torchvision"] * 1e3,
                 "allocator_peak_gb": tv.torch.cuda.max_memory_allocated() / 1e9})
  return rows


def detectron2_row(img_s: float, size, peak: float) -> dict:
  """Our Mask R-CNN images/s beside detectron2's published rate (module docstring, item 3)."""
  per_gpu = D2_IMG_S / D2_GPUS
  return {"table": "detectron2", "detectron2_images_per_s_per_gpu": per_gpu, "ours_images_per_s": img_s,
          "size": f"{size[0]}x{size[1]}", "megapixels": size[0] * size[1] / 1e6,
          "ours_over_detectron2": img_s / per_gpu,
          "per_flop_of_peak_vs_v100_fp16": (img_s / peak) / (per_gpu / V100_FP16_TENSOR),
          "per_flop_of_peak_vs_v100_fp32": (img_s / peak) / (per_gpu / V100_FP32)}


def device_rows(smoke: bool = False, batch_size: int = 8, size=(512, 512), repeats: int = 10,
                dtype_name: str = "bfloat16", models=("maskrcnn_resnet50_fpn", "panoptic_fpn_resnet50"),
                num_sampled_masks: int = 0, skip_torch: bool = False, log=print) -> list[dict]:
  """Table 3 as rows (`table` 'peak', 'device', 'detectron2'); a model that fails gets an 'error' row."""
  n = 1024 if smoke else 8192
  peak = timing.matmul_peak(DTYPES[dtype_name], n, repeats)
  rows = [{"table": "peak", "dtype": dtype_name, "n": n, "flop_per_s": peak}]
  tv = None if skip_torch else torch_module()
  tv = tv if tv is not None and tv.torch.cuda.is_available() else None
  for name in models:
    try:
      rows += device_model_rows(name, smoke, batch_size, size, dtype_name, repeats, peak, tv, num_sampled_masks, log)
    except Exception as e:  # pylint: disable=broad-except  (one model's failure must not lose the other's row)
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
      rows.append({"table": "device", "model": name, "side": "ours", "error": f"{type(e).__name__}: {e}"})
  mask = next((r for r in rows if r["table"] == "device" and r["model"].startswith("maskrcnn") and "error" not in r),
              None)
  if mask is not None:
    rows.append(detectron2_row(mask["images_per_s"], size, peak))
  return rows


def print_device(rows: list[dict]) -> None:
  """Table 3 from `device_rows`' rows."""
  peak = table.select(rows, table="peak")[0]
  print(f"device {jax.devices()[0].device_kind}, {peak['dtype']} matmul peak ({peak['n']}^3): "
        f"{peak['flop_per_s'] / 1e12:.2f} TFLOP/s")
  device = table.select(rows, table="device")
  first = next((r for r in device if "error" not in r), {})
  print(table.markdown(device, ["model", "step_ms", "images_per_s", "tflop_per_s", "of_peak", "xla_peak_gb",
                                "xla_peak_gb_per_image", "allocator_peak_gb", "error"],
                       title=f"\n## 3. Training step, {peak['dtype']} compute (float32 parameters), batch "
                             f"{first.get('batch')} at {first.get('size')}, median of {first.get('repeats')} "
                             f"({timing.load()}); allocator peak cumulative over the process"))
  for d2 in table.select(rows, table="detectron2"):
    print(f"\n## detectron2 (published): Mask R-CNN R50-FPN {D2_IMG_S:.0f} img/s on {D2_GPUS} V100 = "
          f"{d2['detectron2_images_per_s_per_gpu']:.2f} img/s per GPU (short side 800, long <= 1333, 2 img/GPU, "
          f"float32)")
    print(f"ours per GPU at {d2['size']} ({d2['megapixels']:.2f} MP per image; theirs ~0.8-1.1 MP): "
          f"{d2['ours_images_per_s']:.2f} img/s = {d2['ours_over_detectron2']:.2f}x detectron2's per-GPU rate")
    print(f"per FLOP of peak, ours over detectron2 (V100 fp16 tensor peak 125 TFLOP/s): "
          f"{d2['per_flop_of_peak_vs_v100_fp16']:.3f}; (V100 fp32 peak 15.7 TFLOP/s): "
          f"{d2['per_flop_of_peak_vs_v100_fp32']:.3f}")


def main(argv=None) -> list[dict]:
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
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  size = parse_size(args.size or (SMOKE_SIZE if args.smoke else 512))
  batch = args.batch or (8 if args.device_mode and not args.smoke else 2)
  repeats = args.repeats or (2 if args.smoke else 10 if args.device_mode else 5)
  if batch < 1 or repeats < 1:
    raise ValueError(f"--batch, --repeats: expected >= 1, got {batch}, {repeats}")
  if args.device_mode:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  t0 = time.perf_counter()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}, cpu cores "
        f"{os.cpu_count()}, {timing.load()}{' (smoke: tiny shapes, figures meaningless)' if args.smoke else ''}",
        flush=True)
  log = lambda line: print(line, flush=True)
  if args.device_mode:
    rows = device_rows(args.smoke, batch, size, repeats, args.dtype or "bfloat16", tuple(args.models.split(",")),
                       args.num_sampled_masks, args.skip_torch, log)
    print_device(rows)
  else:
    rows = cpu_rows(args.smoke, batch, size, repeats, args.dtype or "float32", args.num_sampled_masks,
                    args.skip_parts, args.skip_torch, log)
    print_cpu(rows)
  print(f"\nwall time {time.perf_counter() - t0:.0f} s, {timing.load()}")
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
