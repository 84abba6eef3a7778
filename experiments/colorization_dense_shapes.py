"""Colorization on `dense_shapes` with the network of Zhang, Isola & Efros (ECCV 2016).

The network sees the lightness L of each image and predicts a distribution over the Q = 262 in-gamut
ab bins at 1/4 resolution (`dense_jax.models.colorization`); the loss is the class-rebalanced
cross-entropy against soft-encoded targets built from the image inside the train step, with the
rebalancing prior of the training split (computed once, cached; `dense_jax.tasks.colorization`).

Quick (minutes on a 2-core CPU; the narrow network, 64×64 scenes):

    python -m dense_jax.train --config experiments/colorization_dense_shapes.py:quick \
        --workdir /tmp/dense_jax_colorization

  Measured 2026-11-30 (shared 2-core CPU, about 9 min): 600 steps of batch 16, validation AuC 0.858,
  rebalanced AuC 0.772 (details in docs/results.md).

Full (128×128 scenes, the paper's widths):

    python -m dense_jax.train --config experiments/colorization_dense_shapes.py \
        --workdir runs/colorization_dense_shapes

Reported (prefixed `val/`): `colorization/auc` and `colorization/auc_rebalanced` (AuC of the ab-error
CDF over thresholds 0..150, plain and class-rebalanced, as in the paper's Table 1); the figures show
the grey input, the prediction (annealed mean, T = 0.38) and the truth.

Arguments (`:quick,rebalance=false`): quick, rebalance (False = the plain cross-entropy, the paper's
'Ours (L)' ablation), steps (0 = the mode's default).
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg, set_dense_shapes_training


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, rebalance=True, steps=0)
  config = default_config()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.cpu_devices = 2

  config.dataset.name = "dense_shapes/small_64" if arg.quick else "dense_shapes/medium_128"
  config.model = ml_collections.ConfigDict(dict(name="colorization_narrow" if arg.quick else "colorization"))
  config.tasks = {"colorization": {"weight": 1.0, "rebalance": arg.rebalance,
                                   "prior_examples": 256 if arg.quick else 2000}}

  set_dense_shapes_training(config, quick=arg.quick, steps=arg.steps)
  return config


def sweep(add, arg=None):
  """Class rebalancing on and off."""
  del arg
  add(name="rebalanced", arg="quick")
  add(name="plain", arg="quick,rebalance=false")
