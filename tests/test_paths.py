"""dense_jax.paths: which backend serves which scheme, and the up-front checks of remote paths.

Local paths stay what they were; `gs://` and the other URLs epath knows go to its backends; any other
`scheme://` is refused. The remote checks run in a subprocess that serves `s3://` (writable) and `az://`
(read-only: every write raises PermissionError) from fsspec's in-memory filesystem with
`EPATH_USE_TF=false` (epath reads that once per process), so no network is needed.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from dense_jax import paths

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["/tmp/a/b.json", "relative/dir", "a:b/c", "C:/x", "."])
def test_local_paths_are_unchanged(text):
  path = paths.as_path(text)
  assert isinstance(path, paths.Path) and os.fspath(path) == os.fspath(pathlib.Path(text))
  assert not paths.is_remote(text) and not paths.is_remote(path)


def test_home_is_expanded_and_pathlike_accepted(tmp_path):
  assert os.fspath(paths.as_path("~/x")) == os.path.expanduser("~/x")
  assert os.fspath(paths.as_path(tmp_path / "f")) == str(tmp_path / "f")
  assert paths.absolute("rel") == paths.as_path(os.path.abspath("rel"))


@pytest.mark.parametrize("url", ["gs://bucket/run/config.json", "s3://bucket/x", "az://c/x", "hf://x/y"])
def test_urls_keep_their_scheme(url):
  path = paths.as_path(url)
  assert os.fspath(path) == url and str(path / "more") == url + "/more" and paths.is_remote(path)
  assert paths.absolute(url) == path and path.parent.name   # pure operations need no backend


@pytest.mark.parametrize("url", ["memory://bucket/x", "file:///tmp/x", "ram://x", "hdfs://host/x"])
def test_scheme_without_a_backend_is_refused(url):
  with pytest.raises(paths.RemotePathError, match=f"no filesystem serves {url.split('://')[0]}://"):
    paths.as_path(url)
  assert issubclass(paths.RemotePathError, ValueError)   # the command line's ERROR line and exit 2


def test_local_checks(tmp_path):
  paths.check_writable(tmp_path / "new", "--workdir")   # local: left to the caller's own checks
  assert not (tmp_path / "new").exists()
  assert paths.check_readable(tmp_path, "data_dir") and not paths.check_readable(tmp_path / "no", "data_dir")


def test_gs_without_credentials_is_a_quick_error_naming_the_key():
  start = time.perf_counter()
  with pytest.raises(paths.RemotePathError, match=r"^--workdir: expected a writable directory, got "
                                                  r"gs://dense-jax-no-such-bucket/run, which cannot be written"):
    paths.check_writable("gs://dense-jax-no-such-bucket/run", "--workdir")
  assert time.perf_counter() - start < 60


SCRIPT = textwrap.dedent('''
    import json, os
    os.environ["EPATH_USE_TF"] = "false"
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class ReadOnly(MemoryFileSystem):
      protocol = ("az",)
      def _open(self, path, mode="rb", **kw):
        if "r" not in mode:
          raise PermissionError(f"403 Forbidden: {path} is read-only")
        return super()._open(path, mode, **kw)

    fsspec.register_implementation("s3", MemoryFileSystem, clobber=True)
    fsspec.register_implementation("az", ReadOnly, clobber=True)
    from dense_jax import paths
    out = {}
    paths.check_writable("s3://bucket/run", "--workdir")
    run = paths.as_path("s3://bucket/run")
    out["created"] = run.is_dir()
    out["left"] = [p.name for p in run.iterdir()]
    (run / "a.txt").write_text("hi")
    out["read"] = paths.as_path("s3://bucket/run/a.txt").read_text()
    out["readable"] = [paths.check_readable("s3://bucket/run/a.txt", "data_dir"),
                       paths.check_readable("s3://bucket/run/none", "data_dir")]
    try:
      paths.check_writable("az://container/run", "--workdir")
    except ValueError as e:
      out["readonly"] = [type(e).__name__, str(e)]
    print("RESULT " + json.dumps(out))
''')


def test_remote_checks_on_an_in_memory_filesystem(tmp_path):
  script = tmp_path / "remote_paths.py"
  script.write_text(SCRIPT)
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
  results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  assert proc.returncode == 0 and results, proc.stderr[-3000:]
  out = json.loads(results[0][len("RESULT "):])
  assert out["created"] and out["left"] == []   # the probe file is gone
  assert out["read"] == "hi" and out["readable"] == [True, False]
  name, message = out["readonly"]
  assert name == "RemotePathError"
  assert message.startswith("--workdir: expected a writable directory, got az://container/run, which cannot be "
                            "written (PermissionError: 403 Forbidden"), message
  assert not any(n.startswith(("s3:", "az:")) for n in os.listdir(tmp_path))
