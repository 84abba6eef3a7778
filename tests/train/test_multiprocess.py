"""Two processes on localhost (jax.distributed over CPU, gloo collectives) give the same losses as one.

Both runs assemble each global batch of 8 from the same two input shards (`dataset.input_shards=2`):
the single process reads both, each of the two processes reads one. The mesh is data=8 in both: one
process with 8 devices, or two processes with 4 each, so the gradient all-reduce crosses processes.
Tolerance as in test_sharding_equivalence (the partial sums are added in a different order).
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from dense_jax.train import train_and_evaluate
from tests.train.conftest import REPO_ROOT, losses_by_step, read_metrics, tiny_config, write_config_file

pytestmark = pytest.mark.slow


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  config = tiny_config(mesh_shape=(8, 1), **{"dataset.input_shards": 2})
  single = tmp_path / "single"
  ref_final = train_and_evaluate(config, single)

  config_file = write_config_file(tmp_path, config)
  workdir = tmp_path / "multi"
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "dense_jax.train", "--config", str(config_file), "--workdir", str(workdir),
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=400)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [0, 0], "\n\n".join(outs)
  # Only process 0 wrote the logs; both wrote their part of the checkpoint.
  assert "Done: step 8" in outs[0] and "Done" not in outs[1]
  got, ref = losses_by_step(workdir), losses_by_step(single)
  assert list(got) == list(ref) == list(range(1, 9))
  np.testing.assert_allclose(list(got.values()), list(ref.values()), rtol=2e-5)
  final = [r for r in read_metrics(workdir) if "val/miou" in r][-1]
  assert abs(final["val/miou"] - ref_final["val/miou"]) < 2e-3
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
