"""Figures of evaluation results: the confusion matrix as a row-normalised heat map (PNG).

`normalize_rows(C)[i, j] = C[i, j] / sum_j C[i, j]`: the fraction of the pixels of true class i that
were predicted as class j (each row sums to one; the diagonal is the per-class recall). A class absent
from the labels has an all-zero row (drawn empty, its name marked "(absent)"), not NaN.

Drawn with matplotlib's object API on an Agg canvas (`matplotlib.figure.Figure`), so it works without
a display and never touches pyplot's global backend or figure list.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from dense_jax import paths


def normalize_rows(confusion) -> np.ndarray:
  """Row-normalised float64 copy of a square `confusion` matrix (rows of zeros stay zero)."""
  c = np.asarray(confusion, np.float64)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f"confusion: expected a square matrix, got shape {c.shape}")
  if np.any(c < 0):
    raise ValueError("confusion: expected non-negative counts, got negative entries")
  support = c.sum(axis=1, keepdims=True)
  return np.divide(c, support, out=np.zeros_like(c), where=support > 0)


def plot_confusion_matrix(confusion, path: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                          title: str = "", annotate: bool | None = None, dpi: int = 110) -> paths.Path:
  """Saves the row-normalised `confusion` (rows = true class, columns = predicted) as a PNG at `path`.

  Args:
    confusion: `(K, K)` counts.
    path: the PNG to write (parent directories are created).
    class_names: K labels for the axes (default the class ids).
    title: drawn above the matrix (the pixel count is appended).
    annotate: write the percentage into each cell; default when K <= 25 (beyond that cells are too small).
    dpi: resolution; the figure grows with K so labels stay legible.
  Returns the path written.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  counts = np.asarray(confusion)
  norm = normalize_rows(counts)
  k = norm.shape[0]
  names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
  if len(names) != k:
    raise ValueError(f"class_names: expected {k} names, got {len(names)}")
  support = counts.sum(axis=1)
  row_names = [n if s > 0 else f"{n} (absent)" for n, s in zip(names, support)]
  annotate = k <= 25 if annotate is None else annotate

  side = min(3.0 + 0.45 * k, 40.0)
  fig = Figure(figsize=(side + 1.2, side))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class (cells: %)")
  ax.set_xticks(range(k), names, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
  ax.set_yticks(range(k), row_names, fontsize=8)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(f"{title + chr(10) if title else ''}row-normalised confusion, {int(counts.sum()):,} pixels",
               fontsize=9)
  if annotate:
    for i in range(k):
      if support[i] == 0:
        continue
      for j in range(k):
        value = norm[i, j]
        if value >= 0.005:
          ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 0.6 else "black")
  fig.tight_layout()
  path = paths.as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, dpi=dpi, format=path.suffix[1:] or "png")
  return path
