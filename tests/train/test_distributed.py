"""Multi-process flags: all three or none; bad values name the flag; no cluster → single process."""

import pytest

from dense_jax.train import distributed


@pytest.mark.parametrize("kwargs,match", [
    (dict(coordinator_address="h:1"), "missing: --num_processes, --process_id"),
    (dict(num_processes=2, process_id=0), "missing: --coordinator_address"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2), "--process_id: expected 0 <= process_id < "),
    (dict(coordinator_address="host", num_processes=2, process_id=0), "'host:port'"),
])
def test_bad_flags(kwargs, match):
  with pytest.raises(ValueError, match=match):
    distributed.initialize(**kwargs)


def test_single_process_without_flags_or_cluster(monkeypatch):
  for key in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri",
              "JAX_COORDINATOR_ADDRESS"):
    monkeypatch.delenv(key, raising=False)
  assert distributed.initialize() is False
  assert distributed.initialize("localhost:1234", 1, 0) is False   # one process: nothing to join


def test_cluster_detection(monkeypatch):
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed._detected_cluster() is None     # a one-task SLURM job is a single process
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed._detected_cluster() == "SLURM"
  monkeypatch.delenv("SLURM_JOB_ID")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.1")
  assert distributed._detected_cluster() is None     # a single-host TPU VM
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.1,10.0.0.2")
  assert distributed._detected_cluster() == "TPU pod slice"
