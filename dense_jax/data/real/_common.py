"""Shared helpers of the real-dataset sources: where the files live, the missing-file error, decoding.

Every real dataset reads its files from a *manual directory*: the `data_dir` argument of the factory,
else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>`. Nothing is ever downloaded.
"""

from __future__ import annotations

import io
import os
import pathlib

import numpy as np
from PIL import Image

DATA_DIR_ENV = "DENSE_JAX_DATA_DIR"
DEFAULT_ROOT = "~/dense_jax_data"


class MissingDataError(FileNotFoundError):
  """A dataset file or folder is not where the loader looks for it."""


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> pathlib.Path:
  """`data_dir` if given, else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>`."""
  if data_dir is not None:
    return pathlib.Path(data_dir).expanduser()
  root = os.environ.get(DATA_DIR_ENV) or DEFAULT_ROOT
  return pathlib.Path(root).expanduser() / name


def require(path: pathlib.Path, what: str, dataset: str, module: str) -> pathlib.Path:
  """Returns `path`, or raises MissingDataError naming the path, what belongs there and where to read more."""
  if not path.exists():
    raise MissingDataError(
        f"{dataset}: missing {path}. Put there: {what}. Where to get the files and the expected layout: "
        f"the docstring of {module}. To read them from elsewhere pass data_dir=... or set ${DATA_DIR_ENV} "
        f"(default {DEFAULT_ROOT}/<dataset>).")
  return path


def read_rgb(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes an image file (path or bytes) to uint8 (H, W, 3) RGB; grey, CMYK and RGBA are converted."""
  with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_label_png(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes a label PNG to its raw (H, W) values: palette indices for 'P' images, grey levels for 'L'."""
  with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
    if im.mode not in ("P", "L", "I", "I;16"):
      raise ValueError(f"label image: expected a single-channel PNG (mode P/L/I), got mode {im.mode!r}")
    return np.asarray(im)


def lookup_table(mapping: dict[int, int], size: int = 256, default: int = 255) -> np.ndarray:
  """An int32 table `t` with t[k] = mapping[k] and `default` elsewhere, for vectorized relabelling."""
  table = np.full((size,), default, dtype=np.int32)
  for k, v in mapping.items():
    table[k] = v
  return table
