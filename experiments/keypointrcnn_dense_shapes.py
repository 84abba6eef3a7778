"""Keypoint R-CNN (narrow ResNet-50-FPN) on `dense_shapes`: the polygon corners as keypoints, COCO keypoint AP.

    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py:quick --workdir /tmp/dense_jax_kprcnn
    python -m dense_jax.train --config experiments/keypointrcnn_dense_shapes.py --workdir runs/keypointrcnn_dense_shapes

`dense_shapes` gives every thing 4 keypoint slots (the corners of squares and triangles; discs, rings and
bars have none), so the model has `num_keypoints=4`; as torchvision's person-only model, every instance is
class 1 ("an object"), and OKS uses the dataset's sigmas (`DatasetInfo.oks_sigmas`). Instances without
labelled keypoints still train the RPN and box head, and pycocotools ignores them in the keypoint AP.
`metrics.jsonl` gets `val/keypoint_ap`, `val/keypoint_ap50`, `val/keypoint_ap75` (and medium/large,
recall) from the `keypoints` task; figures draw the predicted keypoints next to the ground truth.

Quick mode: Mask R-CNN's quick settings (anchors, counts, AdamW peak 2e-3) but 800 steps, not 1600: the
keypoint head (eight 3x3 convs, then 56x56 maps) makes a step about twice as slow (1.0 step/s on the quiet
2-core CPU, against ~2 for Mask R-CNN's quick step under load), and 800 steps keep the run within ~15 min.
Measured 2026-11-30 (quiet, load ~2, 10 min 57 s): it does NOT learn keypoints yet — val keypoint AP 0.000,
the keypoint cross-entropy over the 56x56 = 3136 positions only 7.2 -> 6.9 (ln 3136 = 8.05) while the box
losses fall as in Mask R-CNN. The corners of 5-25 px objects are a few pixels apart, visible keypoints are
few per object, and 800 steps from scratch are far too short (the box branch alone needs ~1000, see
experiments/maskrcnn_dense_shapes.py). Open: a longer schedule, a keypoint loss weight, or larger scenes
(`dense_shapes/medium_128`).

Arguments (`:quick,steps=800`): quick, steps, depth, lr, as in experiments/maskrcnn_dense_shapes.py.
"""

from __future__ import annotations

import ml_collections

from experiments.configs_common import parse_arg
from experiments.maskrcnn_dense_shapes import base_config, model_config


QUICK_STEPS = 800   # half Mask R-CNN's: the keypoint head doubles the step time (module docstring)
QUICK_HEAD_SLOTS = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, steps=0, depth=50, lr=0.0, norm="")
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  config = base_config(arg.quick, arg.steps or (QUICK_STEPS if arg.quick else 0), arg.lr)
  info = data_lib.dataset_info(config.dataset.name)
  model = model_config(arg.quick, arg.depth, keypoints=True)
  # background + "an object with keypoints": the dataset's keypoint classes (squares, triangles)
  model.update(num_keypoints=info.num_keypoints, num_classes=2, object_classes=info.keypoint_classes,
               keypoint_head_norm=arg.norm)
  if arg.quick:   # the keypoint head's cost is per RoI slot: 8 per image hold a quick scene's positives
    model.update(num_sampled_masks=QUICK_HEAD_SLOTS)
  config.model = ml_collections.ConfigDict(model)
  config.tasks = ml_collections.ConfigDict({"keypoints": {"weight": 1.0}})
  return config
