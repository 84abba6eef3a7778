"""Mask R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: instance segmentation scored by COCO box / mask AP.

Quick (64×64 scenes, 300 steps of batch 8 on a 2-core CPU). Measured 2026-11-30 on the shared, loaded
machine (load average ~10-13; 0.5-0.8 steps/s, ~9 minutes with compilation): the losses fall (mask BCE 0.65
-> 0.51, RPN objectness 0.14 -> 0.10) but validation box AP is 0.004 / mask AP 0.002 (AP50 0.020 / 0.010):
300 steps from scratch are not yet enough; the learning rate, step count and anchors of this mode are still
to be tuned (open):

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_maskrcnn

Full (the narrow model to convergence on `dense_shapes/medium_128`; the issue's aim is mask AP >= 0.5):

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py --workdir runs/maskrcnn_dense_shapes

`metrics.jsonl` gets `val/box_ap`, `val/box_ap50`, `val/box_ap75`, `val/mask_ap`, `val/mask_ap50`,
`val/mask_ap75` (and the small/medium/large and recall entries) from the `instances` task, and the train
losses `loss/instances` with each term `instances/loss_<term>`. Evaluate a checkpoint, writing the COCO
results JSON next to the report:

    python -m dense_jax.evaluate --workdir /tmp/dense_jax_maskrcnn --num_figures=4

Arguments (`:quick,steps=300`): quick, steps (0 = the mode's default), depth (50 | 101), lr (peak
learning rate, 0 = the mode's default). Any key can be overridden on the command line, e.g.
`--config.model.box_score_thresh=0.01`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg

# 64 px scenes: objects of 8-40 px, so anchors from 8 px, and few proposals / RoIs (every count static).
QUICK_MODEL = dict(anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                   rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=128,
                   box_batch_size_per_image=64, box_detections_per_img=16, box_candidates_per_img=200)


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
  config.total_steps = steps or (300 if quick else 20_000)
  config.batch_size = 8 if quick else 16
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=lr or 1e-3, schedule="cosine", warmup_steps=25 if quick else 500,
      weight_decay=1e-4, grad_clip_norm=5.0))
  config.log_every = 25 if quick else 100
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
