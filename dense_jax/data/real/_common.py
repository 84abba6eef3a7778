"""Shared helpers of the real-dataset sources: where the files live, the missing-file error, decoding,
and the errors of files that cannot be decoded or hold labels that cannot be right (`Files`).

Every real dataset reads its files from a *manual directory*: the `data_dir` argument of the factory,
else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>`. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import io
import json
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
  damaged); the message names the file, and when raised through `Files` also the dataset, the split and
  the example, and what to do (else the input pipeline adds them)."""


class BadLabelError(UnreadableFileError):
  """A dataset file decodes, but what it holds cannot be a label of that dataset: a label map of another
  size than its image, ids outside the dataset's label set, a malformed polygon, RLE or bounding box,
  segment ids the annotation does not list. The message names the dataset, split, file and example,
  what was expected and what was found, and what to do."""


_DAMAGED = "the file is damaged or truncated (an interrupted download, copy or extraction?)"
_NOT_OWN = "the file is not the dataset's own (a damaged copy, or labels from elsewhere?)"
_REPLACE = (": put the original back from the dataset's archive (re-extract it; where to get it: the "
            "docstring of {module})")
_OR_DELETE = ", or delete this example's files so the loader no longer lists it"


@dataclasses.dataclass(frozen=True)
class Files:
  """The errors of one split's files: each names the dataset, the split, the file and the example, and
  says what to do (by default: put the original file back; `module`'s docstring says where to get it)."""
  dataset: str
  split: str
  module: str

  def _replace(self, example, damaged: bool = False) -> str:
    return ((_DAMAGED if damaged else _NOT_OWN) + _REPLACE.format(module=self.module)
            + ("" if example is None else _OR_DELETE))

  def _prefix(self, file, example) -> str:
    example = "" if example is None else f", {example}"
    return f"{self.dataset} ({self.split} split), {file}{example}"

  def bad_label(self, file, example, expected: str, got, todo: str | None = None) -> BadLabelError:
    """`example`: how the message names the example ('image id 139'), or None for a file of the split."""
    todo = todo or self._replace(example)
    message = f"{self._prefix(file, example)}: expected {expected}, got {got}; {todo}"
    return _says_what_to_do(BadLabelError(message))

  def unreadable(self, file, example, error: BaseException, todo: str | None = None) -> UnreadableFileError:
    todo = todo or self._replace(example, damaged=True)
    cause = error.__cause__ if isinstance(error, UnreadableFileError) and error.__cause__ else error
    example = "" if example is None else f", {example}"
    return _says_what_to_do(UnreadableFileError(f"{self.dataset} ({self.split} split){example}: cannot decode "
                                                f"{file} ({type(cause).__name__}: {cause}); {todo}"))

  def read(self, reader, path, example, todo: str | None = None):
    """`reader(path)` (`read_rgb`, `read_label_png`, ...), its errors naming the split and the example;
    `path` may be any description of the file that `reader` understands."""
    try:
      return reader(path)
    except BadLabelError as e:
      todo = todo or self._replace(example)
      raise _says_what_to_do(BadLabelError(f"{self._prefix(path, example)}: {e}; {todo}")) from e
    except UnreadableFileError as e:
      raise self.unreadable(path, example, e, todo) from e

  def load_json(self, path: paths.Path, keys: tuple[str, ...] = ()) -> dict:
    """The JSON object in `path`, which must have `keys`; a truncated or damaged file, or one that is
    not such an object, raises UnreadableFileError / BadLabelError naming it."""
    try:
      data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
      raise self.unreadable(path, None, e) from e
    if not isinstance(data, dict) or any(k not in data for k in keys):
      got = f"keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__
      raise self.bad_label(path, None, f"a JSON object with the keys {list(keys)}", got)
    return data

  def check_label(self, label: np.ndarray, image_shape, valid, file, example, what: str = "class ids",
                  todo: str | None = None) -> None:
    """Raises BadLabelError unless `label` is an (H, W) map of `image_shape[:2]` holding only ids in
    `valid` (a sequence of ints, which should include the ignore value where the dataset has one)."""
    shape = tuple(image_shape[:2])
    if label.shape != shape:
      raise self.bad_label(file, example, f"a label map of its image's size {shape}", f"shape {label.shape}",
                           todo)
    valid = np.asarray(valid)
    if label.size == 0:
      return
    low, high = int(label.min()), int(label.max())
    if low >= 0 and high < 2 ** 16:   # a histogram is far faster than np.unique on a big map
      present = np.flatnonzero(np.bincount(label.ravel().astype(np.intp), minlength=1))
    else:
      present = np.unique(label)
    wrong = np.setdiff1d(present, valid)
    if wrong.size:
      raise self.bad_label(file, example, f"{what} in {describe_ids(valid)}",
                           f"{wrong.size} other value(s) {wrong[:10].tolist()}", todo)


def _says_what_to_do(error: UnreadableFileError) -> UnreadableFileError:
  """Marks an error whose message names the dataset, split, file and example and says what to do, so
  the input pipeline does not repeat it (`says_what_to_do`)."""
  error.says_what_to_do = True
  return error


def describe_ids(ids) -> str:
  """'0..20, 255' for a sorted set of ints: runs of consecutive ids as ranges."""
  ids = np.unique(np.asarray(ids))
  runs = np.split(ids, np.flatnonzero(np.diff(ids) != 1) + 1)
  return ", ".join(str(r[0]) if r.size == 1 else f"{r[0]}..{r[-1]}" for r in runs)


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


def decode_image(source: str | os.PathLike | bytes, decode):
  """`decode(PIL image)` of an image file (path or bytes), read whole; a file that cannot be decoded
  completely raises UnreadableFileError naming it (BadLabelError from `decode` passes through)."""
  try:
    with _open_image(source) as im:
      return decode(im)
  except (FileNotFoundError, BadLabelError):
    raise
  except _DECODE_ERRORS as e:
    raise UnreadableFileError(f"cannot decode {_describe(source)} ({type(e).__name__}: {e})") from e


def read_rgb(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes an image file (path or bytes) to uint8 (H, W, 3) RGB; grey, CMYK and RGBA are converted.
  Raises UnreadableFileError naming the file if it cannot be decoded completely."""
  return decode_image(source, lambda im: np.asarray(im.convert("RGB"), dtype=np.uint8))


def read_label_png(source: str | os.PathLike | bytes) -> np.ndarray:
  """Decodes a label PNG to its raw (H, W) values: palette indices for 'P' images, grey levels for 'L'.
  Raises UnreadableFileError naming the file if it cannot be decoded completely, BadLabelError if it is
  not single-channel (a colour rendering of the labels is not the labels)."""
  def decode(im):
    if im.mode not in ("P", "L", "I", "I;16"):
      raise BadLabelError(f"expected a single-channel label PNG (mode P/L/I), got mode {im.mode!r}")
    return np.asarray(im)
  return decode_image(source, decode)


def lookup_table(mapping: dict[int, int], size: int = 256, default: int = 255) -> np.ndarray:
  """An int32 table `t` with t[k] = mapping[k] and `default` elsewhere, for vectorized relabelling."""
  table = np.full((size,), default, dtype=np.int32)
  for k, v in mapping.items():
    table[k] = v
  return table
