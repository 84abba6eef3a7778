"""Dilation vs. downsampling: one backbone at output stride 32, 16 and 8.

At output stride 32 the backbone downsamples five times and one learned transposed convolution
(kernel 64, stride 32, initialised to bilinear; FCN-32s style) brings the scores back to the input
size. At 16 and 8 the stride of the last one or two stages is replaced by dilation (the lecture's
recipe: "change the stride from 2 to 1, dilate the subsequent convolutions by 2"), so every variant has
the same layers, the same receptive field and almost the same parameters (only the up-sampler's kernel,
2·OS wide, differs), and the last stages run at 4× / 16× the resolution. Model:
`dense_jax/models/ablation.py` (`stride_ablation`).

Quick (CPU, ≈10 min for the 3 runs on 2 cores: `dense_shapes/small_64`, the small residual backbone):

    python -m experiments.sweep experiments/dilation_vs_downsampling.py:quick --root runs/dilation
    python -m experiments.evaluate_breakdown runs/dilation      # mIoU near boundaries / by object size
    python -m experiments.report runs/dilation

  Measured 2026-11-24 (one seed, shared 2-core CPU; docs/results.md §1, §1b for depth/normals): val mIoU
  0.39 / 0.45 / 0.51 at output stride 32 / 16 / 8.

One run by hand:

    python -m dense_jax.train --config experiments/dilation_vs_downsampling.py:quick,output_stride=8 \\
        --workdir /tmp/os8

Full (accelerators: `dense_shapes/medium_128`, ResNet-50, 20k steps):

    python -m experiments.sweep experiments/dilation_vs_downsampling.py --root gs://bucket/dilation \\
        --target tpu --tpu_name my-v4-8 --zone us-central2-b

Depth and surface normals instead of semantic labels (`tasks=depth+normals`): the same backbone at
the same output strides, with a depth head and a normals head (each the same 1×1 conv + ×OS
up-sampler with 1 and 3 channels) in place of the classifier, trained with the depth and normals tasks
(`dense_jax.tasks.depth`: scale-invariant log loss, λ = 0.5, + gradient matching; `.normals`: the
negative mean dot product; weights 1 and 1, as in experiments/depth_normals_dense_shapes.py):

    python -m experiments.sweep experiments/dilation_vs_downsampling.py:quick,tasks=depth+normals \
        --root runs/dilation_depth_normals
    python -m experiments.report runs/dilation_depth_normals

Reported then: `val/depth/abs_rel, rmse, delta1, ...` and `val/normals/mean, median, within_11_25,
...` (no `evaluate_breakdown`: its band / object-size breakdown is of semantic labels).

Arguments (`:quick,output_stride=16,upsample=bilinear`): quick, output_stride (32 | 16 | 8),
upsample ('learned' | 'bilinear'), backbone ('' = the mode's: 'small' quick, 'resnet50' full), width
(0 = 1.0), steps (0 = the mode's), tasks ('semantic' | '+'-separated subset of semantic, depth,
normals, e.g. 'depth+normals'), seed (0; parameters, dropout and data order: a second seed of the whole
sweep is `:quick,seed=1` with another `--root`). Report columns from `describe`: rf (backbone, before the
up-sampler), params, gflops (inference, per image), train_mb (compiled train step); the trainer logs
steps_per_sec; `evaluate_breakdown` adds val/band/*, val/interior/*, val/small/*, val/large/*
(`dense_jax.metrics.breakdown`; band radius and small-object area in `config.experiment`).
"""

from __future__ import annotations

import ml_collections

from dense_jax.models.ablation import STRIDE_ABLATION_TASKS
from experiments.ablation_common import model_columns, set_training
from experiments.configs_common import parse_arg
from experiments.depth_normals_dense_shapes import parse_tasks

OUTPUT_STRIDES = (32, 16, 8)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, output_stride=32, upsample="learned", backbone="", width=0.0, steps=0,
                  tasks="semantic", seed=0)
  quick = arg.quick
  tasks = parse_tasks(arg.tasks, STRIDE_ABLATION_TASKS)
  config = ml_collections.ConfigDict()
  config.seed = arg.seed
  config.mesh_shape = (-1, 1)
  config.dataset = ml_collections.ConfigDict(dict(
      name="dense_shapes/small_64" if quick else "dense_shapes/medium_128",
      image_size=None, data_dir=None, train_split="train", eval_split="validation", augment=True))
  config.model = ml_collections.ConfigDict(dict(
      name="stride_ablation", backbone=arg.backbone or ("small" if quick else "resnet50"),
      width=arg.width or 1.0, blocks=(1, 1, 1, 1),
      output_stride=arg.output_stride, upsample=arg.upsample))
  if tasks != ("semantic",):
    # Only then: the semantic config stays the one earlier runs saved (a workdir refuses a changed config).
    config.model.tasks = tasks
    config.tasks = ml_collections.ConfigDict({t: {"weight": 1.0} for t in tasks})

  set_training(config, quick=quick, steps=arg.steps, quick_steps=800, quick_batch=16,
               quick_checkpoint_every=400)

  # Read by experiments/evaluate_breakdown.py (the trainer ignores this block): boundary band of
  # radius `band_radius` px; objects with fewer visible pixels than `small_area` are "small"
  # (≈ the median object area of small_64's validation split, 111 px; ×4 at 128 px).
  config.experiment = ml_collections.ConfigDict(dict(
      band_radius=2 if quick else 4, small_area=100 if quick else 400, erf_batch=8))
  return config


def sweep(add, arg=None):
  """Output stride 32 (downsample, learn to upsample), 16 and 8 (the last strides replaced by dilation)."""
  del arg
  for output_stride in OUTPUT_STRIDES:
    add(name=f"os{output_stride}", **{"model.output_stride": output_stride})


def describe(config) -> dict:
  tasks = tuple(config.model.get("tasks", ("semantic",)))
  # The receptive field before the up-sampler, after the 1×1 head of the output the layer table traces
  # (`build.primary_output`: semantic if present, else the first); every head sees the same backbone.
  return model_columns(config, rf_upto="classifier" if "semantic" in tasks else f"{tasks[0]}_head")
