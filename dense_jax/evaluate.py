"""Evaluate a trained run: mIoU, per-class IoU and pixel accuracy over a whole split, in an inference mode.

    python -m dense_jax.evaluate --config experiments/unet_dense_shapes.py:quick --workdir runs/unet_quick
    python -m dense_jax.evaluate --workdir runs/unet_quick --mode sliding --image_size 96   # config from the run
    python -m dense_jax.evaluate --workdir runs/unet_quick --mode multiscale --scales 0.75,1,1.25 --split train

    from dense_jax.evaluate import evaluate
    result = evaluate(config, workdir, mode="sliding")      # the same, as a function returning a dict

What it does:
1. restores the newest checkpoint of `<workdir>/checkpoints` read-only (`dense_jax.tools.restore`, which
   rebuilds the trainer's `TrainState` from the config; nothing in the workdir is moved or deleted; a
   damaged newest checkpoint is skipped with one warning and the previous one used, as training does);
   `--config` defaults to the run's own `config.json` — pass the experiment file when it registers
   something the run needs (a dataset generated on the fly, a model);
2. runs the model over every example of the split (the input pipeline in evaluation mode: in order,
   no augmentation, resized to fit `image_size` keeping the aspect ratio and padded with the ignore
   label; padding examples of the last batch count for nothing) with the chosen `dense_jax.inference`
   mode — 'whole' (one call per image), 'sliding' (tiles of the training crop, overlap 1/3, Hann
   blending), 'multiscale' (scales × horizontal flip, mean softmax; each scale predicted whole, or in
   tiles with `multiscale_base='sliding'`);
3. accumulates every task of the run's `config.tasks` through the one evaluation loop
   (`dense_jax.evaluation`, the trainer's): for semantic segmentation one global confusion matrix
   (`dense_jax.metrics.segmentation`, pixels labelled with the dataset's ignore label left out), reported
   as mIoU (mean over classes present in labels or predictions), per-class IoU, pixel accuracy and mean
   class accuracy; multi-scale predictions are merged by each task (`Task.merge`, `Task.unflip`);
4. prints a table and writes `<workdir>/eval_<split>_<mode>.json` (every task's numbers under `metrics`,
   the semantic view at the top level: the confusion matrix, per-class IoU; the settings; NaN written as
   null), `<workdir>/eval_<split>_<mode>_confusion.png` (row-normalised) and, with `num_figures`,
   `<workdir>/eval_<split>_<mode>_examples.png` (each task's truth and prediction, `dense_jax.viz`).

Evaluation at the training size in mode 'whole' computes what the trainer's `val/miou` computes at that
step. `image_size` evaluates at another size (e.g. larger than the training crop, for 'sliding').
Models that need a size multiple (output stride, poolings) get their images padded to the smallest power
of two that the model takes (found with `jax.eval_shape`, or set `pad_to_multiple`). Models whose output
is smaller than their input (the valid-convolution U-Net) are evaluated in mode 'whole' only, on the
centre of the label map, as the trainer does. One process, the first device: this is a tool for after
training (a multi-host run's checkpoint restores onto one device).
"""

from __future__ import annotations

import json
import math
import time
from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import paths
from dense_jax import inference

MODES = ("whole", "sliding", "multiscale")
DEFAULT_SCALES = (0.75, 1.0, 1.25)


def result_paths(workdir: str | paths.Path, split: str, mode: str) -> tuple[paths.Path, paths.Path]:
  """`(json, png)` paths an evaluation of `split` in `mode` writes into `workdir`."""
  stem = paths.as_path(workdir) / f"eval_{split}_{mode}"
  return stem.with_suffix(".json"), stem.parent / f"{stem.name}_confusion.png"


def _check_workdir(workdir: paths.Path, step: int | None) -> int:
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  steps_dir = workdir / restore.CHECKPOINTS
  latest = restore.latest_step(workdir)
  if latest is None:
    raise ValueError(f"workdir: no checkpoint to evaluate in {steps_dir}; train first: python -m "
                     f"dense_jax.train --config experiments/<name>.py --workdir {workdir}")
  if step is not None and not (steps_dir / str(step)).is_dir():
    raise ValueError(f"step: expected one of the saved steps in {steps_dir}, got {step}")
  return latest if step is None else step


def _as_size(value, name: str) -> tuple[int, int]:
  from dense_jax.checks import as_pair  # pylint: disable=g-import-not-at-top
  return as_pair(tuple(value) if isinstance(value, list) else value, name)


def _predictor(mode: str, *, tile, stride, overlap, window, margin, tile_batch, scales, flip,
               multiscale_base, pad_to_multiple):
  """`(apply_fn, images, task) -> scores` of `mode` with its settings (static: closed over); multi-scale
  predictions are merged by the task (`Task.merge`, `Task.unflip`)."""
  sliding = dict(tile=tile, stride=stride, overlap=overlap, window=window, margin=margin, tile_batch=tile_batch)

  def predict(apply_fn, images, task):
    if mode == "whole":
      return inference.predict_whole(apply_fn, images, pad_to_multiple=pad_to_multiple)
    if mode == "sliding":
      return inference.predict_sliding(apply_fn, images, pad_to_multiple=pad_to_multiple, **sliding)
    extra = sliding if multiscale_base == "sliding" else {}
    return inference.predict_multiscale(apply_fn, images, scales=scales, flip=flip, mode=multiscale_base,
                                        pad_to_multiple=pad_to_multiple, merge=task.merge,
                                        unflip=task.unflip, **extra)

  return predict


def _fed_sizes(mode, size, tile, scales, multiscale_base) -> list[tuple[int, int]]:
  """The image sizes the model is called on in `mode` (before padding to a multiple)."""
  clip = lambda hw: (min(tile[0], hw[0]), min(tile[1], hw[1]))
  if mode == "whole":
    return [size]
  if mode == "sliding":
    return [clip(size)]
  scaled = [inference.scaled_size(size, s) for s in scales]
  return scaled if multiscale_base == "whole" else [clip(hw) for hw in scaled]


def _nan_to_none(value):
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, dict):
    return {k: _nan_to_none(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_nan_to_none(v) for v in value]
  return value


def _semantic_task(tasks: dict):
  """The first semantic-segmentation task of `tasks` (the one the per-class table shows), or None."""
  from dense_jax.tasks.semantic import SemanticTask  # pylint: disable=g-import-not-at-top
  return next((t for t in tasks.values() if isinstance(t, SemanticTask)), None)


def _semantic_keys(task) -> set:
  prefix = "" if task.name == "semantic" else f"{task.name}/"
  return {f"{prefix}{k}" for k in ("miou", "pixel_accuracy", "mean_accuracy")} | {
      f"{prefix}iou/{n}" for n in task.class_names}


def format_table(result: dict) -> str:
  """The per-class table and the summary line of an `evaluate` result."""
  names = result["class_names"]
  c = np.asarray(result["confusion_matrix"], np.float64)
  support = c.sum(1)
  total = max(c.sum(), 1.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = np.diag(c) / support
  width = max(12, max(len(n) for n in names) + 2)
  lines = [f"{'class':<{width}}{'IoU':>8}{'accuracy':>10}{'share':>9}"]
  for i, name in enumerate(names):
    iou = result["per_class_iou"][name]
    fmt = lambda v: "     n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:8.4f}"
    lines.append(f"{name:<{width}}{fmt(iou)}  {fmt(float(recall[i]))}{100 * support[i] / total:8.2f}%")
  lines.append(f"mIoU {result['miou']:.4f}   pixel accuracy {result['pixel_accuracy']:.4f}   "
               f"mean accuracy {result['mean_accuracy']:.4f}")
  return "\n".join(lines)


def evaluate(config=None, workdir: str | paths.Path = ".", *, mode: str = "whole", split: str | None = None,
             step: int | None = None, image_size=None, batch_size: int | None = None,
             max_batches: int | None = None, tile=None, stride=None, overlap=None, window: str = "hann",
             margin=0, tile_batch: int | None = None, scales: Sequence[float] = DEFAULT_SCALES,
             flip: bool = True, multiscale_base: str = "whole", pad_to_multiple=None, write: bool = True,
             verbose: bool = True, num_figures: int = 0) -> dict:
  """Evaluates the newest (or `step`'s) checkpoint of `workdir` (see the module docstring).

  Args:
    config: the run's config (ConfigDict), or None for `<workdir>/config.json`.
    workdir: the run's directory.
    mode: 'whole' | 'sliding' | 'multiscale'.
    split: default `config.dataset.eval_split`.
    step: a saved step; default the newest.
    image_size: int or (H, W) the examples are brought to; default the training size.
    batch_size: examples per call; default `config.eval_batch_size`.
    max_batches: stop after this many batches (default: the whole split).
    tile, stride, overlap, window, margin, tile_batch: 'sliding' settings (`inference.predict_sliding`);
      tile defaults to the training size.
    scales, flip, multiscale_base: 'multiscale' settings; base 'whole' or 'sliding'.
    pad_to_multiple: None = the smallest power of two the model takes (see `inference.required_multiple`).
    write: write the JSON and the PNG into `workdir`.
    num_figures: also draw the first n examples of the first batch (image | each task's truth and
      prediction, `dense_jax.viz`) into `<workdir>/eval_<split>_<mode>_examples.png` (with `write`).
    verbose: print the table.

  Returns:
    `{'step', 'split', 'mode', 'image_size', 'examples', 'pixels', 'miou', 'pixel_accuracy',
    'mean_accuracy', 'per_class_iou': {name: IoU}, 'class_names', 'confusion_matrix' (K×K list),
    'settings', 'seconds', 'files'}` (NaN for classes neither present nor predicted).
  """
  # pylint: disable=g-import-not-at-top
  from dense_jax import data as data_lib
  from dense_jax import evaluation
  from dense_jax import tasks as tasks_lib
  from dense_jax.metrics import plots
  from dense_jax.metrics import segmentation as seg_metrics
  from dense_jax.models.build import apply_model
  from dense_jax.checks import check_choice
  from dense_jax.tools import restore
  from dense_jax.train import config as config_lib

  start = time.perf_counter()
  workdir = paths.as_path(workdir)
  check_choice(mode, MODES, "mode")
  check_choice(multiscale_base, inference.MODES, "multiscale_base")
  requested_step = step   # None: the newest checkpoint that reads (a damaged newest one is skipped)
  step = _check_workdir(workdir, step)
  config = config_lib.resolve(restore.load_run_config(workdir) if config is None else config)
  split = split or config.dataset.eval_split
  model, info, train_size = restore.build_model(config)
  if split not in info.splits:
    raise ValueError(f"split: expected one of {list(info.splits)} for {info.name!r}, got {split!r}")
  tasks = tasks_lib.build_tasks(config.tasks, info)
  size = train_size if image_size is None else _as_size(image_size, "image_size")
  tile = train_size if tile is None else _as_size(tile, "tile")
  scales = tuple(scales)
  batch_size = config.eval_batch_size if batch_size is None else batch_size
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")

  from dense_jax.train.checkpoint import CheckpointMismatchError
  try:
    step, variables = restore.restore_variables(config, workdir, requested_step)
  except CheckpointMismatchError as e:   # damaged files are not this: restore_variables skips those
    raise ValueError(f"config: checkpoint step {step} in {workdir / restore.CHECKPOINTS} does not restore "
                     f"into the model/optimizer of this config ({str(e)[:400]}); pass the config the run "
                     f"was trained with (leave --config out to use the run's config.json)") from e

  def apply_fn(variables, images):
    return apply_model(model, variables, images, train=False)

  bound = lambda x: apply_fn(variables, x)
  try:
    outs = jax.eval_shape(bound, jax.ShapeDtypeStruct((1, *size, 3), jnp.float32))
    tasks_lib.check_outputs(tasks, outs, config.model.name)
    # Outputs that are not maps (a dict of detections) are evaluated by one whole-image call.
    structured = [k for k, o in outs.items() if k in tasks and not hasattr(o, "shape")]
    shrunk = {k: tuple(o.shape[1:3]) for k, o in outs.items()
              if k in tasks and k not in structured and tuple(o.shape[1:3]) != size}
  except (ValueError, TypeError, flax.errors.ScopeParamShapeError):   # needs padding or tiles: below
    structured, shrunk = [], {}
  if structured and mode != "whole":
    raise ValueError(f"mode: {config.model.name!r} returns {structured[0]!r} as detections, not a map; only "
                     f"mode='whole' evaluates it, got {mode!r}")
  if shrunk:   # the valid U-Net: evaluated on the centre of the label map, as the trainer does
    if mode != "whole":
      name, hw = next(iter(shrunk.items()))
      raise ValueError(f"mode: {config.model.name!r} returns {hw} {name!r} outputs for {size} images (valid "
                       f"convolutions); only mode='whole' evaluates it, got {mode!r}")
    multiple = None
  elif structured:
    multiple = None
  elif pad_to_multiple is None:
    first = next(iter(tasks))
    try:
      multiple = inference.required_multiple(lambda x: bound(x)[first],
                                             _fed_sizes(mode, size, tile, scales, multiscale_base))
    except inference.FixedInputSizeError as e:
      h, w = e.size
      raise ValueError(
          f"image_size / mode: {config.model.name!r} takes only {train_size[0]}×{train_size[1]} images, "
          f"the size it was trained at (its parameter shapes depend on the input size: {e}); mode "
          f"{mode!r} would feed it {h}×{w}. Evaluate it in mode 'whole' at the training size (leave "
          f"image_size out), or in mode 'sliding' with the default tile {tuple(train_size)} at a larger "
          f"image_size, or 'multiscale' with multiscale_base 'sliding' (scales below 1 are padded to the tile, "
          f"larger ones tiled).") from None
  else:
    multiple = pad_to_multiple
  predict = _predictor(mode, tile=tile, stride=stride, overlap=overlap, window=window, margin=margin,
                       tile_batch=tile_batch, scales=scales, flip=flip, multiscale_base=multiscale_base,
                       pad_to_multiple=multiple)

  def predict_fn(variables, images):
    """`{task: output}` at the input resolution by the chosen mode, one pass per task output."""
    if shrunk or structured:
      return apply_fn(variables, images)
    return {name: predict(lambda x, name=name: apply_fn(variables, x)[name], images, task)
            for name, task in tasks.items()}

  eval_step = jax.jit(evaluation.make_eval_step(model, tasks, predict_fn=predict_fn))
  it = data_lib.create_iterator(config.dataset.name, split, global_batch_size=batch_size, seed=config.seed,
                                train=False, image_size=size, data_dir=config.dataset.data_dir,
                                keys=tasks_lib.build.batch_keys(tasks), process_index=0, process_count=1,
                                num_threads=config.dataset.num_threads)
  try:
    figure = {}

    def draw(i, local, predictions):
      n = min(num_figures, int(np.sum(local["batch_mask"])))
      if i == 0 and n and write:
        from dense_jax import viz  # pylint: disable=g-import-not-at-top
        predictions = jax.tree.map(lambda v: np.asarray(v[:n]), predictions)   # arrays or dicts of them
        figure["grid"] = viz.grid(evaluation.figure_rows(tasks, local["image"], predictions, local, n))

    accs, examples = evaluation.run(eval_step, variables, it, tasks, max_batches=max_batches, on_batch=draw,
                                    to_device=lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  finally:
    it.close()

  metrics = evaluation.results(tasks, accs)
  settings = {"batch_size": batch_size, "max_batches": max_batches, "pad_to_multiple": multiple,
              "dataset": config.dataset.name, "model": config.model.name, "tasks": list(tasks)}
  if mode == "sliding" or (mode == "multiscale" and multiscale_base == "sliding"):
    settings.update(tile=list(tile), stride=stride, overlap=overlap, window=window, margin=margin)
  if mode == "multiscale":
    settings.update(scales=list(scales), flip=flip, base=multiscale_base)
  result = {
      "step": int(step), "split": split, "mode": mode, "image_size": list(size), "examples": examples,
      "metrics": metrics, "settings": settings, "seconds": round(time.perf_counter() - start, 2), "files": {}}
  semantic = _semantic_task(tasks)
  confusion = None
  if semantic is not None:   # the segmentation view: per-class table, confusion matrix
    confusion = np.asarray(accs[semantic.name]["confusion"], np.int64)
    names = list(semantic.class_names)
    seg = seg_metrics.segmentation_metrics(confusion, names)
    result.update({
        "pixels": int(confusion.sum()), "miou": seg["miou"], "pixel_accuracy": seg["pixel_accuracy"],
        "mean_accuracy": seg["mean_accuracy"], "per_class_iou": {n: seg[f"iou/{n}"] for n in names},
        "class_names": names, "confusion_matrix": confusion.tolist()})
  if write:
    json_path, png_path = result_paths(workdir, split, mode)
    result["files"] = {"json": str(json_path)}
    if confusion is not None:
      result["files"]["png"] = str(png_path)
      plots.plot_confusion_matrix(confusion, png_path, class_names=names,
                                  title=f"{config.model.name} · {split} · {mode} · step {step}")
    for name, task in tasks.items():   # the tasks' own result files (e.g. COCO-format results JSON)
      result["files"].update(task.write_outputs(accs[name], json_path.parent, json_path.stem))
    if "grid" in figure:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      examples_path = json_path.parent / f"{json_path.stem}_examples.png"
      with examples_path.open("wb") as f:
        Image.fromarray(figure["grid"]).save(f, format="PNG")
      result["files"]["examples"] = str(examples_path)
    json_path.write_text(json.dumps(_nan_to_none(result), indent=1) + "\n")
  if verbose:
    print(f"{workdir}: step {step}, {split} ({examples} examples at {size[0]}×{size[1]}), mode {mode}")
    if confusion is not None:
      print(format_table(result))
    others = {k: v for k, v in metrics.items() if semantic is None or k not in _semantic_keys(semantic)}
    for key, value in others.items():
      print(f"{key:<40}{value:10.4f}" if isinstance(value, float) else f"{key:<40}{value}")
    if write:
      print(f"Wrote {' and '.join(result['files'].values())}")
  return result


# --------------------------------------------------------------------------------------------------
# Command line (flags are defined only when run as a program, so importing this module defines none).
# --------------------------------------------------------------------------------------------------
def _define_flags():
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from dense_jax.train import cli
  cli.define_config_flag("Experiment file `path.py[:arg]` (default: the run's config.json).")
  flags.DEFINE_string("workdir", None, "The run's directory (with checkpoints/).")
  flags.DEFINE_enum("mode", "whole", list(MODES), "Inference mode.")
  flags.DEFINE_string("split", None, "Dataset split (default config.dataset.eval_split).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default the newest).")
  flags.DEFINE_list("image_size", None, "H[,W] the examples are brought to (default the training size).")
  flags.DEFINE_integer("batch_size", None, "Examples per call (default config.eval_batch_size).")
  flags.DEFINE_integer("max_batches", None, "Stop after this many batches (default the whole split).")
  flags.DEFINE_list("tile", None, "sliding: tile H[,W] (default the training size).")
  flags.DEFINE_list("stride", None, "sliding: stride H[,W] (default from --overlap).")
  flags.DEFINE_float("overlap", None, "sliding: overlap fraction of the tile (default 1/3).")
  flags.DEFINE_enum("window", "hann", list(inference.WINDOWS), "sliding: blending window.")
  flags.DEFINE_integer("margin", 0, "sliding: pixels at inner tile edges with weight 0.")
  flags.DEFINE_integer("tile_batch", None, "sliding: tiles per model call (default all).")
  flags.DEFINE_list("scales", [str(s) for s in DEFAULT_SCALES], "multiscale: resize factors.")
  flags.DEFINE_bool("flip", True, "multiscale: also the horizontal mirror.")
  flags.DEFINE_enum("multiscale_base", "whole", list(inference.MODES), "multiscale: how each scale is predicted.")
  flags.DEFINE_integer("pad_to_multiple", None, "Pad images to this multiple (default: found from the model).")
  flags.DEFINE_integer("num_figures", 0, "Draw this many examples (truth and prediction) into a PNG.")
  flags.mark_flag_as_required("workdir")


def _pair_flag(values):
  if values is None:
    return None
  ints = [int(v) for v in values]
  if len(ints) not in (1, 2):
    raise ValueError(f"expected H or H,W, got {','.join(values)}")
  return ints[0] if len(ints) == 1 else tuple(ints)


def main(argv) -> int:
  # pylint: disable=g-import-not-at-top
  import sys
  from absl import flags
  from absl import logging
  if len(argv) > 1:
    print(f"ERROR: unexpected arguments {argv[1:]} (flags are --name=value; python -m dense_jax.evaluate "
          f"--helpshort lists them)", file=sys.stderr, flush=True)
    return 2
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  f = flags.FLAGS
  try:
    evaluate(f.config, f.workdir, mode=f.mode, split=f.split, step=f.step, image_size=_pair_flag(f.image_size),
             batch_size=f.batch_size, max_batches=f.max_batches, tile=_pair_flag(f.tile),
             stride=_pair_flag(f.stride), overlap=f.overlap, window=f.window, margin=f.margin,
             tile_batch=f.tile_batch, scales=[float(s) for s in f.scales], flip=f.flip,
             multiscale_base=f.multiscale_base, pad_to_multiple=f.pad_to_multiple, num_figures=f.num_figures)
  except (ValueError, FileNotFoundError) as e:   # bad input; FileNotFoundError: a dataset's files are missing
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  import os
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import app
  from dense_jax.train import cli as _cli
  _define_flags()
  app.run(main, flags_parser=lambda argv: _cli.parse_flags(argv, "dense_jax.evaluate"))
