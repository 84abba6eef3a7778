"""Keypoint R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: the polygon corners as keypoints, COCO keypoint AP.

    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_kprcnn
    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py --workdir runs/keypointrcnn_dense_shapes

`dense_shapes` has 4 keypoint slots per instance: a square's 4 corners, a triangle's 3; discs, rings and bars none.
As torchvision's person-only model on COCO's person_keypoints (which annotate persons only), the model has
one class, "an object with keypoints": the dataset's `keypoint_classes` (squares and triangles) are class 1
(`object_classes` in the model config), every other instance is background, and the keypoints task scores
only those (`num_keypoints=4`; OKS with the dataset's sigmas, `DatasetInfo.oks_sigmas`). `metrics.jsonl`
gets `val/keypoint_ap`, `val/keypoint_ap50`, `val/keypoint_ap75` (and medium/large, recall) from the
`keypoints` task; figures draw the predicted keypoints next to the ground truth.

Quick mode: Mask R-CNN's quick settings (anchors, counts, AdamW peak 2e-3), 8 RoI slots per image for the
keypoint head (its eight 3x3 convs cost per slot; a 64 px scene has ~2 squares/triangles), 800 steps
(~6 min at 2.3 steps/s on the quiet 2-core CPU).

Measured 2026-11-30 (quiet 2-core CPU, load ~1.5-2.5, 18 min each), 2400 steps (`:quick,steps=2400`):
  plain head (torchvision's):  val keypoint AP 0.0005 / AP50 0.0021; keypoint CE 6.74 -> 6.23 (mean of the
                               first / last 400 steps)
  `norm=gn` (GroupNorm):       val keypoint AP 0.0008 / AP50 0.0036; keypoint CE 6.82 -> 6.28
On small_64 it does NOT learn keypoints in this budget. The cross-entropy over the 56x56 = 3136 cells (ln 3136 = 8.05)
only reaches the position prior: a fixed per-slot distribution of the target cell over ground-truth boxes
scores 6.0 on the training split; the box losses fall as in Mask R-CNN. The corner of a 13 px object sits
within ~3 cells of P2 (stride 4), and OKS 0.5 needs it within ~1.5 px. Keypoint R-CNN is a slow learner
even from ImageNet weights (detectron2's COCO schedule is 90k iterations of batch 16), but the same
2400 steps of batch 8 do learn on the 128 px scenes (below): the 64 px scenes' resolution is what stops it. The plain head also loses its first conv: after 2400 steps only
3% of its channels fire on validation RoIs (`python -m experiments.keypoint_head_units --workdir ...`;
GroupNorm keeps 99%), as Adam's per-weight steps times the FPN's unnormalised RoI features (std ~20-40)
drive the pre-activations off (dense_jax/models/heads/keypoint.py). The same model memorises a fixed
batch (`python -m experiments.maskrcnn_overfit --keypoints --images 8 --steps 300`: keypoint AP 0.73 on
those images at step 200), so the losses, targets and decoding are consistent.

On `dense_shapes/medium_128` (the full mode's data: objects of 20-40 px, whose corners P2 resolves) it
learns. Measured 2026-12-01, quiet 2-core CPU (load ~2, the run alone), 1.0 step/s, 40 min wall with
compilation and two evaluations of the 200 validation images; the full mode's model and counts with the
GroupNorm head, 16 keypoint-head slots per image, 2400 steps of batch 8 at peak lr 2e-3:
  val keypoint AP 0.026 / AP50 0.071 at step 1200, AP 0.134 / AP50 0.263 / AP75 0.096 (AR 0.393) at 2400;
  keypoint CE 6.92 -> 4.00 (mean of the first / last 400 steps), still falling; every head conv keeps
  95-100% of its channels firing (keypoint_head_units).

    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py:steps=2400,lr=0.002,norm=gn,slots=16 \
        --config.batch_size=8 --config.optimizer.warmup_steps=50 --config.eval_every=1200 \
        --config.checkpoint_every=1200 --workdir runs/keypointrcnn_medium_2400

Arguments (`:quick,steps=800,norm=gn`): quick, steps, depth, lr, as in experiments/maskrcnn_dense_shapes.py;
norm ('' torchvision's plain keypoint head, 'gn' GroupNorm after each of its convs), slots (keypoint-head
RoI slots per image, `MaskRCNN.num_sampled_masks`; -1 = the mode's default: quick 8, full 0 = every positive).
"""

from __future__ import annotations

import ml_collections

from experiments.configs_common import parse_arg
from experiments.maskrcnn_dense_shapes import base_config, model_config


QUICK_STEPS = 800   # half Mask R-CNN's: the keypoint head doubles the step time (module docstring)
QUICK_HEAD_SLOTS = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, steps=0, depth=50, lr=0.0, norm="", slots=-1)
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  config = base_config(arg.quick, arg.steps or (QUICK_STEPS if arg.quick else 0), arg.lr)
  info = data_lib.dataset_info(config.dataset.name)
  model = model_config(arg.quick, arg.depth, keypoints=True)
  # background + "an object with keypoints": the dataset's keypoint classes (squares, triangles)
  model.update(num_keypoints=info.num_keypoints, num_classes=2, object_classes=info.keypoint_classes,
               keypoint_head_norm=arg.norm)
  # The keypoint head's cost is per RoI slot: 8 per image hold a quick scene's positives; the full mode
  # keeps torchvision's bound (0: every positive slot) unless `slots` sets one.
  slots = arg.slots if arg.slots >= 0 else (QUICK_HEAD_SLOTS if arg.quick else 0)
  if slots:
    model.update(num_sampled_masks=slots)
  config.model = ml_collections.ConfigDict(model)
  config.tasks = ml_collections.ConfigDict({"keypoints": {"weight": 1.0}})
  return config
