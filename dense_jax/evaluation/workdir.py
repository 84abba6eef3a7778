"""Evaluate a trained run's workdir: every task of the run over a whole split, in an inference mode.

    from dense_jax.evaluation.workdir import evaluate          # also `dense_jax.evaluate.evaluate`
    result = evaluate(config, workdir, mode="sliding")         # keyword options build an `EvalSettings`
    result = evaluate(None, workdir, EvalSettings(mode="multiscale", scales=(0.75, 1.0)))

What `evaluate` does:
1. restores the newest (or `settings.step`'s) checkpoint of `<workdir>/checkpoints` read-only
   (`dense_jax.tools.restore`, which rebuilds the trainer's `TrainState` from the config; nothing in the
   workdir is moved or deleted; a damaged newest checkpoint is skipped with one warning and the previous
   one used, as training does); `config=None` takes the run's own `config.json` — pass the experiment's
   config when its file registers something the run needs (a dataset generated on the fly, a model);
2. runs the model over every example of the split (the input pipeline in evaluation mode: in order,
   no augmentation, resized to fit `image_size` keeping the aspect ratio and padded with the ignore
   label; padding examples of the last batch count for nothing) with the chosen `dense_jax.inference`
   mode — 'whole' (one call per image), 'sliding' (tiles of the training crop, overlap 1/3, Hann
   blending), 'multiscale' (scales × horizontal flip, mean softmax; each scale predicted whole, or in
   tiles with `multiscale_base='sliding'`); multi-scale predictions are merged by each task
   (`Task.merge`, `Task.unflip`);
3. accumulates every task of the run's `config.tasks` through the one evaluation loop
   (`dense_jax.evaluation.loop`, the trainer's); for semantic segmentation that is one global confusion
   matrix (`dense_jax.metrics.segmentation`, pixels labelled with the dataset's ignore label left out),
   reported as mIoU (mean over classes present in labels or predictions), per-class IoU, pixel accuracy
   and mean class accuracy;
4. prints the tables (`dense_jax.evaluation.tables`) and writes `<workdir>/eval_<split>_<mode>.json`
   (every task's numbers under `metrics`, the semantic view at the top level: the confusion matrix,
   per-class IoU; the settings; NaN written as null), `<workdir>/eval_<split>_<mode>_confusion.png`
   (row-normalised, `dense_jax.viz.plot_confusion_matrix`), each task's own result files
   (`Task.write_outputs`) and, with `num_figures`, `<workdir>/eval_<split>_<mode>_examples.png` (each
   task's truth and prediction, `dense_jax.viz`).

Evaluation at the training size in mode 'whole' computes what the trainer's `val/miou` computes at that
step. Models that need a size multiple (output stride, poolings) get their images padded to the smallest
power of two that the model takes (found with `jax.eval_shape`, or set `pad_to_multiple`). Models whose
output is smaller than their input (the valid-convolution U-Net) and models returning detections rather
than maps are evaluated in mode 'whole' only; the former on the centre of the label map, as the trainer
does. One process, the first device: a multi-host run's checkpoint restores onto one device.
"""

from __future__ import annotations

import json
import math
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import inference, paths
from dense_jax.evaluation import loop, tables
from dense_jax.evaluation.settings import EvalSettings


def result_paths(workdir: str | paths.Path, split: str, mode: str) -> tuple[paths.Path, paths.Path]:
  """`(json, png)` paths an evaluation of `split` in `mode` writes into `workdir`."""
  stem = paths.as_path(workdir) / f"eval_{split}_{mode}"
  return stem.with_suffix(".json"), stem.parent / f"{stem.name}_confusion.png"


def _check_workdir(workdir: paths.Path, step: int | None) -> int:
  """The step to evaluate: `step`, or the newest saved one; ValueError if there is none or no such step."""
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  steps_dir = workdir / restore.CHECKPOINTS
  latest = restore.latest_step(workdir)
  if latest is None:
    raise ValueError(f"workdir: no checkpoint to evaluate in {steps_dir}; train first: python -m "
                     f"dense_jax.train --config experiments/<name>.py --workdir {workdir}")
  if step is not None and not (steps_dir / str(step)).is_dir():
    raise ValueError(f"step: expected one of the saved steps in {steps_dir}, got {step}")
  return latest if step is None else step


def _predictor(s: EvalSettings, tile: tuple[int, int], pad_to_multiple):
  """`(apply_fn, images, task) -> scores` of mode `s.mode` with its options (static: closed over)."""
  sliding = dict(tile=tile, stride=s.stride, overlap=s.overlap, window=s.window, margin=s.margin,
                 tile_batch=s.tile_batch)

  def predict(apply_fn, images, task):
    if s.mode == "whole":
      return inference.predict_whole(apply_fn, images, pad_to_multiple=pad_to_multiple)
    if s.mode == "sliding":
      return inference.predict_sliding(apply_fn, images, pad_to_multiple=pad_to_multiple, **sliding)
    extra = sliding if s.multiscale_base == "sliding" else {}
    return inference.predict_multiscale(apply_fn, images, scales=s.scales, flip=s.flip, mode=s.multiscale_base,
                                        pad_to_multiple=pad_to_multiple, merge=task.merge,
                                        unflip=task.unflip, **extra)

  return predict


def _fed_sizes(s: EvalSettings, size, tile) -> list[tuple[int, int]]:
  """The image sizes the model is called on in mode `s.mode` (before padding to a multiple)."""
  clip = lambda hw: (min(tile[0], hw[0]), min(tile[1], hw[1]))
  if s.mode == "whole":
    return [size]
  if s.mode == "sliding":
    return [clip(size)]
  scaled = [inference.scaled_size(size, scale) for scale in s.scales]
  return scaled if s.multiscale_base == "whole" else [clip(hw) for hw in scaled]


def _nan_to_none(value):
  """`value` with every NaN float replaced by None (JSON has no NaN), through dicts and lists."""
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
  """The metric keys the per-class table already shows."""
  prefix = "" if task.name == "semantic" else f"{task.name}/"
  return {f"{prefix}{k}" for k in ("miou", "pixel_accuracy", "mean_accuracy")} | {
      f"{prefix}iou/{n}" for n in task.class_names}


def evaluate(config=None, workdir: str | paths.Path = ".", settings: EvalSettings | None = None,
             **options) -> dict:
  """Evaluates the newest (or `settings.step`'s) checkpoint of `workdir` (see the module docstring).

  Args:
    config: the run's config (ConfigDict), or None for `<workdir>/config.json`.
    workdir: the run's directory.
    settings: the evaluation's options (default `EvalSettings()`).
    **options: `EvalSettings` fields replacing those of `settings` (`mode='sliding'`, `write=False`, ...).

  Returns:
    `{'step', 'split', 'mode', 'image_size', 'examples', 'metrics' (every task's), 'settings', 'seconds',
    'files'}`, and with a semantic task its view: `'pixels', 'miou', 'pixel_accuracy', 'mean_accuracy',
    'per_class_iou': {name: IoU}, 'class_names', 'confusion_matrix'` (K×K list; NaN IoU for classes
    neither present nor predicted).
  """
  # pylint: disable=g-import-not-at-top
  from dense_jax import data as data_lib, tasks as tasks_lib, viz
  from dense_jax.metrics import segmentation as seg_metrics
  from dense_jax.models.build import apply_model
  from dense_jax.tools import restore
  from dense_jax.train import config as config_lib
  from dense_jax.train.checkpoint import CheckpointMismatchError

  start = time.perf_counter()
  s = EvalSettings.from_kwargs(settings, **options)
  mode = s.mode
  workdir = paths.as_path(workdir)
  step = _check_workdir(workdir, s.step)   # s.step None: the newest that reads (a damaged one is skipped)
  config = config_lib.resolve(restore.load_run_config(workdir) if config is None else config)
  split = s.split or config.dataset.eval_split
  model, info, train_size = restore.build_model(config)
  if split not in info.splits:
    raise ValueError(f"split: expected one of {list(info.splits)} for {info.name!r}, got {split!r}")
  tasks = tasks_lib.build_tasks(config.tasks, info)
  size = train_size if s.image_size is None else s.image_size
  tile = train_size if s.tile is None else s.tile
  batch_size = config.eval_batch_size if s.batch_size is None else s.batch_size   # both checked already

  try:
    step, variables = restore.restore_variables(config, workdir, s.step)
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
  elif s.pad_to_multiple is None:
    first = next(iter(tasks))
    try:
      multiple = inference.required_multiple(lambda x: bound(x)[first],
                                             _fed_sizes(s, size, tile))
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
    multiple = s.pad_to_multiple
  predict = _predictor(s, tile, multiple)

  def predict_fn(variables, images):
    """`{task: output}` at the input resolution by the chosen mode, one pass per task output."""
    if shrunk or structured:
      return apply_fn(variables, images)
    return {name: predict(lambda x, name=name: apply_fn(variables, x)[name], images, task)
            for name, task in tasks.items()}

  eval_step = jax.jit(loop.make_eval_step(model, tasks, predict_fn=predict_fn))
  it = data_lib.create_iterator(config.dataset.name, split, global_batch_size=batch_size, seed=config.seed,
                                train=False, image_size=size, data_dir=config.dataset.data_dir,
                                keys=tasks_lib.build.batch_keys(tasks), process_index=0, process_count=1,
                                num_threads=config.dataset.num_threads)
  try:
    figure = {}

    def draw(i, local, predictions):
      n = min(s.num_figures, int(np.sum(local["batch_mask"])))
      if i == 0 and n and s.write:
        predictions = jax.tree.map(lambda v: np.asarray(v[:n]), predictions)   # arrays or dicts of them
        figure["grid"] = viz.grid(loop.figure_rows(tasks, local["image"], predictions, local, n))

    accs, examples = loop.run(eval_step, variables, it, tasks, max_batches=s.max_batches, on_batch=draw,
                              to_device=lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  finally:
    it.close()

  metrics = loop.results(tasks, accs)
  recorded = {"batch_size": batch_size, "max_batches": s.max_batches, "pad_to_multiple": multiple,
              "dataset": config.dataset.name, "model": config.model.name, "tasks": list(tasks)}
  if s.tiled:
    recorded.update(tile=list(tile), stride=s.stride, overlap=s.overlap, window=s.window, margin=s.margin)
  if mode == "multiscale":
    recorded.update(scales=list(s.scales), flip=s.flip, base=s.multiscale_base)
  result = {
      "step": int(step), "split": split, "mode": mode, "image_size": list(size), "examples": examples,
      "metrics": metrics, "settings": recorded, "seconds": round(time.perf_counter() - start, 2), "files": {}}
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
  if s.write:
    json_path, png_path = result_paths(workdir, split, mode)
    result["files"] = {"json": str(json_path)}
    if confusion is not None:
      result["files"]["png"] = str(png_path)
      viz.plot_confusion_matrix(confusion, png_path, class_names=names,
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
  if s.verbose:
    print(f"{workdir}: step {step}, {split} ({examples} examples at {size[0]}×{size[1]}), mode {mode}")
    if confusion is not None:
      print(tables.format_table(result))
    others = {k: v for k, v in metrics.items() if semantic is None or k not in _semantic_keys(semantic)}
    if others:
      print(tables.format_metrics(others))
    if s.write:
      print(f"Wrote {' and '.join(result['files'].values())}")
  return result
