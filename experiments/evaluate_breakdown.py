"""After a sweep: mIoU near boundaries and by object size, and the effective receptive field, per run.

    python -m experiments.evaluate_breakdown runs/dilation            # every finished run of a sweep
    python -m experiments.evaluate_breakdown runs/dilation/os8        # one run
    python -m experiments.report runs/dilation                        # then the report shows them

The trainer reports the whole-image numbers (`val/miou`); the breakdowns need the instance masks and the
label map's boundaries, so they are computed here, after training, from each run's newest checkpoint
(restored read-only with `dense_jax.tools.restore`), on the same evaluation split, by the same
evaluation loop (`dense_jax.evaluation`) with the semantic task's `breakdown` option (so the mIoU it
computes on the way is the trainer's `val/miou`):

  val/band/{miou,accuracy,fraction}       pixels within `band_radius` px of a label boundary
  val/interior/{miou,accuracy,fraction}   the other valid pixels
  val/small/..., val/large/...            pixels of objects with visible area < / >= `small_area` px
                                          (datasets with instance masks only)
  erf/width50, erf/width90                effective receptive field of the trained model (centre output
                                          pixel, noise inputs): width of the centred square holding 50% /
                                          90% of it, input px; erf/width50_init, erf/width90_init: at init

(definitions in `dense_jax.metrics.breakdown` and `dense_jax.tools.receptive_field`). The numbers are
appended to the run's `metrics.jsonl` as one record at the checkpoint's step, so `experiments.report`
(which takes each key's last value) shows them as columns; `erf.png` and `erf_init.png` are saved in the
run's workdir. `band_radius`, `small_area` and `erf_batch` come from the run's `config.experiment`
(flags override them). A run already evaluated at its newest step (`breakdown.json`) is skipped;
`--force` evaluates it again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

from dense_jax import paths
from dense_jax.train.workdir import CONFIG_FILE

BREAKDOWN_RECORD = "breakdown.json"
METRICS_FILE = "metrics.jsonl"
RUN_RECORD = "sweep_run.json"
DEFAULTS = dict(band_radius=2, small_area=100, erf_batch=8)


def _settings(config, overrides: dict) -> dict:
  experiment = config.get("experiment") or {}
  out = {k: experiment.get(k, v) for k, v in DEFAULTS.items()}
  out.update({k: v for k, v in overrides.items() if v is not None})
  return out


REGIONS = ("band", "interior", "small", "large")


def breakdown_metrics_for_run(config, model, variables, settings: dict) -> tuple[dict, int]:
  """Every metric of the config's tasks over its evaluation split, the semantic task reporting the
  breakdown regions too (`dense_jax.tasks.semantic`, `breakdown=`), through the one evaluation loop
  (`dense_jax.evaluation`); and the example count. Keys as the trainer's, without `val/`."""
  # pylint: disable=g-import-not-at-top
  from dense_jax import data as data_lib, evaluation, tasks as tasks_lib
  from dense_jax.tools import restore
  from dense_jax.train import config as config_lib
  config = config_lib.resolve(config)
  _, info, image_size = restore.build_model(config)
  blocks = config.tasks.to_dict()
  semantic = next((name for name, block in blocks.items() if block.get("task", name) == "semantic"), None)
  if semantic is None:
    raise ValueError(f"config.tasks: expected a semantic task (the breakdown regions are of semantic labels), "
                     f"got {sorted(blocks)}")
  blocks[semantic]["breakdown"] = {"band_radius": int(settings["band_radius"]),
                                   "small_area": settings["small_area"]}
  tasks = tasks_lib.build_tasks(blocks, info)
  step = jax.jit(evaluation.make_eval_step(model, tasks))
  it = data_lib.create_iterator(config.dataset.name, config.dataset.eval_split,
                                global_batch_size=config.eval_batch_size, seed=config.seed, train=False,
                                image_size=image_size, data_dir=config.dataset.data_dir,
                                keys=tasks_lib.build.batch_keys(tasks), process_index=0, process_count=1)
  try:
    accs, examples = evaluation.run(step, variables, it, tasks, max_batches=config.eval_max_batches,
                                    to_device=lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  finally:
    it.close()
  return evaluation.results(tasks, accs), examples


def erf_columns(config, model, variables, init_variables, image_size, workdir: paths.Path, batch: int
                ) -> dict:
  """ERF widths of the trained and the initial model; saves erf.png and erf_init.png in `workdir`."""
  from dense_jax.tools import receptive_field as rf_lib  # pylint: disable=g-import-not-at-top
  rf, _ = rf_lib.final_receptive_field(rf_lib.layer_table(model, (1, *image_size, 3)))
  images = rf_lib.noise_images((batch, *image_size, 3), seed=config.seed)
  out = {}
  for suffix, v in (("", variables), ("_init", init_variables)):
    erf = rf_lib.erf_map(model, v, images)
    out[f"erf/width50{suffix}"] = rf_lib.erf_width(erf, 0.5)
    out[f"erf/width90{suffix}"] = rf_lib.erf_width(erf, 0.9)
    label = "trained" if not suffix else "at initialisation"
    rf_lib.plot_erf(erf, workdir / f"erf{suffix}.png", rf=rf, title=f"{workdir.name} ({label})")
  return out


def load_experiment(workdir: paths.Path, experiment: str | None = None):
  """Imports the run's experiment file (`experiment`, else the one its `sweep_run.json` names), as the
  trainer did: a file may register what the run needs (a dataset generated on the fly, a model)."""
  if experiment is None:
    record = workdir / RUN_RECORD
    if not record.exists():
      return None
    experiment = json.loads(record.read_text()).get("config", "").partition(":")[0]
    if not experiment or not os.path.isfile(experiment):   # a local experiment file
      return None
  from experiments import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  return sweep_lib.load_module(experiment)


def evaluate_run(workdir, *, force: bool = False, experiment: str | None = None,
                 **overrides) -> dict | None:
  """Evaluates one run (see the module docstring); returns the record written, or None if skipped."""
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  workdir = paths.as_path(workdir)   # local or gs://
  config = restore.load_run_config(workdir)
  settings = _settings(config, overrides)
  step = restore.latest_step(workdir)
  if step is None:
    raise ValueError(f"workdir: {workdir} has no checkpoint to evaluate")
  marker = workdir / BREAKDOWN_RECORD
  if not force and marker.exists():
    done = json.loads(marker.read_text())
    if done.get("step") == step and done.get("settings") == settings:
      print(f"[breakdown] {workdir.name}: step {step} already evaluated, skipped")
      return None
  start = time.time()
  load_experiment(workdir, experiment)
  model, _, image_size = restore.build_model(config)
  step, variables = restore.restore_variables(config, workdir, step)
  everything, examples = breakdown_metrics_for_run(config, model, variables, settings)
  metrics = {f"val/{k}": v for k, v in everything.items() if k.split("/")[0] in REGIONS}
  metrics.update(erf_columns(config, model, variables, restore.init_variables(config, model, image_size),
                             image_size, workdir, int(settings["erf_batch"])))
  record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
  metrics_path = workdir / METRICS_FILE
  if paths.is_remote(workdir):   # object stores have no append: rewrite the file whole
    old = metrics_path.read_text() if metrics_path.exists() else ""
    metrics_path.write_text(old + ("" if not old or old.endswith("\n") else "\n") + json.dumps(record) + "\n")
  else:
    with metrics_path.open("a") as f:
      f.write(json.dumps(record) + "\n")
  marker.write_text(json.dumps({"step": step, "settings": settings, "examples": examples,
                                "seconds": round(time.time() - start, 1)}, indent=1))
  print(f"[breakdown] {workdir.name}: step {step}, {examples} examples, band mIoU "
        f"{record.get('val/band/miou', float('nan')):.4f}, interior mIoU "
        f"{record.get('val/interior/miou', float('nan')):.4f}, ERF90 {record['erf/width90']} px "
        f"({time.time() - start:.0f}s)", flush=True)
  return record


def run_dirs(root) -> list[paths.Path]:
  """`root` itself if it is a run (has config.json), else its finished sweep runs."""
  root = paths.as_path(root)
  if (root / CONFIG_FILE).exists():
    return [root]
  dirs = []
  for record in sorted(root.glob(f"*/{RUN_RECORD}")):
    status = json.loads(record.read_text()).get("status")
    if status == "done":
      dirs.append(record.parent)
    else:
      print(f"[breakdown] {record.parent.name}: status {status!r}, not evaluated")
  return dirs


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", type=paths.as_path, help="a sweep root or one run's workdir")
  parser.add_argument("--band_radius", type=int, default=None)
  parser.add_argument("--small_area", type=int, default=None)
  parser.add_argument("--erf_batch", type=int, default=None)
  parser.add_argument("--force", action="store_true", help="evaluate again runs already evaluated")
  parser.add_argument("--experiment", default=None,
                      help="the runs' experiment file (default: the one each run's sweep_run.json names)")
  args = parser.parse_args(argv)
  dirs = run_dirs(args.root)
  if not dirs:
    raise SystemExit(f"root: expected a run directory or a sweep root with finished runs, got {args.root}")
  for workdir in dirs:
    evaluate_run(workdir, force=args.force, experiment=args.experiment, band_radius=args.band_radius,
                 small_area=args.small_area, erf_batch=args.erf_batch)
  return 0


if __name__ == "__main__":
  sys.exit(main())
