"""Multi-process set-up: `jax.distributed.initialize` from explicit flags or the cluster's environment.

    python -m dense_jax.train ... --coordinator_address=host0:12345 --num_processes=2 --process_id=0
    python -m dense_jax.train ... --coordinator_address=host0:12345 --num_processes=2 --process_id=1

The three flags go together. Without them, `jax.distributed.initialize()` is called with no arguments
where JAX can discover the cluster by itself — a Cloud TPU pod slice, SLURM (`srun`), Open MPI — and
otherwise the run is a single process. Each process then sees the global device list, feeds its own
rows of every batch, and process 0 alone writes logs.
"""

from __future__ import annotations

import os

import jax

# Environment variables that mean "JAX's cluster auto-detection applies here".
_AUTO_ENV = {
    "TPU pod slice": ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"),
    "SLURM": ("SLURM_JOB_ID",),
    "Open MPI": ("OMPI_MCA_orte_hnp_uri",),
    "JAX_COORDINATOR_ADDRESS": ("JAX_COORDINATOR_ADDRESS",),
}


def _detected_cluster() -> str | None:
  for name, keys in _AUTO_ENV.items():
    present = [k for k in keys if os.environ.get(k)]
    if not present:
      continue
    if name == "TPU pod slice" and present == ["TPU_WORKER_HOSTNAMES"] and "," not in os.environ[present[0]]:
      continue  # a single-host TPU VM: nothing to coordinate
    if name == "SLURM" and int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
      continue
    return name
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Joins the process group; returns True if this is a multi-process run.

  Explicit: all of `coordinator_address` ('host:port'), `num_processes` (>= 1) and `process_id`
  (0 … num_processes - 1). Partial flags are an error (naming the missing ones), not a guess.
  """
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
           "process_id": process_id}
  missing = [k for k, v in given.items() if v is None]
  if len(missing) < 3:
    if missing:
      raise ValueError(f"--coordinator_address, --num_processes, --process_id go together; missing: "
                       f"{', '.join('--' + m for m in missing)}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id: expected 0 <= process_id < num_processes = {num_processes}, "
                       f"got {process_id}")
    if ":" not in coordinator_address:
      raise ValueError(f"--coordinator_address: expected 'host:port', got {coordinator_address!r}")
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return True
  cluster = _detected_cluster()
  if cluster is None:
    return False
  jax.distributed.initialize()
  return jax.process_count() > 1
