"""Panoptic FPN on `dense_shapes`: Mask R-CNN + a semantic FPN head on one ResNet-FPN, merged and scored by PQ.

Quick (the narrow model, 64×64 scenes, learns on a 2-core CPU in minutes):

    python -m dense_jax.train --config experiments/panoptic_fpn_dense_shapes.py:quick --workdir /tmp/dense_jax_panoptic

Full (the narrow model on `dense_shapes/medium_128`, 20k steps of batch 16):

    python -m dense_jax.train --config experiments/panoptic_fpn_dense_shapes.py --workdir runs/panoptic_fpn_dense_shapes

Measured 2026-11-30 (quiet 2-core CPU; docs/results.md §5, §5b): quick, PQ 0.502 (things 0.171, stuff 0.916) in 8 min;
the full mode's model and data on a shortened schedule (`:steps=1600,score=0.3 --config.batch_size=8
--config.optimizer.learning_rate=2e-3 --config.optimizer.warmup_steps=50`), 17 min: PQ 0.687 (things 0.472,
stuff 0.957), mask AP 0.436, semantic-head mIoU 0.940. The full schedule (20k steps of batch 16) was not run.

`metrics.jsonl` gets `val/pq`, `val/pq_things`, `val/pq_stuff`, `val/sq`, `val/rq` (and per class
`val/pq/<class>`) from the `panoptic` task, and the train losses `loss/panoptic` (semantic head) and
the Mask R-CNN terms.

Tasks: `panoptic` (the semantic head, weight `semantic_weight=`, the paper's λ) and `instances` (Mask R-CNN's
losses and mask AP, weight `instance_weight=`). Does the shared network cost either task? `branches=semantic`
trains the semantic head alone (instance weight 0) and `branches=instances` the instance branch alone (semantic
weight 0); every run reports PQ, mask AP and the semantic head's mIoU (`val/semantic_miou`, stuff + "thing"
channels), so the three runs of the sweep compare on the same metrics:

    python -m experiments.sweep experiments/panoptic_fpn_dense_shapes.py:quick --root runs/panoptic_branches

Merge thresholds are model fields (`config.model.score_threshold`, `overlap_threshold`,
`stuff_area_fraction`); quick mode lowers the score threshold to 0.3 because a model trained for a
couple of thousand steps is rarely confident; full mode keeps the paper's 0.5.

COCO panoptic output of a checkpoint (PNG + JSON next to evaluate's results):

    python -m dense_jax.evaluate --config experiments/panoptic_fpn_dense_shapes.py:quick \
        --config.tasks.panoptic.write_pngs=true --workdir /tmp/dense_jax_panoptic

Arguments (`:quick,steps=1600`): quick, steps (0 = the mode's default), depth (50 | 101),
semantic_weight (the panoptic task's loss weight, the paper's λ), instance_weight (the instances task's),
branches ('both' | 'semantic' | 'instances': which branch trains, the other's weight set to 0), score
(merge score threshold, 0 = the mode's default). Any key can be overridden on the command line, e.g.
`--config.model.overlap_threshold=0.6`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg
from experiments.maskrcnn_dense_shapes import QUICK_LR, QUICK_MODEL, QUICK_STEPS

BRANCHES = ("both", "semantic", "instances")   # which branches train (the others' loss weight is 0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, steps=0, depth=50, semantic_weight=1.0, instance_weight=1.0, branches="both",
                  score=0.0)
  if arg.branches not in BRANCHES:
    raise ValueError(f"branches: expected one of {BRANCHES}, got {arg.branches!r}")
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  config = default_config()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2
  config.dataset.name = "dense_shapes/small_64" if arg.quick else "dense_shapes/medium_128"
  info = data_lib.dataset_info(config.dataset.name)

  model = dict(name=f"panoptic_fpn_resnet{arg.depth}_narrow", thing_classes=tuple(info.thing_classes),
               score_threshold=arg.score or (0.3 if arg.quick else 0.5))
  if arg.quick:   # Mask R-CNN's quick settings: small anchors, few proposals and RoIs (every count static)
    model.update(QUICK_MODEL)
  else:
    model.update(anchor_sizes=(16, 32, 64, 128, 256), box_detections_per_img=32)
  config.model = ml_collections.ConfigDict(model)

  semantic_weight = 0.0 if arg.branches == "instances" else arg.semantic_weight
  instance_weight = 0.0 if arg.branches == "semantic" else arg.instance_weight
  config.tasks = ml_collections.ConfigDict({"instances": {"weight": instance_weight},
                                            "panoptic": {"weight": semantic_weight, "write_pngs": False}})

  # Quick: Mask R-CNN's schedule (its instance branch needs ~1000 steps from scratch before box AP moves).
  config.total_steps = arg.steps or (QUICK_STEPS if arg.quick else 20_000)
  config.batch_size = 8 if arg.quick else 16
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=QUICK_LR if arg.quick else 1e-3, schedule="cosine",
      warmup_steps=50 if arg.quick else 500,
      weight_decay=1e-4, grad_clip_norm=5.0))
  config.log_every = 50 if arg.quick else 100
  config.eval_every = config.total_steps if arg.quick else 2000
  config.checkpoint_every = config.total_steps if arg.quick else 2000
  config.keep_checkpoints = 2
  config.eval_batch_size = 16
  config.num_figures = 4
  return config


def sweep(add, arg=None):
  """Both branches (Panoptic FPN) against each branch trained alone on the same backbone."""
  mode = "quick," if arg and "quick" in arg.split(",") else ""
  for branches in BRANCHES:
    add(name={"both": "panoptic_fpn", "semantic": "semantic_only", "instances": "instance_only"}[branches],
        arg=f"{mode}branches={branches}")
