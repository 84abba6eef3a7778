"""Shared helpers of the real-dataset sources: where the files live, the missing-file error, decoding.

Every real dataset reads its files from a *manual directory*: the `data_dir` argument of the factory,
else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>`. Nothing is ever downloaded.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from dense_jax import paths

DATA_DIR_ENV = "DENSE_JAX_DATA_DIR"
DEFAULT_ROOT = "~/dense_jax_data"


class MissingDataError(FileNotFoundError):
  """A dataset file or folder is not where the loader looks for it."""


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> paths.Path:
  """`data_dir` if given, else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>`."""
  if data_dir is not None:
    return paths.as_path(data_dir, "config.dataset.data_dir")
  root = os.environ.get(DATA_DIR_ENV) or DEFAULT_ROOT
  return paths.as_path(root) / name


def require(path: paths.Path, what: str, dataset: str, module: str) -> paths.Path:
  """Returns `path`, or raises MissingDataError naming the path, what belongs there and where to read more."""
  if not paths.check_readable(path, "config.dataset.data_dir"):   # remote: errors name the key
    raise MissingDataError(
        f"{dataset}: missing {path}. Put there: {what}. Where to get the files and the expected layout: "
        f"the docstring of {module}. To read them from elsewhere pass data_dir=... or set ${DATA_DIR_ENV} "
        f"(default {DEFAULT_ROOT}/<dataset>).")
  return path


class UnreadableFileError(ValueError):
  """A dataset file exists but cannot be decoded (truncated by an interrupted download or copy, or
  damaged); the message names the file. The input pipeline adds the dataset, split and example."""


# What PIL raises for a truncated or damaged file: OSError ("image file is truncated", "broken data
# stream", UnidentifiedImageError), SyntaxError ("broken PNG file"), EOFError, ValueError.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError)


def _describe(source) -> str:
  return f"{len(source)} bytes of image data" if isinstance(source, bytes) else str(source)


def _open_image(source: str | os.PathLike | bytes) -> Image.Image:
  """PIL's image of bytes or of a file on any filesystem (read whole: PIL decodes lazily)."""
  if isinstance(source, bytes):
    return Image.open(io.BytesIO(source))
  return Image.open(io.BytesIO(paths.as_path(source).read_bytes()))


def read_rgb(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes an image file (path or bytes) to uint8 (H, W, 3) RGB; grey, CMYK and RGBA are converted.
  Raises UnreadableFileError naming the file if it cannot be decoded completely."""
  try:
    with _open_image(source) as im:
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except FileNotFoundError:
    raise
  except _DECODE_ERRORS as e:
    raise UnreadableFileError(f"cannot decode {_describe(source)} ({type(e).__name__}: {e})") from e


def read_label_png(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes a label PNG to its raw (H, W) values: palette indices for 'P' images, grey levels for 'L'.
  Raises UnreadableFileError naming the file if it cannot be decoded completely."""
  try:
    with _open_image(source) as im:
      mode = im.mode
      if mode in ("P", "L", "I", "I;16"):
        return np.asarray(im)
  except FileNotFoundError:
    raise
  except _DECODE_ERRORS as e:
    raise UnreadableFileError(f"cannot decode {_describe(source)} ({type(e).__name__}: {e})") from e
  raise ValueError(f"label image {_describe(source)}: expected a single-channel PNG (mode P/L/I), got mode "
                   f"{mode!r}")


def lookup_table(mapping: dict[int, int], size: int = 256, default: int = 255) -> np.ndarray:
  """An int32 table `t` with t[k] = mapping[k] and `default` elsewhere, for vectorized relabelling."""
  table = np.full((size,), default, dtype=np.int32)
  for k, v in mapping.items():
    table[k] = v
  return table
