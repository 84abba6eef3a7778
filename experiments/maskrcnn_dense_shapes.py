"""Mask R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: instance segmentation scored by COCO box / mask AP.

Quick (64×64 scenes, 1600 steps of batch 8, AdamW peak 2e-3 with cosine decay, two anchor sizes per level):

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_maskrcnn

  Measured 2026-11-30 (shared 2-core CPU, 14 m 35 s): val box AP 0.194 / AP50 0.342, mask AP 0.172 / AP50 0.311.

Full (the narrow model to convergence on `dense_shapes/medium_128`, 20,000 steps of batch 16):

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py --workdir runs/maskrcnn_dense_shapes

  Measured 2026-12-01 on a shortened schedule (docs/results.md 5c, its command there): 4000 steps of batch 8,
  val mask AP 0.722 / AP50 0.908, box AP 0.714 / AP50 0.922.

`metrics.jsonl` gets `val/box_ap*` and `val/mask_ap*` (with small/medium/large and recall) from the
`instances` task and the train losses `loss/instances`, `instances/loss_<term>`. Evaluate a checkpoint,
writing the COCO results JSON next to the report:

    python -m dense_jax.evaluate --workdir /tmp/dense_jax_maskrcnn --num_figures=4

Arguments (`:quick,steps=300`): quick, steps (0 = the mode's default), depth (50 | 101), lr (peak
learning rate, 0 = the mode's default). Any key can be overridden on the command line, e.g.
`--config.model.box_score_thresh=0.01`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg

# 64 px scenes: objects of 5-25 px (sqrt of the box area: median 13), so anchors from 8 px, two sizes per
# level a half octave apart (one size per level leaves the median object's best anchor at IoU 0.58 and 2
# anchors >= 0.5 per object, so the RPN sees ~1 positive per object; two sizes: 0.66 and 5.5 anchors), and
# few proposals / RoIs (every count static).
QUICK_ANCHORS = ((8, 11), (16, 23), (32, 45), (64, 91), (128, 181))
QUICK_MODEL = dict(anchor_sizes=QUICK_ANCHORS, rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                   rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=128,
                   box_batch_size_per_image=64, box_detections_per_img=16, box_candidates_per_img=200)


# From scratch the narrow model needs ~1000 steps before its box AP moves (300 steps: box AP50 0.03).
QUICK_STEPS = 1600
QUICK_LR = 2e-3


def model_config(quick: bool, depth: int = 50, keypoints: bool = False) -> dict:
  """The narrow model's config block (quick: QUICK_MODEL's small counts; full: the narrow defaults)."""
  kind = "keypointrcnn" if keypoints else "maskrcnn"
  model = dict(name=f"{kind}_resnet{depth}_fpn_narrow")
  if quick:
    model.update(QUICK_MODEL)
  else:   # 128 px scenes: anchors 16..256 (the narrow default), up to 32 detections per image
    model.update(box_detections_per_img=32)
  return model


def base_config(quick: bool, steps: int, lr: float) -> ml_collections.ConfigDict:
  config = default_config()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2
  config.dataset.name = "dense_shapes/small_64" if quick else "dense_shapes/medium_128"
  config.total_steps = steps or (QUICK_STEPS if quick else 20_000)
  config.batch_size = 8 if quick else 16
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=lr or (QUICK_LR if quick else 1e-3), schedule="cosine",
      warmup_steps=50 if quick else 500,
      weight_decay=1e-4, grad_clip_norm=5.0))
  config.log_every = 50 if quick else 100
  config.eval_every = config.total_steps if quick else 2000
  config.checkpoint_every = config.total_steps if quick else 2000
  config.keep_checkpoints = 2
  config.eval_batch_size = 16
  config.eval_max_batches = 8 if quick else None   # quick: 128 validation images (pycocotools is host time)
  config.num_figures = 4
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, steps=0, depth=50, lr=0.0)
  config = base_config(arg.quick, arg.steps, arg.lr)
  config.model = ml_collections.ConfigDict(model_config(arg.quick, arg.depth))
  config.tasks = ml_collections.ConfigDict({"instances": {"weight": 1.0}})
  return config


def sweep(add, arg=None):
  """Peak learning rate."""
  del arg
  for lr in (3e-4, 1e-3, 3e-3):
    add(**{"optimizer.learning_rate": lr})
