"""The one path layer: local paths and remote filesystems (`gs://`, ...) through `etils.epath`."""

from __future__ import annotations

import os

from etils import epath

Path = epath.Path


def as_path(path: str | os.PathLike) -> epath.Path:
  """`path` as an `epath.Path` (local paths unchanged; `gs://...` and other schemes go to their backend)."""
  return epath.Path(path)
