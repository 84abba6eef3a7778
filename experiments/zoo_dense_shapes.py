"""The model zoo on `dense_shapes`: every architecture trained with one recipe, one run each.

Quick (CPU: the narrow variants on `dense_shapes/small_64`, batch 16, 2 JAX CPU devices):

    python -m experiments.sweep experiments/zoo_dense_shapes.py:quick --root runs/zoo
    python -m experiments.report runs/zoo          # params, GFLOPs, steps/s, val mIoU per model

  Measured 2026-11-24 (2-core VM shared with other jobs): 800 steps each, 1.3–6.3 min per model, 26 min for
  the eleven; val mIoU from 0.338 (FCN-32s) to 0.557 (U-Net) — the table is in the README's
  "Model zoo" section and in docs/results.md. Rerunning the sweep skips finished runs and resumes
  interrupted ones.

One model by hand:

    python -m dense_jax.train --config experiments/zoo_dense_shapes.py:quick,model=fcn8s_narrow \\
        --workdir /tmp/fcn8s

Full (accelerators: the full-size models of the same families on `dense_shapes/medium_128`):

    python -m experiments.sweep experiments/zoo_dense_shapes.py --root gs://bucket/zoo \\
        --target tpu --tpu_name my-v4-8 --zone us-central2-b

Arguments (`:quick,model=segnet_narrow,steps=300`): quick, model (a key of `ZOO`, the narrow
variant's registered name; in full mode its full-size family member is trained), steps (0 = the
mode's). The recipe shared by all (AdamW, linear warm-up + cosine decay, weight decay on kernels,
gradient clipping) is in `get_config`; what a model needs beyond it — its constructor arguments and
optimizer changes — is in `ZOO`, each with the reason. Report columns from `describe`: params and
gflops (inference, per image, at the dataset's size); the trainer logs steps_per_sec and the
evaluation's val/miou (quick: halfway and at the end).
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.ablation_common import model_columns
from experiments.configs_common import parse_arg

# The common recipe (the quick U-Net's): every model gets it unless its ZOO entry says otherwise.
RECIPE = dict(name="adamw", learning_rate=3e-3, schedule="cosine", weight_decay=1e-4, grad_clip_norm=1.0)
QUICK_STEPS = 800

# One entry per architecture, keyed by the narrow variant's registered name:
#   full        the full-size model trained in full mode
#   model       constructor arguments (both modes; `quick_model` / `full_model` add to them)
#   optimizer   changes to RECIPE (none is needed: see below)
# Every model trains with the same recipe and its constructor's defaults, dropout included (0.5 after
# fc6 and fc7 in FCN and the dilated nets, 0.5 in DeepLabV3's ASPP, 0.1 in FCN-ResNet's head).
# Checked, not assumed: in the quick run all eleven end far above the majority-class answer, and a
# lower learning rate for the plain-VGG nets without batch norm gains nothing beyond one run's noise
# (docs/results.md, "Model zoo"), so no model gets its own learning rate. FCN's zero-initialised score
# layers are no obstacle to Adam (the first steps move them).
# The sliding window needs nothing either: its default `mode='dense'` computes the patch classifier
# at every pixel in one pass (the same numbers as classifying each pixel's 18x18 patch, `mode='sliding'`,
# tested equal), so the trainer gets (N, H, W, K) logits and a loss on every pixel like any other model.
ZOO: dict[str, dict] = {
    "sliding_window_narrow": dict(full="sliding_window", model={}),
    "fcn32s_narrow": dict(full="fcn32s", model={}),
    "fcn16s_narrow": dict(full="fcn16s", model={}),
    "fcn8s_narrow": dict(full="fcn8s", model={}),
    "fcn_resnet50_narrow": dict(full="fcn_resnet50", model={}),
    # fc6 'valid' (the paper's) needs >= 224 px; the full mode's 128 px images need 'same' (the narrow
    # variant's default already).
    "deconvnet_narrow": dict(full="deconvnet", model={}, full_model=dict(fc_padding="same")),
    "segnet_narrow": dict(full="segnet", model={}),
    "dilated_frontend_narrow": dict(full="dilated_frontend", model={}),
    "dilated_context_narrow": dict(full="dilated_context", model={}),
    "deeplabv3_resnet50_narrow": dict(full="deeplabv3_resnet50", model={}),
    # The README's U-Net (experiments/unet_dense_shapes.py): width 16, depth 3 in quick mode.
    "unet": dict(full="unet", model=dict(padding="same", up="transposed", norm="batch", remat=False),
                 quick_model=dict(width=16, depth=3), full_model=dict(width=64, depth=4)),
}


def model_block(name: str, quick: bool) -> dict:
  """The config's `model` block for the ZOO entry `name` in quick (narrow) or full mode."""
  if name not in ZOO:
    raise ValueError(f"config argument 'model': expected one of {sorted(ZOO)}, got {name!r}")
  entry = ZOO[name]
  kwargs = {**entry["model"], **entry.get("quick_model" if quick else "full_model", {})}
  return dict(name=name if quick else entry["full"], **kwargs)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, model="unet", steps=0)
  quick = arg.quick
  entry = ZOO.get(arg.model)
  config = default_config()   # every optional key, so any of them can be overridden from the command line
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2      # on a CPU-only machine: one JAX device per core (see dense_jax.train.config)
  config.dataset.name = "dense_shapes/small_64" if quick else "dense_shapes/medium_128"
  config.model = ml_collections.ConfigDict(model_block(arg.model, quick))

  config.total_steps = arg.steps or (QUICK_STEPS if quick else 20_000)
  config.batch_size = 16 if quick else 32
  config.optimizer = ml_collections.ConfigDict(dict(
      RECIPE, warmup_steps=50 if quick else 500, **entry.get("optimizer", {})))

  config.log_every = 25 if quick else 100
  config.eval_every = QUICK_STEPS // 2 if quick else 2000
  config.checkpoint_every = 200 if quick else 2000
  config.keep_checkpoints = 1 if quick else 2
  config.num_figures = 4
  config.tensorboard = not quick
  return config


def sweep(add, arg=None):
  """One run per architecture, named by its ZOO key (its `model=` argument rides on the run's arg)."""
  base = arg or ""
  for name in ZOO:
    add(name=name, arg=f"{base},model={name}" if base else f"model={name}")


def describe(config) -> dict:
  # No train_mb: compiling SegNet's / DeconvNet's train step once more can take minutes on 2 cores.
  # No rf: the sliding window's layers are `lax` calls, which the layer table does not see.
  return model_columns(config, memory=False, rf=False)
