"""Mask R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: instance segmentation scored by COCO box / mask AP.

Quick (64×64 scenes, 1600 steps of batch 8, AdamW peak 2e-3 with cosine decay, two anchor sizes per level).
Measured 2026-11-30 on the shared 2-core machine (load average 3.7-6.9, 1.5-2.2 steps/s; 14 m 35 s wall
with compilation and the evaluation of 128 validation images): val box AP 0.194 / AP50 0.342 / AP75 0.220
(AR 0.393), mask AP 0.172 / AP50 0.311 / AP75 0.162; train losses at step 50 -> 1600: mask BCE 0.61 -> 0.30,
RPN objectness 0.14 -> 0.05, RoI classifier 0.63 -> 0.55.

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_maskrcnn

History: the former quick mode (300 steps, lr 1e-3, one anchor size per level) ended at box AP 0.004-0.008 /
AP50 0.02-0.03. That was under-training, not a bug: the same model memorises a fixed batch of 8 training
images in 150 steps (box AP50 1.00, AP 0.85 on those images; `experiments/maskrcnn_overfit.py`, and the
slow test tests/models/test_maskrcnn_overfit.py), its inference and losses equal torchvision's
(tests/models/test_maskrcnn_parity.py), and on fresh batches from scratch its validation box AP50 stays
near 0 for ~300 steps, then climbs (lr 1e-3 constant: 0.02 at 200 steps, 0.09 at 400, 0.20 at 600, 0.25
at 800, on 32 validation images). Same settings at 1200 steps: box AP50 0.265, AP 0.144 (9 m 53 s, load ~5).

Full (the narrow model to convergence on `dense_shapes/medium_128`; the issue's aim is mask AP >= 0.5):

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py --workdir runs/maskrcnn_dense_shapes

The full mode (20,000 steps of batch 16) is ~6 h on 2 cores; measured instead on its model and data with a
shortened schedule (4000 steps of batch 8, peak lr 2e-3, 50 warm-up steps; quiet 2-core CPU, load ~2, 1.75
steps/s, 39.5 min wall with compilation and two evaluations of the 200 validation images; docs/results.md 5c):
val mask AP 0.722 / AP50 0.908 / AP75 0.817, box AP 0.714 / AP50 0.922 (mask AP 0.655 at step 2000); train
losses at step 100 -> 4000: mask BCE 0.59 -> 0.19, RoI classifier 0.71 -> 0.25, RoI box 0.57 -> 0.24.

    python -m dense_jax.train --config experiments/maskrcnn_dense_shapes.py:steps=4000,lr=0.002 \
        --config.batch_size=8 --config.optimizer.warmup_steps=50 --config.eval_every=2000 \
        --config.checkpoint_every=2000 --workdir runs/maskrcnn_medium_4000

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
