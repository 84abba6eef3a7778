"""Fine-tuning on `dense_shapes`: does starting from another run's weights beat training from scratch?

Two studies, each a pretraining run and then, for the same steps and seeds, a run initialised from it
(`config.init`) against one from random weights:

  semantic  a U-Net (the quick one) pretrained on `small_64`, fine-tuned on `context_64` (other classes:
            a thing's class is its shape x the stuff around it), its last 1x1 classifier re-initialised
            (`init.exclude`); metric `val/miou`.
  panoptic  Panoptic FPN initialised from a Mask R-CNN run on `small_64` (the same narrow ResNet-50-FPN
            and quick anchors: backbone, FPN, RPN and RoI heads load, the semantic FPN branch starts at
            init) against Panoptic FPN from scratch; metrics `val/pq`, `val/mask_ap`.

The whole study, with its table and plot (`experiments/finetune_study.py` runs the stages in order):

    python -m experiments.finetune_study --root runs/finetune --study semantic --figures docs/results
    python -m experiments.finetune_study --root runs/finetune --study panoptic --figures docs/results

One stage by hand (the fine-tuning stage needs the pretraining run's workdir as `init.path`):

    python -m dense_jax.train --config experiments/finetune_dense_shapes.py:study=semantic,stage=pretrain \\
        --workdir runs/finetune/semantic/pretrain
    python -m dense_jax.train --config experiments/finetune_dense_shapes.py:study=semantic,stage=finetune,seed=1 \\
        --config.init.path=runs/finetune/semantic/pretrain --workdir runs/finetune/semantic/finetune_seed1

Measured: docs/results.md §6. Arguments: study ('semantic' | 'panoptic'), stage ('pretrain' |
'finetune' | 'scratch'), seed, steps (0 = the study's default for the stage).
"""

from __future__ import annotations

import ml_collections

from experiments import maskrcnn_dense_shapes, panoptic_fpn_dense_shapes, unet_dense_shapes
from experiments.configs_common import parse_arg

STUDIES = ("semantic", "panoptic")
STAGES = ("pretrain", "finetune", "scratch")
# Steps per stage (pretrain, then finetune = scratch): short enough for a 2-core CPU, long enough that
# the from-scratch runs are still climbing, which is where a good start shows.
STEPS = {"semantic": (600, 300), "panoptic": (800, 400)}
SEMANTIC_HEAD = "^head/"       # the U-Net's last 1x1 conv: context_64's classes mean other things


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, study="semantic", stage="pretrain", seed=0, steps=0)
  if arg.study not in STUDIES:
    raise ValueError(f"study: expected one of {STUDIES}, got {arg.study!r}")
  if arg.stage not in STAGES:
    raise ValueError(f"stage: expected one of {STAGES}, got {arg.stage!r}")
  pretrain_steps, tune_steps = STEPS[arg.study]
  steps = arg.steps or (pretrain_steps if arg.stage == "pretrain" else tune_steps)
  if arg.study == "semantic":
    config = unet_dense_shapes.get_config(f"quick,steps={steps}")
    if arg.stage != "pretrain":
      config.dataset.name = "dense_shapes/context_64"
    config.eval_every = steps // 4
  elif arg.stage == "pretrain":
    config = maskrcnn_dense_shapes.get_config(f"quick,steps={steps}")
    config.eval_every = steps
  else:
    config = panoptic_fpn_dense_shapes.get_config(f"quick,steps={steps}")
    config.eval_every = steps // 2
    config.eval_max_batches = 8     # 128 validation images, as the Mask R-CNN run is scored
  config.seed = arg.seed
  config.checkpoint_every = config.eval_every
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps // 10)
  if arg.stage == "finetune" and arg.study == "semantic":
    config.init.exclude = SEMANTIC_HEAD
  return config
