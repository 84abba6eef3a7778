"""What a run writes and prints: metrics.jsonl, TensorBoard events, prediction PNGs, the progress line.

Only process 0 writes (the others get `Reporter(enabled=False)`, whose methods do nothing).

- `metrics.jsonl`: one JSON object per logged step, `{"step": s, <metric>: value, ...}`; train metrics
  and evaluation metrics of the same step share one line. On resume from step s, lines with a larger
  step (written after the checkpoint the run resumes from) are dropped, so the file reads as if the
  run had never stopped.
- `tensorboard/`: the same scalars and the figures as TensorBoard events, written with TensorFlow's
  own `tf.summary.write` and the scalars/images plugin metadata (tensorflow-cpu ships without the
  `tensorboard` package that `tf.summary.scalar` needs; the files are the same). Skipped with a note if
  TensorFlow is missing.
- `figures/val_step_<step>.png`: rows of (image | each task's ground truth | prediction), drawn by the
  tasks with `dense_jax.viz` (semantic: class colours, ignore pixels black).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

from dense_jax import paths, viz

METRICS_FILE = "metrics.jsonl"

# The drawing lives in dense_jax.viz (one palette for every figure); re-exported for existing callers.
palette = viz.palette
prediction_grid = viz.prediction_grid


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Reporter:
  """Writes the workdir's logs (process 0) and shows progress: tqdm on a terminal, lines otherwise."""

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool, total_steps: int, start_step: int,
               tensorboard: bool = True):
    self.workdir = paths.as_path(workdir)
    self._lines: list[str] = []   # metrics.jsonl so far, rewritten whole where a filesystem cannot append
    self.enabled = enabled
    self.total_steps = total_steps
    self._pending: dict[int, dict] = {}
    self._tb = None
    self._bar = None
    if not enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._truncate(start_step)
    if tensorboard:
      try:
        # pylint: disable=g-import-not-at-top
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2
        self._tf = tf
        self._tb = tf.summary.create_file_writer(str(self.workdir / "tensorboard"))
        self._meta = {name: summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name)) for name in ("scalars", "images")}
      except ImportError:
        print("note: tensorflow is not installed; no TensorBoard events are written", flush=True)
      except Exception as e:  # pylint: disable=broad-except  # tf.errors.UnimplementedError: s3://, az://, ...
        self._tb = None
        print(f"note: TensorBoard cannot write to {self.workdir / 'tensorboard'} ({type(e).__name__}: "
              f"{str(e).strip().splitlines()[0][-200:] if str(e).strip() else ''}); no TensorBoard events "
              f"are written (metrics.jsonl and the figures are)", flush=True)
    if sys.stdout.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       smoothing=0.1)

  def _truncate(self, start_step: int) -> None:
    """Drops records past `start_step` (written after the checkpoint we resume from)."""
    path = self.workdir / METRICS_FILE
    if not path.exists():
      return
    kept = []
    for line in path.read_text().splitlines():
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      if record.get("step", math.inf) <= start_step:
        kept.append(line)
    path.write_text("".join(k + "\n" for k in kept))
    self._lines = kept

  def write(self, step: int, metrics: dict) -> None:
    """Records `metrics` for `step` (merged with other metrics of the same step) and flushes it."""
    if not self.enabled:
      return
    record = {"step": int(step)}
    record.update({k: (float(v) if isinstance(v, (np.floating, np.integer, float, int)) and not isinstance(v, bool)
                       else v) for k, v in metrics.items()})
    self._lines.append(json.dumps(record))
    if paths.is_remote(self.workdir):   # object stores (gs://, s3://) have no append
      (self.workdir / METRICS_FILE).write_text("".join(line + "\n" for line in self._lines))
    else:
      with (self.workdir / METRICS_FILE).open("a") as f:
        f.write(self._lines[-1] + "\n")
    if self._tb is not None:
      with self._tb.as_default(step=int(step)):
        for key, value in metrics.items():
          if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            self._tf.summary.write(key, self._tf.constant(float(value), self._tf.float32),
                                   metadata=self._meta["scalars"])
      self._tb.flush()

  def figure(self, step: int, grid: np.ndarray) -> paths.Path | None:
    if not self.enabled:
      return None
    from PIL import Image  # pylint: disable=g-import-not-at-top
    out = self.workdir / "figures" / f"val_step_{step:06d}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
      Image.fromarray(grid).save(f, format="PNG")
    if self._tb is not None:
      # The images plugin's tensor: [width, height, encoded image...] as strings.
      tensor = self._tf.constant([str(grid.shape[1]).encode(), str(grid.shape[0]).encode(), out.read_bytes()])
      with self._tb.as_default(step=int(step)):
        self._tf.summary.write("val/predictions", tensor, metadata=self._meta["images"])
      self._tb.flush()
    return out

  def progress(self, step: int, loss: float, steps_per_sec: float) -> None:
    """Advances the bar (terminal) or prints a line (otherwise) with loss, steps/s and ETA."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
      return
    eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else math.inf
    print(f"step {step}/{self.total_steps}  loss {loss:.4f}  {steps_per_sec:.2f} steps/s  "
          f"ETA {_format_duration(eta)}", flush=True)

  def message(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()


class Timer:
  """Steps per second over the last interval, not counting time spent in `pause()` blocks."""

  def __init__(self):
    self._t = time.perf_counter()
    self._paused = 0.0

  def pause_start(self):
    self._pause_t = time.perf_counter()

  def pause_end(self):
    self._paused += time.perf_counter() - self._pause_t

  def rate(self, steps: int) -> float:
    now = time.perf_counter()
    elapsed = now - self._t - self._paused
    self._t, self._paused = now, 0.0
    return steps / elapsed if elapsed > 0 else 0.0
