"""The common fine-tuning recipes on real datasets, each starting from pretrained weights (`config.init`).

  deeplabv3  DeepLabV3-ResNet-50 (output stride 8, aux head) on VOC 2012 + SBD from torchvision's ImageNet
             `resnet50` file: the backbone loads under `backbone/`, ASPP and both heads start at init.
             SGD 0.01 on every layer as torchvision's reference recipe (the "backbone at 0.1x" variant:
             `--config.optimizer.lr_multipliers="(('^backbone/', 0.1),)"`), poly 0.9, weight decay 1e-4,
             30k steps of batch 16, 513x513 crops.
  maskrcnn   Mask R-CNN ResNet-50-FPN on COCO 2017 from torchvision's COCO file
             (`maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth`): FrozenBatchNorm buffers (`frozen_bn='buffers'`),
             the stem and layer1 frozen (`trainable_backbone_layers=3`), SGD 0.02, 90k steps of batch 16.
             torchvision's class-specific layers have 91 outputs (COCO's raw category ids) against our 81
             contiguous classes, so `box_predictor` and `mask_predictor/mask_fcn_logits` stay at init
             and the run's `init_report.json` lists them with both shapes.
  panoptic   Panoptic FPN ResNet-50 on COCO panoptic from a Mask R-CNN *run* of this codebase (its
             workdir): backbone, FPN, RPN and RoI heads load, the semantic FPN branch starts at init.

    python -m dense_jax.train --config experiments/pretrained_recipes.py:deeplabv3 \\
        --config.init.path=resnet50-0676ba61.pth --config.dataset.data_dir=gs://bucket/voc \\
        --workdir gs://bucket/runs/deeplabv3_voc
    python -m dense_jax.train --config experiments/pretrained_recipes.py:maskrcnn \\
        --config.init.path=maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --workdir runs/maskrcnn_coco
    python -m dense_jax.train --config experiments/pretrained_recipes.py:panoptic \\
        --config.init.path=runs/maskrcnn_coco --workdir runs/panoptic_coco

Any dataset the trainer reads works the same way, e.g. `--config.dataset.name=tfds:coco/2017_panoptic`
(see the README, "Data on TFDS / GCS"). These are full-size runs for accelerators; their CPU-sized
counterpart is `experiments/finetune_dense_shapes.py`. Argument: the recipe name.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg

RECIPES = ("deeplabv3", "maskrcnn", "panoptic")
STEM_AND_LAYER1 = "^backbone/body/(conv1|bn1|layer1_)"   # torchvision's trainable_backbone_layers=3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, recipe="deeplabv3")
  if arg.recipe not in RECIPES:
    raise ValueError(f"recipe: expected one of {RECIPES}, got {arg.recipe!r}")
  config = default_config()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.log_every, config.eval_every, config.checkpoint_every = 100, 5000, 1000
  config.keep_checkpoints = 2
  if arg.recipe == "deeplabv3":
    config.dataset.name, config.dataset.image_size = "voc2012_sbd", 513
    config.model = ml_collections.ConfigDict(dict(name="deeplabv3_resnet50", aux_classifier=True))
    config.tasks = ml_collections.ConfigDict(dict(semantic=dict(weight=1.0, aux_weight=0.5)))
    config.total_steps, config.batch_size = 30_000, 16
    config.optimizer = ml_collections.ConfigDict(dict(
        name="sgd", learning_rate=0.01, momentum=0.9, schedule="poly", power=0.9, weight_decay=1e-4,
        lr_multipliers=()))
    return config
  detection = dict(name=f"{'maskrcnn' if arg.recipe == 'maskrcnn' else 'panoptic_fpn'}_resnet50"
                        f"{'_fpn' if arg.recipe == 'maskrcnn' else ''}", frozen_bn="buffers")
  config.model = ml_collections.ConfigDict(detection)
  config.dataset.image_size = 800
  config.total_steps, config.batch_size = 90_000, 16
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.02, momentum=0.9, schedule="cosine", warmup_steps=1000, weight_decay=1e-4,
      freeze=STEM_AND_LAYER1))
  if arg.recipe == "maskrcnn":
    config.dataset.name = "coco2017_instances"
    config.tasks = ml_collections.ConfigDict(dict(instances=dict(weight=1.0)))
  else:
    from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    config.dataset.name = "coco2017_panoptic"
    config.model.thing_classes = tuple(data_lib.dataset_info(config.dataset.name).thing_classes)
    config.tasks = ml_collections.ConfigDict(dict(instances=dict(weight=1.0), panoptic=dict(weight=1.0)))
  return config
