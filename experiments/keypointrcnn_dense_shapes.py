"""Keypoint R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: the polygon corners as keypoints, COCO keypoint AP.

    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_kprcnn
    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py --workdir runs/keypointrcnn_dense_shapes

`dense_shapes` has 4 keypoint slots per instance (a square's 4 corners, a triangle's 3). As torchvision's
person-only model, the model has one class, "an object with keypoints": the dataset's `keypoint_classes`
are class 1 (`object_classes` in the model config), every other instance is background, and the keypoints
task scores only those (OKS with `DatasetInfo.oks_sigmas`). `metrics.jsonl` gets `val/keypoint_ap`,
`val/keypoint_ap50`, `val/keypoint_ap75` (and medium/large, recall). Quick mode: Mask R-CNN's quick
settings, 8 keypoint-head RoI slots per image (a 64 px scene has ~2 squares/triangles), 800 steps.

Measured 2026-12-01 on `dense_shapes/medium_128` (docs/results.md 5d), GroupNorm head, 16 slots, 2400 steps
of batch 8: val keypoint AP 0.134 / AP50 0.263 / AP75 0.096:

    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py:steps=2400,lr=0.002,norm=gn,slots=16 \
        --config.batch_size=8 --config.optimizer.warmup_steps=50 --config.eval_every=1200 \
        --config.checkpoint_every=1200 --workdir runs/keypointrcnn_medium_2400

On `small_64` the same budget does not learn keypoints (AP < 0.001): the corners of its 5-25 px objects
are finer than P2 (stride 4) resolves.

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
