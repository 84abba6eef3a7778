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

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._random import random_variables
from dense_jax.models.sliding_window import SlidingWindow
from experiments.benchmarks import timing


def _measure(model, variables, x, repeats):
  """(median ms, XLA GFLOPs) of the compiled forward of `model` on `x`."""
  compiled = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).compile()
  ms = timing.median_ms({"f": timing.blocking(compiled, variables, x)}, repeats, warmup=1)["f"]
  return ms, timing.flops_of(compiled) / 1e9


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="*", default=[32, 64, 128])
  parser.add_argument("--narrow", action="store_true", help="width 1/4 (the registry's sliding_window_narrow)")
  parser.add_argument("--repeats", type=int, default=3)
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  rows = []
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
    rows.append({"size": size, "width": width, "dense_ms": d_ms, "sliding_ms": s_ms, "slowdown": s_ms / d_ms,
                 "dense_gflops": d_gf, "sliding_gflops": s_gf})
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
