"""The one timing layer of the benchmarks: alternate timing, FLOPs and memory of compiled programs, the
machine record, and `--json` output.

    ms = timing.median_ms({"ours": timing.blocking(step, state), "torch": torch_step}, repeats=5)
    timing.write_json(path, rows)          # {"machine": machine(), "rows": rows}

`median_ms` times no-argument callables alternately (warm-up calls first, then `repeats` rounds, each
round calling every callable once, in order), so that a change of load on a shared machine falls on all
of them alike; the result is each callable's median in milliseconds. A JAX callable must block on its
outputs (`blocking` wraps one); a PyTorch one runs with the threads `torch_threads` set, once, per process.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


def blocking(fn: Callable, *args) -> Callable[[], object]:
  """A no-argument callable: `fn(*args)`, blocked until its outputs are ready (returned)."""
  return lambda: jax.block_until_ready(fn(*args))


def median_ms(fns: dict, repeats: int, warmup: int = 2) -> dict:
  """Median ms of each no-argument callable in `fns`, timed alternately: `warmup` untimed calls of each
  (compile, caches), then `repeats` rounds calling each once, in `fns`' order."""
  if repeats < 1:
    raise ValueError(f"repeats: expected >= 1, got {repeats}")
  for f in fns.values():
    for _ in range(warmup):
      f()
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, f in fns.items():
      t0 = time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
  return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def images_per_s(fns: dict, batch: int, repeats: int, warmup: int = 1) -> dict:
  """Images per second of each training / inference step in `fns` (`batch` images each), from
  `median_ms` (timed alternately)."""
  return {k: batch / ms * 1e3 for k, ms in median_ms(fns, repeats, warmup).items()}


def rate_per_s(step: Callable, items_per_call: int, seconds: float, windows: int = 3) -> float:
  """Throughput of `step` (items per second, each call `items_per_call` items): one warm-up call, then the
  median over `windows` windows of `seconds / windows` each (for producers such as input pipelines,
  whose per-call time varies)."""
  step()
  rates = []
  for _ in range(windows):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / windows:
      step()
      n += items_per_call
    rates.append(n / (time.perf_counter() - t0))
  return statistics.median(rates)


@functools.cache
def torch_threads(threads: int | None = None) -> int:
  """Sets PyTorch's intra-op threads once per process (`threads`, default every core, as XLA uses);
  returns the count. ImportError without torch."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads or os.cpu_count() or 1)
  return torch.get_num_threads()


def torch_or_none(threads: int | None = None):
  """The `torch` module with its threads set (`torch_threads`), or None where torch is absent."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  torch_threads(threads)
  return torch


def matmul_peak(dtype=jnp.float32, n: int = 2048, repeats: int = 5) -> float:
  """Measured FLOP/s of an `n x n x n` matmul in `dtype` at JAX's default precision (the practical peak;
  on Ampere and later GPUs XLA may use TF32 for float32)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  mm = jax.jit(lambda a: a @ a)
  ms = median_ms({"mm": blocking(mm, a)}, repeats)["mm"]
  return 2 * n ** 3 / ms * 1e3


def flops_of(compiled) -> float:
  """XLA's FLOP count of a compiled program (`cost_analysis()['flops']`; NaN where it gives none). XLA
  counts a loop body once, and on GPU it leaves out cuDNN / cuBLAS calls, so it undercounts there."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def memory_bytes(compiled) -> dict[str, int]:
  """XLA's memory analysis of a compiled program, bytes: temp, args, output, aliased (donated) and
  peak = temp + args + output - aliased."""
  m = compiled.memory_analysis()
  out = {"temp": int(m.temp_size_in_bytes), "args": int(m.argument_size_in_bytes),
         "output": int(m.output_size_in_bytes), "aliased": int(m.alias_size_in_bytes)}
  out["peak"] = out["temp"] + out["args"] + out["output"] - out["aliased"]
  return out


def xla_peak_bytes(compiled) -> float:
  """XLA's peak estimate of a compiled program (`memory_bytes(...)['peak']`; NaN without an analysis)."""
  if compiled.memory_analysis() is None:
    return float("nan")
  return float(memory_bytes(compiled)["peak"])


def allocator_peak_bytes() -> float | None:
  """The device allocator's peak (`memory_stats()['peak_bytes_in_use']`, cumulative over the process);
  None where the backend keeps no statistics (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def _git_commit() -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None if out.returncode == 0 else None


def _torch_version() -> str | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch.__version__


def machine() -> dict:
  """Where the figures come from: CPU count, load average (1, 5, 15 min), backend, device kind and count,
  jax / torch versions (None: absent), git commit (None outside a checkout), host platform, UTC time."""
  dev = jax.devices()[0]
  return {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()), "backend": jax.default_backend(),
          "device_kind": dev.device_kind, "device_count": jax.device_count(), "jax": jax.__version__,
          "torch": _torch_version(), "git_commit": _git_commit(), "platform": platform.platform(),
          "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def load() -> str:
  """'load average 1.23' (the 1-minute load) for the printed tables."""
  return f"load average {os.getloadavg()[0]:.2f}"


def write_json(path, rows: list[dict]) -> None:
  """Writes `{"machine": machine(), "rows": rows}` to `path` (local or remote through `dense_jax.paths`;
  a local path only where its etils is absent)."""
  try:
    from dense_jax import paths  # pylint: disable=g-import-not-at-top  (etils: absent on some GPU hosts)
    out = paths.as_path(path)
  except ImportError:
    import pathlib  # pylint: disable=g-import-not-at-top
    out = pathlib.Path(path).expanduser()
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1, default=_jsonable) + "\n")


def _jsonable(value):
  """NumPy / JAX scalars and arrays as Python numbers and lists."""
  if hasattr(value, "tolist"):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def add_json_flag(parser) -> None:
  """The `--json PATH` flag every benchmark CLI takes."""
  parser.add_argument("--json", default=None, metavar="PATH",
                      help='write {"machine": ..., "rows": [...]} to PATH (local or gs://)')
