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

Arguments (`:quick,steps=800`): quick, steps, depth, lr, as in experiments/maskrcnn_dense_shapes.py.
"""

from __future__ import annotations

import ml_collections

from experiments.configs_common import parse_arg
from experiments.maskrcnn_dense_shapes import base_config, model_config


QUICK_STEPS = 800   # half Mask R-CNN's: the keypoint head doubles the step time (module docstring)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, steps=0, depth=50, lr=0.0)
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  config = base_config(arg.quick, arg.steps or (QUICK_STEPS if arg.quick else 0), arg.lr)
  info = data_lib.dataset_info(config.dataset.name)
  model = model_config(arg.quick, arg.depth, keypoints=True)
  model.update(num_keypoints=info.num_keypoints, num_classes=2)   # background + "an object"
  config.model = ml_collections.ConfigDict(model)
  config.tasks = ml_collections.ConfigDict({"keypoints": {"weight": 1.0}})
  return config
