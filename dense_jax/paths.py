"""The one path layer: every path the project reads or writes goes through `as_path`.

    workdir = paths.as_path("gs://bucket/runs/unet")      # or a local path, unchanged
    (workdir / "config.json").write_text(...)

`as_path` returns an `etils.epath.Path`, the path type TFDS and orbax use. Which backend serves which
scheme is epath's rule: a plain path (or one starting with `~`, expanded) is the local filesystem
through `os`; `gs://` goes through `tf.io.gfile` when TensorFlow is installed (it is, for TFDS) and
fsspec otherwise; `s3://`, `az://`, `hf://` likewise. Local paths behave as `pathlib.Path` does, so
code written with `as_path` runs unchanged on a laptop and on a TPU VM whose data and workdir are in
a bucket. (Orbax writes its array files itself, through TensorStore's own `gs://` / `s3://` drivers.)

So the map is: no scheme -> `os`; `gs://` -> `tf.io.gfile` (fsspec + gcsfs where TensorFlow is absent or
`EPATH_USE_TF=false`); `s3://`, `az://`, `hf://` -> `tf.io.gfile` likewise (TensorFlow 2 serves none of
the three itself: set `EPATH_USE_TF=false` and install s3fs / adlfs / huggingface_hub for fsspec);
any other `scheme://` (`memory://`, `file://`, `ram://`, ...) -> no backend: epath 1.15 registers none, so
`as_path` raises RemotePathError rather than writing a local folder named `memory:`. The tests serve
`s3://` from fsspec's in-memory filesystem (`fsspec.register_implementation("s3", MemoryFileSystem)` with
`EPATH_USE_TF=false`): a filesystem that is not the local one, reached through the same code as a bucket.

A remote path fails on first use when credentials, bucket or network are missing; `check_writable` and
`check_readable` make that first use happen up front and turn its error into one `RemotePathError`
(a ValueError: the command line's `ERROR:` line and exit 2) naming the key the path came from.
"""

from __future__ import annotations

import os
import re
import uuid

from etils import epath

Path = epath.Path
REMOTE_SCHEMES = ("gs://", "s3://", "az://", "hf://")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RemotePathError(ValueError):
  """A path on a remote filesystem cannot be read or written (credentials, bucket, permissions)."""


def as_path(path: str | os.PathLike, key: str | None = None) -> epath.Path:
  """`path` as an `epath.Path`: local paths (with `~` expanded) unchanged, URLs to their backend; a URL
  no backend serves is a RemotePathError (naming `key`, e.g. 'workdir', when given)."""
  text = os.fspath(path)
  if not is_remote(text):
    if _URL.match(text):
      raise RemotePathError(f"{key + ': ' if key else ''}expected a local path or a {', '.join(REMOTE_SCHEMES)} URL, "
                            f"got {text}: no "
                            f"filesystem serves {text.split('://', 1)[0]}:// here (dense_jax.paths)")
    text = os.path.expanduser(text)
  return epath.Path(text)


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is on a remote filesystem (`gs://`, `s3://`, ...), not the local one."""
  return os.fspath(path).startswith(REMOTE_SCHEMES)


def absolute(path: str | os.PathLike, key: str | None = None) -> epath.Path:
  """A local path made absolute (as `pathlib.Path.absolute`); a remote one as it is."""
  return as_path(path) if is_remote(path) else as_path(os.path.abspath(as_path(path, key)))


def _first_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [""])[0][:300]


def check_writable(path: str | os.PathLike, key: str) -> None:
  """For a remote `path`: creates it and writes and deletes a probe file, else RemotePathError naming
  `key` (e.g. '--workdir'). Local paths are left to the caller's own checks (permissions, files)."""
  if not is_remote(path):
    return
  directory = as_path(path)
  probe = directory / f".dense_jax_write_probe_{uuid.uuid4().hex[:8]}"
  try:
    directory.mkdir(parents=True, exist_ok=True)
    probe.write_text("probe\n")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except  # each backend raises its own kind
    raise RemotePathError(f"{key}: expected a writable directory, got {path}, which cannot be written "
                          f"({type(e).__name__}: {_first_line(e)}); check the bucket name and the credentials "
                          f"(gcloud auth application-default login, or the VM's service account)") from None


def check_readable(path: str | os.PathLike, key: str) -> bool:
  """Whether a remote or local `path` exists; RemotePathError naming `key` when asking fails."""
  try:
    return as_path(path).exists()
  except Exception as e:  # pylint: disable=broad-except
    raise RemotePathError(f"{key}: expected a readable path, got {path}, which cannot be read "
                          f"({type(e).__name__}: {_first_line(e)}); check the bucket name and the "
                          f"credentials") from None
