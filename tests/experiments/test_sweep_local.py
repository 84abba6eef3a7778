"""End to end on this machine: the sweep launcher, resuming, skipping, the breakdown evaluation, the report.

One tiny experiment file (written here) sweeps two 4-step U-Net runs on a 32×32 dataset generated on
the fly. Run B is started by hand first and stopped after step 2 (an interrupted run: a checkpoint and
no finished record); the sweep must train A, resume B from step 2, and a second sweep must skip both.
Then `experiments.evaluate_breakdown` adds its numbers and `experiments.report` must reproduce every
run's final metrics.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

EXPERIMENT = textwrap.dedent("""
    import dataclasses
    import os
    from dense_jax.data import dense_shapes
    from dense_jax.data.dense_shapes import config as shapes_config
    from experiments import unet_dense_shapes

    _cfg = dataclasses.replace(shapes_config.CONFIGS["small_64"], name="sweep_test_32", image_size=32,
                               splits=(("train", 32), ("validation", 16)))
    dense_shapes.register_config(_cfg, live=True)

    def get_config(arg=None):
      config = unet_dense_shapes.get_config(arg)
      config.dataset.name = "dense_shapes/sweep_test_32"
      config.dataset.num_threads = 1
      config.model.width = 4
      config.model.depth = 1
      config.total_steps = 4
      config.batch_size = 8
      config.eval_batch_size = 8
      config.optimizer.warmup_steps = 1
      config.log_every = 2
      config.eval_every = 4
      config.checkpoint_every = 2
      config.num_figures = 0
      config.tensorboard = False
      config.experiment = dict(band_radius=1, small_area=40, erf_batch=2)
      config.stop_at_step = int(os.environ.get("SWEEP_TEST_STOP_AT", "0")) or None   # to interrupt a run
      return config

    def sweep(add, arg=None):
      add(name="a", **{"model.up": "bilinear"})
      add(name="b", **{"model.up": "transposed"})
""")


def _run(*args, check=True, **extra_env):
  env = dict(os.environ, **extra_env)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "dense_jax_test_xla_cache"))
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["XLA_FLAGS"] = ""            # one CPU device in the subprocesses, as on a laptop
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  if check and result.returncode != 0:
    raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
  return result


def _records(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _final(workdir: pathlib.Path) -> dict:
  last = {}
  for record in _records(workdir):
    last.update({k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
  return last


def test_sweep_resumes_skips_evaluates_and_reports(tmp_path):
  experiment = tmp_path / "tiny_experiment.py"
  experiment.write_text(EXPERIMENT)
  spec = f"{experiment}:quick"
  root = tmp_path / "sweep"

  # An interrupted run b: trained by hand to step 2 of 4, with run b's override, then stopped.
  _run("dense_jax.train", "--config", spec, "--workdir", str(root / "b"), "--config.model.up=transposed",
       SWEEP_TEST_STOP_AT="2")
  assert (root / "b" / "checkpoints" / "2").is_dir()
  listing = _run("experiments.sweep", spec, "--root", str(root), "--list").stdout
  assert "unfinished  b" in listing and "new  a" in listing

  out = _run("experiments.sweep", spec, "--root", str(root), "--parallel", "2").stdout
  assert "2 runs: 2 finished, 0 failed" in out
  for name in ("a", "b"):
    record = json.loads((root / name / "sweep_run.json").read_text())
    assert record["status"] == "done", record
    assert _final(root / name)["step"] == 4
  assert "Resuming from step 2" in (root / "b" / "sweep_log.txt").read_text()
  assert "Resuming" not in (root / "a" / "sweep_log.txt").read_text()
  b_steps = [r["step"] for r in _records(root / "b") if "loss" in r]
  assert b_steps == [2, 4]     # logged at 2 before the stop, then 4 after resuming (no step redone)

  before = {n: (root / n / "metrics.jsonl").read_text() for n in ("a", "b")}
  out = _run("experiments.sweep", spec, "--root", str(root)).stdout
  assert out.count("done, skipped") == 2
  assert {n: (root / n / "metrics.jsonl").read_text() for n in ("a", "b")} == before

  out = _run("experiments.evaluate_breakdown", str(root)).stdout
  assert out.count("[breakdown]") == 2
  for name in ("a", "b"):
    final = _final(root / name)
    for key in ("val/band/miou", "val/interior/miou", "val/small/accuracy", "val/large/accuracy",
                "erf/width90"):
      assert key in final, (name, key)
    assert 0.0 <= final["val/band/fraction"] <= 1.0
    assert (root / name / "erf.png").stat().st_size > 0
  assert _run("experiments.evaluate_breakdown", str(root)).stdout.count("already evaluated") == 2

  _run("experiments.report", str(root))
  rows = {row["run"]: row for row in csv.DictReader(open(root / "report.csv"))}
  assert set(rows) == {"a", "b"}
  markdown = (root / "report.md").read_text()
  for name, row in rows.items():
    assert row["status"] == "done" and row["model.up"] in ("bilinear", "transposed")
    final = _final(root / name)
    for key in ("val/miou", "val/pixel_accuracy", "loss", "val/band/miou", "val/large/accuracy", "step"):
      assert float(row[key]) == pytest.approx(final[key], rel=1e-12, abs=0), (name, key)
    assert f"{final['val/miou']:.4g}" in markdown
