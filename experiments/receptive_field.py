"""How large must the receptive field be? Context-module dilation schedules on `dense_shapes/context_64`.

In `context_64` a thing's class is its shape × the stuff region around it, so a pixel deep inside an
object is classified right only if the receptive field reaches the surrounding region (objects have
radius 11.5-19 px; see dense_jax/data/dense_shapes/config.py for the ceiling accuracy per window).
The model (`context_ablation` in dense_jax/models/ablation.py) is a 2-layer full-resolution front-end
(receptive field 5 px) followed by Yu & Koltun's basic context module with the schedule under test
(identity-initialised 3×3 convs, one per dilation), so the schedule alone sets the receptive field:

  schedule       dilations              context RF   model RF (input px)
  exponential    1, 1, 2, 4, 8, 16, 1   67           71
  constant       1, 1, 1, 1, 1, 1, 1    15           19
  gridding_2     2, 2, 2                13           17    (sees only every other pixel)
  gridding_4     4, 4, 4                25           29    (sees one pixel in 4 per axis)
  hybrid         1, 2, 5, 1, 2, 5       33           37    (Wang et al.'s HDC: no gaps)

Quick (CPU, ≈10 min for the 5 runs on 2 cores):

    python -m experiments.sweep experiments/receptive_field.py:quick --root runs/receptive_field
    python -m experiments.evaluate_breakdown runs/receptive_field   # + erf.png, ERF widths per run
    python -m experiments.report runs/receptive_field

  Measured 2026-11-24 (one seed, shared 2-core CPU; docs/results.md §2): val mIoU constant 0.36,
  gridding_2 0.38, gridding_4 0.45, hybrid 0.48, exponential 0.57.

One schedule by hand, and its layer table / ERF:

    python -m dense_jax.train --config experiments/receptive_field.py:quick,schedule=hybrid --workdir /tmp/hdc
    python -m dense_jax.tools.receptive_field --workdir /tmp/hdc --out /tmp/hdc/erf.png

Full (accelerators): the same schedules, wider (64 channels), 20k steps, batch 64:

    python -m experiments.sweep experiments/receptive_field.py --root /scratch/rf --target slurm --nodes 1

Arguments (`:quick,schedule=hybrid`): quick, schedule (a name of SCHEDULES), width (0 = the mode's),
steps (0 = the mode's). Report columns from `describe`: rf (theoretical, input pixels), context_rf
(the context module's own, in front-end pixels), params, gflops, train_mb; `evaluate_breakdown` adds
the measured effective receptive field of the trained model (`erf/width50`, `erf/width90`: widths of
the centred squares holding 50% / 90% of it, input px) and saves it as `erf.png` in each run's workdir.
"""

from __future__ import annotations

import ml_collections

from dense_jax.ops import receptive_field
from experiments.ablation_common import model_columns, set_training
from experiments.configs_common import parse_arg

SCHEDULES = {
    "exponential": (1, 1, 2, 4, 8, 16, 1),
    "constant": (1, 1, 1, 1, 1, 1, 1),
    "gridding_2": (2, 2, 2),
    "gridding_4": (4, 4, 4),
    "hybrid": (1, 2, 5, 1, 2, 5),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, schedule="exponential", width=0, steps=0)
  if arg.schedule not in SCHEDULES:
    raise ValueError(f"config argument 'schedule': expected one of {sorted(SCHEDULES)}, got {arg.schedule!r}")
  quick = arg.quick
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mesh_shape = (-1, 1)
  config.dataset = ml_collections.ConfigDict(dict(
      name="dense_shapes/context_64", image_size=None, data_dir=None, train_split="train",
      eval_split="validation", augment=True))
  config.model = ml_collections.ConfigDict(dict(
      name="context_ablation", width=arg.width or (16 if quick else 64), frontend_layers=2,
      frontend_stride=1, dilations=SCHEDULES[arg.schedule], init_noise=1e-3))

  # Full-resolution maps make this the slowest quick model (~0.2 s per step of 8 images on 2 shared
  # cores), hence the smaller batch.
  set_training(config, quick=quick, steps=arg.steps, quick_steps=500, quick_batch=8,
               full_batch=64, quick_checkpoint_every=250)
  # Read by experiments/evaluate_breakdown.py: "small" objects have fewer than 500 visible pixels
  # (the median object of context_64's validation split has 528); a small object's centre is nearer
  # to its surroundings, so it needs less context than a large one's.
  config.experiment = ml_collections.ConfigDict(dict(band_radius=2, small_area=500, erf_batch=8))
  return config


def sweep(add, arg=None):
  """One run per dilation schedule."""
  del arg
  for name, dilations in SCHEDULES.items():
    add(name=name, **{"model.dilations": dilations})


def describe(config) -> dict:
  dilations = tuple(int(d) for d in config.model.dilations)
  context_rf = receptive_field([(3, 1, d) for d in dilations])[-1].size
  return {"schedule": ",".join(map(str, dilations)), "context_rf": context_rf, **model_columns(config)}
