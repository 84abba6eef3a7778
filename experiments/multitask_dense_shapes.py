"""Multi-task study on `dense_shapes` (UberNet, Kokkinos CVPR 2017): one network for semantic labels,
depth, surface normals and colorization, trained on full labels or on partial labels.

The model is the UberNet-style `multitask` net (`dense_jax.models.multitask`: one VGG16 trunk,
per-task skip layers with batch norm from conv1..conv5, an image pyramid with tied weights). Every run
of the study feeds the trunk the grey image (`gray_input=True`), also the single-task runs: with
colorization among the tasks the network must not see colour, and the comparison is only fair when
all runs see the same input.

Quick (minutes on a 2-core CPU; the narrow net, 64×64 scenes):

    python -m dense_jax.train --config experiments/multitask_dense_shapes.py:quick \
        --workdir /tmp/dense_jax_multitask                                  # all four tasks
    python -m dense_jax.train --config experiments/multitask_dense_shapes.py:quick,partial \
        --workdir /tmp/dense_jax_multitask_partial                          # one label per example
    python -m dense_jax.train --config experiments/multitask_dense_shapes.py:quick,tasks=depth \
        --workdir /tmp/dense_jax_multitask_depth                            # one task alone

The study (each task alone, all together, all together with partial labels; measured 2026-11-30 with
two seeds, docs/results.md section 4: all four together Δ_MTL −4.8% / +1.1% against each task alone, about
half the training time of four networks; partial labels −14.0% / −8.8%):

    python -m experiments.sweep experiments/multitask_dense_shapes.py --root runs/multitask_study
    python -m experiments.multitask_report runs/multitask_study --plot docs/results/multitask_study.png

Partial labels: `partial` trains on `<dataset>+one_label` (`dense_jax.data.partial_labels`), where each
training example keeps only one randomly chosen label type (semantic, depth, normals or colour, fixed
per example); the losses are masked per task and per example and normalised by the examples that have
the label. Evaluation is always on the full labels of the validation split.

Reported (prefixed `val/`): `miou` (semantic), `depth/abs_rel, rmse, delta1, ...`, `normals/mean,
median, within_*`, `colorization/auc, auc_rebalanced`. Δ_MTL compares each multi-task
run with the single-task runs: (1/T) Σ_i (−1)^{l_i} (M_mtl,i − M_single,i) / M_single,i with l_i = 1
where lower is better (`delta_mtl` below; `PRIMARY_METRICS` are the M_i).

Arguments (`:quick,tasks=semantic+depth,partial`): quick, tasks ('+'-separated subset of semantic,
depth, normals, colorization, boundaries; the last is not in the default set), partial (one label type
per training example), steps (0 = the mode's default), seed (0; parameters and data order — each
example's kept label type is fixed by the dataset, not the seed: a second seed of the whole study is
`python -m experiments.sweep experiments/multitask_dense_shapes.py:seed=1 --root runs/multitask_study_seed1`).
Task weights: `--config.tasks.depth.weight=0.5`.
"""

from __future__ import annotations

import ml_collections

from dense_jax.train.config import default_config
from experiments.configs_common import parse_arg, set_dense_shapes_training
from experiments.depth_normals_dense_shapes import parse_tasks

TASKS = ("semantic", "depth", "normals", "colorization")   # the study's tasks (the default)
ALLOWED_TASKS = TASKS + ("boundaries",)                   # semantic boundaries (from the label map) on request
# The metric of each task in Δ_MTL and whether lower is better (l_i = 1).
PRIMARY_METRICS = {"semantic": ("val/miou", False), "depth": ("val/depth/abs_rel", True),
                   "normals": ("val/normals/mean", True), "colorization": ("val/colorization/auc", False),
                   "boundaries": ("val/boundaries/f1", False)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, quick=False, tasks="+".join(TASKS), partial=False, steps=0, seed=0)
  tasks = parse_tasks(arg.tasks, ALLOWED_TASKS)
  config = default_config()
  config.seed = arg.seed
  config.mesh_shape = (-1, 1)
  # One CPU device: with two, XLA:CPU's collective rendezvous of this model's batch-norm all-reduces
  # (inside the rematerialised trunk) deadlocked on the loaded 2-core machine (threads waiting at
  # different all-reduces, then a 40 s termination) — seen once, not yet understood.
  config.cpu_devices = 1

  dataset = "dense_shapes/small_64" if arg.quick else "dense_shapes/medium_128"
  config.dataset.name = dataset + ("+one_label" if arg.partial else "")
  config.model = ml_collections.ConfigDict(dict(
      name="multitask_narrow" if arg.quick else "multitask", tasks=tasks, gray_input=True))
  config.tasks = {t: {"weight": 1.0} for t in tasks}
  if "colorization" in tasks:
    # The rebalancing prior from the base dataset's training split (the same images with any labels).
    config.tasks.colorization.prior_examples = 256 if arg.quick else 2000

  set_dense_shapes_training(config, quick=arg.quick, steps=arg.steps)
  config.experiment = {"tasks": list(tasks), "partial_labels": bool(arg.partial)}
  return config


def delta_mtl(multi: dict, single: dict[str, dict], tasks=TASKS) -> float:
  """Δ_MTL of a multi-task run's final metrics `multi` against each task's single-task run's
  (`single[task]`): the mean over tasks of ±(M_mtl − M_single) / M_single, + where higher is better."""
  terms = []
  for t in tasks:
    key, lower_better = PRIMARY_METRICS[t]
    m, s = float(multi[key]), float(single[t][key])
    terms.append((-1.0 if lower_better else 1.0) * (m - s) / s)
  return sum(terms) / len(terms)


def sweep(add, arg=None):
  """Each task alone, all four together, all four with one label type per training example (quick mode;
  the file's `seed=N` argument, if given, goes to every run)."""
  seed = parse_arg(arg, seed=0).seed
  suffix = f",seed={seed}" if seed else ""
  for t in TASKS:
    add(name=f"single_{t}", arg=f"quick,tasks={t}{suffix}")
  add(name="all", arg=f"quick{suffix}")
  add(name="all_partial", arg=f"quick,partial{suffix}")
