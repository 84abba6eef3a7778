"""Up-sampling operators in one decoder: nearest, bed of nails, max-unpooling, transposed conv, bilinear.

The model (`upsampling_ablation` in dense_jax/models/ablation.py) is a SegNet-like encoder-decoder
*without* skip connections, so every detail of the output has to come back through the decoder's
×2 up-samplings — the only thing that differs between runs:

  nearest        copy each pixel into its 2×2 block                    (`dense_jax.nn.Unpool`)
  bed_of_nails   the pixel at the block's top-left, zeros elsewhere     (`dense_jax.nn.Unpool`)
  max_unpool     the pixel where the encoder's max came from            (`dense_jax.nn.MaxUnpool`)
  transposed     a learned 4×4 stride-2 transposed conv, initialised bilinear (`ConvTranspose`)
  bilinear       fixed bilinear interpolation                           (`dense_jax.ops.resize_bilinear`)

Quick (CPU, ≈10 min for the 5 runs on 2 cores, `dense_shapes/small_64`):

    python -m experiments.sweep experiments/upsampling.py:quick --root runs/upsampling
    python -m experiments.evaluate_breakdown runs/upsampling     # boundary-band / object-size mIoU
    python -m experiments.report runs/upsampling

  Measured 2026-11-24 (one seed, shared 2-core CPU; docs/results.md §3): val mIoU nearest 0.467, transposed
  0.463, bilinear 0.458, bed_of_nails 0.435, max_unpool 0.435.

Full (accelerators: `dense_shapes/medium_128`, width 64, 4 levels, 20k steps):

    python -m experiments.sweep experiments/upsampling.py --root gs://bucket/up --target tpu \\
        --tpu_name my-v4-8 --zone us-central2-b

Arguments (`:quick,up=max_unpool`): quick, up (one of UPSAMPLERS), width / levels / steps (0 = the
mode's). Report columns from `describe`: rf, params, gflops, train_mb; the boundary band is where the
operators should differ most (`val/band/miou` after `evaluate_breakdown`).
"""

from __future__ import annotations

import ml_collections

from dense_jax.models.ablation import UPSAMPLERS
from experiments.ablation_common import model_columns, set_training
from experiments.configs_common import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, up="nearest", width=0, levels=0, steps=0)
  if arg.up not in UPSAMPLERS:
    raise ValueError(f"config argument 'up': expected one of {list(UPSAMPLERS)}, got {arg.up!r}")
  quick = arg.quick
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.dataset = ml_collections.ConfigDict(dict(
      name="dense_shapes/small_64" if quick else "dense_shapes/medium_128",
      image_size=None, data_dir=None, train_split="train", eval_split="validation", augment=True))
  config.model = ml_collections.ConfigDict(dict(
      name="upsampling_ablation", width=arg.width or (16 if quick else 64),
      levels=arg.levels or (3 if quick else 4), convs=1 if quick else 2, up=arg.up,
      transposed_init="bilinear"))

  set_training(config, quick=quick, steps=arg.steps, quick_steps=400, quick_batch=16,
               quick_checkpoint_every=200)
  config.experiment = ml_collections.ConfigDict(dict(
      band_radius=2 if quick else 4, small_area=100 if quick else 400, erf_batch=8))
  return config


def sweep(add, arg=None):
  """One run per up-sampling operator."""
  del arg
  for up in UPSAMPLERS:
    add(name=up, **{"model.up": up})


def describe(config) -> dict:
  return model_columns(config)
