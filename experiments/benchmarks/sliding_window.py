"""How much slower is the sliding-window classifier than its fully convolutional twin on the same image?

Run: `python -m experiments.benchmarks.sliding_window [--sizes 32 64 128] [--narrow] [--repeats 3]`

Both forms (`dense_jax.models.sliding_window`, `mode='sliding'` and `mode='dense'`) have the same
parameters and compute the same output (tested). The sliding form classifies the P×P patch of every
pixel on its own (patches in chunks of 4096); the dense form shares the overlapping work. Printed:
median milliseconds per image of each form (batch 1, after compilation), the slowdown, and XLA's
GFLOPs of each compiled program. XLA's cost analysis counts a loop body once, so the sliding form's
count (a loop over chunks of `chunk` patches) is multiplied by the number of chunks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._random import random_variables
from dense_jax.models.sliding_window import SlidingWindow


def _measure(model, variables, x, repeats):
  compiled = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  jax.block_until_ready(compiled(variables, x))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(variables, x))
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times), cost["flops"] / 1e9


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="*", default=[32, 64, 128])
  parser.add_argument("--narrow", action="store_true", help="width 1/4 (the registry's sliding_window_narrow)")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  width = 0.25 if args.narrow else 1.0
  print(f"backend {jax.default_backend()}, patch 18x18, width {width}")
  print(f"{'size':>6s} {'dense ms':>10s} {'sliding ms':>11s} {'slowdown':>9s} {'dense GF':>9s} {'sliding GF':>11s}")
  for size in args.sizes:
    shape = (1, size, size, 3)
    dense = SlidingWindow(width=width, mode="dense")
    sliding = SlidingWindow(width=width, mode="sliding")
    variables = random_variables(dense, shape)
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    d_ms, d_gf = _measure(dense, variables, x, args.repeats)
    s_ms, s_gf = _measure(sliding, variables, x, args.repeats)
    s_gf *= -(-size * size // sliding.chunk)  # loop iterations (XLA counts the body once)
    print(f"{size:6d} {d_ms:10.2f} {s_ms:11.1f} {s_ms / d_ms:8.1f}x {d_gf:9.3f} {s_gf:11.2f}", flush=True)


if __name__ == "__main__":
  main()
