"""The path layer end to end on a filesystem that is not the local one.

The remote filesystem is `s3://`, served in memory: fsspec's `MemoryFileSystem` registered under the
`s3` protocol, in a subprocess with `EPATH_USE_TF=false` so that epath hands `s3://` to fsspec (the
registration and the environment are per process). In it:
- a real-dataset loader (`oxford_iiit_pet`) reads its files from `s3://bucket/pets`;
- a training run writes its workdir `s3://bucket/run` (config.json, metrics.jsonl, figures), a rerun
  of the same config resumes it, a longer one continues it (metrics.jsonl rewritten whole: object
  stores do not append), and another config is refused by the workdir guard reading config.json there.
Checkpoints are the one part that cannot be remote here. Orbax 0.12.8 writes checkpoint arrays through
TensorStore, not epath: it gives TensorStore's GCS driver a `gs://` path and its local-file driver
everything else, so an `s3://` checkpoint directory is refused ("Checkpoint path should be absolute"), and
TensorStore's own `memory://` store is not fsspec's (and orbax renames its tmp directories through epath,
which that store would not see). Checkpoints in `gs://` would need a fake GCS server for TensorStore
(orbax lists a bucket's steps with the google-cloud-storage client, a requirement). So
`checkpoint.check_directory` refuses an `s3://` workdir up front (checked here), and for the rest of
the subprocess the `Checkpointer` gets a local directory (every other path of the run stays remote).
TensorBoard cannot write to `s3://` through TensorFlow 2 (no s3 filesystem): the run prints one note
and goes on. Also: a `gs://` workdir or data_dir without credentials is one ERROR line, exit 2.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.train.conftest import REPO_ROOT, tiny_config, write_config_file

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ["EPATH_USE_TF"] = "false"
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem
    fsspec.register_implementation("s3", MemoryFileSystem, clobber=True)
    import ml_collections
    import numpy as np
    from PIL import Image
    import tests.train.conftest as engine
    import dense_jax.data.real  # noqa: F401
    from dense_jax import paths
    from dense_jax.data import sources
    from dense_jax.train import checkpoint, train_and_evaluate

    out = {}
    try:   # orbax cannot write checkpoints to s3:// (see the test's docstring): refused before the run
      train_and_evaluate(engine.tiny_config(num_devices=1, mesh_shape=(1, 1), total_steps=4), "s3://bucket/refused")
    except ValueError as e:
      out["refused"] = [type(e).__name__, str(e)]
    out["refused_files"] = paths.as_path("s3://bucket/refused").exists() and sorted(
        p.name for p in paths.as_path("s3://bucket/refused").iterdir())

    local_arrays = sys.argv[1]
    checkpoint.check_directory = lambda directory, key="workdir": None
    init = checkpoint.Checkpointer.__init__
    def local_init(self, directory, **kw):   # TensorStore's array files: see the test's docstring
      init(self, os.path.join(local_arrays, str(directory).split("://", 1)[1]), **kw)
    checkpoint.Checkpointer.__init__ = local_init
    checkpoint.check_directory = lambda directory, key="workdir": None   # refuses s3:// checkpoints otherwise

    pets = paths.as_path("s3://bucket/pets")
    for name, split in (("Abyssinian_1", "trainval"), ("Bombay_3", "test")):
      image = np.random.default_rng(0).integers(0, 255, (6, 8, 3), np.uint8)
      trimap = np.full((6, 8), 2, np.uint8)
      trimap[2:4, 3:6] = 1
      for path, array, fmt in ((pets / "images" / f"{name}.jpg", image, "JPEG"),
                               (pets / "annotations" / "trimaps" / f"{name}.png", trimap, "PNG")):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
          Image.fromarray(array).save(f, format=fmt)
      (pets / "annotations" / f"{split}.txt").write_text(f"{name} 1 1 1\\n")
    example = sources.get_source("oxford_iiit_pet", "train", data_dir="s3://bucket/pets")[0]
    out["pet"] = {"image": list(example["image"].shape), "classes": sorted(np.unique(example["semantic"]).tolist())}

    workdir = "s3://bucket/run"
    config = engine.tiny_config(num_devices=1, mesh_shape=(1, 1), total_steps=4, eval_every=4, tensorboard=True)
    out["first"] = train_and_evaluate(config, workdir)["step"]
    out["again"] = train_and_evaluate(config, workdir)["step"]
    config.total_steps = 6
    out["longer"] = train_and_evaluate(config, workdir)["step"]
    run = paths.as_path(workdir)
    out["files"] = sorted(p.name for p in run.iterdir())
    out["figures"] = sorted(p.name for p in (run / "figures").iterdir())
    out["steps"] = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    out["saved_seed"] = json.loads((run / "config.json").read_text())["seed"]
    try:
      train_and_evaluate(engine.tiny_config(num_devices=1, mesh_shape=(1, 1), seed=3), workdir)
    except ValueError as e:
      out["guard"] = str(e)
    out["local_names"] = sorted(os.listdir(local_arrays))
    print("RESULT " + json.dumps(out))
''')


def test_loader_and_training_run_on_a_remote_filesystem(tmp_path):
  script = tmp_path / "remote_run.py"
  script.write_text(SCRIPT)
  arrays = tmp_path / "arrays"
  arrays.mkdir()
  proc = subprocess.run([sys.executable, str(script), str(arrays)], cwd=tmp_path, capture_output=True, text=True,
                        timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT)))
  results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  assert proc.returncode == 0 and results, proc.stdout[-3000:] + proc.stderr[-5000:]
  out = json.loads(results[0][len("RESULT "):])
  assert out["pet"] == {"image": [6, 8, 3], "classes": [0, 1]}
  assert (out["first"], out["again"], out["longer"]) == (4, 4, 6)
  assert {"config.json", "metrics.jsonl", "figures"} <= set(out["files"]) and out["figures"]
  assert "checkpoints" not in out["files"]   # TensorStore's part went to the local folder
  assert [s for s in out["steps"] if s <= 6] == sorted(out["steps"]) and out["steps"][-1] == 6
  assert out["steps"].count(4) >= 1 and 5 in out["steps"]
  assert "Differing keys" in out["guard"] and "seed" in out["guard"]
  assert out["local_names"] == ["bucket"]
  assert out["refused"][0] == "ConfigError" and out["refused"][1].startswith("workdir: expected a local directory "
                                                                             "or a gs:// URL for the checkpoints")
  assert not out["refused_files"] or out["refused_files"] == [], out["refused_files"]   # nothing written there
  notes = [line for line in proc.stdout.splitlines() if line.startswith("note: TensorBoard cannot write")]
  assert notes and all("s3://bucket/run/tensorboard" in n for n in notes), proc.stdout[-3000:]
  assert not any(name.startswith("s3:") for name in os.listdir(tmp_path))   # nothing written as a local 's3:' dir


@pytest.mark.parametrize("flag", ["--workdir=gs://dense-jax-no-such-bucket/run", "--workdir=memory://run",
                                  "--config.dataset.data_dir=gs://dense-jax-no-such-bucket/data"])
def test_gs_without_credentials_is_one_error_line(tmp_path, flag):
  """No credentials and no network here: the first use of the path fails, named by its key."""
  overrides = {"dataset.name": "oxford_iiit_pet", "dataset.image_size": 32} if "data_dir" in flag else {}
  config_file = write_config_file(tmp_path, tiny_config(**overrides))
  args = [f"--config={config_file}", flag] + ([] if "workdir" in flag else [f"--workdir={tmp_path / 'run'}"])
  proc = subprocess.run([sys.executable, "-m", "dense_jax.train", *args], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  key = "workdir" if "workdir" in flag else "config.dataset.data_dir"
  assert len(errors) == 1 and errors[0].startswith(f"ERROR: {key}: expected a"), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()
