"""U-Net on `dense_shapes`: the README's first training run.

Quick (a few minutes on a 2-core CPU, reaches a real validation mIoU):

    python -m dense_jax.train --config experiments/unet_dense_shapes.py:quick --workdir /tmp/dense_jax_unet

  Measured 2026-12-07 (2-core VM, 2 JAX CPU devices, dense_shapes 2.0.0): 1000 steps of batch 16 at
  64×64, validation mIoU 0.557 (pixel accuracy 0.923); 5 min 22 s wall on a quiet machine (2026-11-30;
  per-class IoUs of that run in docs/results.md). The run is deterministic and resumes if interrupted.

Full (the 128×128 dataset, the paper's width 64, padded form):

    python -m dense_jax.train --config experiments/unet_dense_shapes.py --workdir runs/unet_dense_shapes

Arguments (`:quick,width=32,up=bilinear`): quick, width (first-level channels), depth (poolings),
up ('transposed' | 'bilinear'), padding ('same' | 'valid'), norm ('batch' | 'none': the paper's U-Net
has no batch norm), steps (0 = the mode's default).
Any key can also be overridden on the command line, e.g. `--config.optimizer.learning_rate=0.003`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, width=0, depth=0, up="transposed", padding="same", norm="batch", steps=0)
  config = default_config()   # every optional key, so any of them can be overridden from the command line
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2   # on a CPU-only machine: one JAX device per core (see dense_jax.train.config)

  config.dataset.name = "dense_shapes/small_64" if arg.quick else "dense_shapes/medium_128"

  config.model = ml_collections.ConfigDict(dict(
      name="unet", width=arg.width or (16 if arg.quick else 64), depth=arg.depth or (3 if arg.quick else 4),
      padding=arg.padding, up=arg.up, norm=None if arg.norm == "none" else arg.norm, remat=False))

  config.total_steps = arg.steps or (1000 if arg.quick else 20_000)
  config.batch_size = 16 if arg.quick else 32
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=50 if arg.quick else 500,
      weight_decay=1e-4, grad_clip_norm=1.0))

  config.log_every = 25 if arg.quick else 100
  config.eval_every = 250 if arg.quick else 2000
  config.checkpoint_every = 250 if arg.quick else 2000
  config.keep_checkpoints = 2
  config.num_figures = 4
  return config


def sweep(add, arg=None):
  """Transposed-conv vs bilinear up-sampling, at two widths."""
  del arg
  for up in ("transposed", "bilinear"):
    for width in (16, 32):
      add(**{"model.up": up, "model.width": width})
