"""One-GPU benchmark suite (under five minutes on one GPU): speed in bfloat16 and float32, MFU against the
measured matmul peak, peak memory per image against MMSegmentation, and which of our custom VJPs XLA beats.

    python -m experiments.benchmarks.gpu_suite            # on a machine with a GPU (or TPU)
    python -m experiments.benchmarks.gpu_suite --smoke    # tiny shapes, any backend (CPU: ~2-4 min
                                                          # on a loaded 2-core machine): checks the code paths

Tables (each for bfloat16 and float32 compute; float32 parameters in the models):
1. Matmul peak: the measured FLOP/s of an `n x n x n` matmul (n = 8192; 1024 with --smoke) at JAX's
   default precision (on Ampere and later GPUs XLA may use TF32 for float32: the float32 peak is then
   TF32's). MFU below = achieved FLOP/s / this peak, same dtype.
2. Convolutions, each pass timed alone (fwd, dx, dw) and fwd+bwd, per form: `conv2d` 'reference'
   (XLA's autodiff) vs 'blocked' (our weight-gradient VJP), `conv_transpose2d` 'reference' vs 'phase'
   (our sub-pixel form and VJP). "XLA beats ours" = the reference form's fwd+bwd is faster, i.e. the
   custom VJP must stay off on this backend (`_conv_auto` / `_auto` in dense_jax/ops/conv.py keep XLA's
   own gradients on GPU/TPU today; this table is the measurement that decides).
3. Training step of FCN-ResNet50 and DeepLabV3-ResNet50 (output stride 8, 19 classes, SGD momentum,
   batch 2 at 512x1024 as MMSegmentation's Cityscapes configs; --smoke: the narrow variants at 2x64x64):
   step ms, images/s, TFLOP/s from XLA's cost analysis, MFU, and peak memory: XLA's estimate for the
   compiled step (arguments + outputs + temporaries - donated) and the allocator's peak
   (`memory_stats()['peak_bytes_in_use']`, cumulative over the process, hence listed in run order),
   per step and per image, against MMSegmentation's published training memory for the same setting
   (FCN-R50-D8 5.7 GB, DeepLabV3-R50-D8 6.1 GB per GPU at 2x512x1024 on a V100, PyTorch, float32).
Timing: median of `--repeats` runs after compile and warm-up, forms of one row timed alternately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops.conv import conv2d, conv_transpose2d
from experiments.benchmarks.zoo import jax_train_parts

MMSEG_GB = {"fcn_resnet50": 5.7, "deeplabv3_resnet50": 6.1}  # training memory per GPU, batch 2, 512x1024

DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


def _median_ms(fns: dict, repeats: int) -> dict:
  """Median ms of each no-argument callable, the callables timed in turn (warm-up first)."""
  for f in fns.values():
    f()
    f()
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, f in fns.items():
      t0 = time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
  return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def matmul_peak(dtype, n: int, repeats: int) -> float:
  """Measured FLOP/s of an n x n x n matmul in `dtype` (the practical peak)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  mm = jax.jit(lambda a: a @ a)
  ms = _median_ms({"mm": lambda: jax.block_until_ready(mm(a))}, repeats)["mm"]
  return 2 * n ** 3 / ms * 1e3


def _passes(f, x, w):
  """Jitted fwd, dx alone, dw alone and fwd+bwd of `f(x, w)` as no-argument blocking callables."""
  ct = jax.random.normal(jax.random.PRNGKey(1), jax.eval_shape(f, x, w).shape, jnp.float32).astype(x.dtype)
  fwd = jax.jit(f)
  dx = jax.jit(lambda x, w, ct: jax.vjp(lambda v: f(v, w), x)[1](ct))
  dw = jax.jit(lambda x, w, ct: jax.vjp(lambda v: f(x, v), w)[1](ct))
  fb = jax.jit(lambda x, w, ct: (f(x, w), jax.vjp(f, x, w)[1](ct)))
  block = jax.block_until_ready
  return {"fwd": lambda: block(fwd(x, w)), "dx": lambda: block(dx(x, w, ct)),
          "dw": lambda: block(dw(x, w, ct)), "fb": lambda: block(fb(x, w, ct))}


def conv_cases(smoke: bool):
  """(label, op, forms, x shape, w shape, kwargs, FLOPs of one pass)."""
  if smoke:
    convs = [(2, 16, 16, 32, 32), (2, 12, 10, 24, 40)]
    tconvs = [(2, 8, 8, 32, 16)]
  else:
    convs = [(16, 128, 128, 128, 128), (8, 64, 64, 256, 256), (8, 88, 72, 96, 80), (2, 64, 128, 512, 512)]
    tconvs = [(16, 128, 128, 128, 64)]
  cases = []
  for n, h, wd, ci, co in convs:
    cases.append((f"conv2d 3x3 {n}x{h}x{wd} {ci}->{co}", conv2d, ("reference", "blocked"), (n, h, wd, ci),
                  (3, 3, ci, co), dict(padding=1), 2 * n * h * wd * 9 * ci * co))
  n, h, wd, ci, co = convs[-1]
  cases.append((f"conv2d 3x3 rate 12 {n}x{h}x{wd} {ci}->{co}", conv2d, ("reference", "blocked"), (n, h, wd, ci),
                (3, 3, ci, co), dict(padding=12, dilation=12), 2 * n * h * wd * 9 * ci * co))
  for n, h, wd, ci, co in tconvs:
    cases.append((f"conv_transpose2d k4 s2 {n}x{h}x{wd} {ci}->{co}", conv_transpose2d, ("reference", "phase"),
                  (n, h, wd, ci), (4, 4, ci, co), dict(stride=2, padding=1), 2 * n * h * wd * 16 * ci * co))
  return cases


def conv_table(dtype_name: str, peak: float, smoke: bool, repeats: int) -> list:
  """Table 2 for one dtype; returns [(label, custom form, XLA beats ours?)]."""
  dtype = DTYPES[dtype_name]
  print(f"\n## Convolutions, {dtype_name}: TFLOP/s per pass (MFU vs the {dtype_name} matmul peak "
        f"{peak / 1e12:.1f} TFLOP/s); fwd+bwd ms per form; load average {os.getloadavg()[0]:.1f}")
  print("| conv | form | fwd | dx | dw | fwd+bwd ms | fwd+bwd MFU |\n|---|---|---|---|---|---|---|")
  verdicts = []
  rng = np.random.default_rng(0)
  for label, op, forms, x_shape, w_shape, kwargs, flops in conv_cases(smoke):
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[:3])), dtype)
    fns = {}
    for form in forms:
      for name, fn in _passes(lambda x, w, form=form: op(x, w, method=form, **kwargs), x, w).items():
        fns[(form, name)] = fn
    ms = _median_ms(fns, repeats)
    for form in forms:
      tf = {k: flops / ms[(form, k)] * 1e3 / 1e12 for k in ("fwd", "dx", "dw")}
      fb_mfu = 3 * flops / ms[(form, "fb")] * 1e3 / peak
      print(f"| {label} | {form} | {tf['fwd']:.2f} ({tf['fwd'] * 1e12 / peak:.0%}) | {tf['dx']:.2f} | "
            f"{tf['dw']:.2f} | {ms[(form, 'fb')]:.2f} | {fb_mfu:.0%} |", flush=True)
    verdicts.append((label, forms[1], ms[(forms[0], "fb")] < ms[(forms[1], "fb")],
                     ms[(forms[1], "fb")] / ms[(forms[0], "fb")]))
  return verdicts


def allocator_peak_bytes() -> float | None:
  """The device allocator's peak (`memory_stats()['peak_bytes_in_use']`, cumulative over the process);
  None where the backend keeps no statistics (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def flops_of(compiled) -> float:
  """XLA's FLOP count of a compiled program (`cost_analysis()['flops']`; NaN where it gives none). On GPU
  it leaves out the cuDNN / cuBLAS calls, so it undercounts there."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def xla_peak_bytes(compiled) -> float:
  """XLA's memory estimate of a compiled program: arguments + outputs + temporaries - donated aliases."""
  mem = compiled.memory_analysis()
  if mem is None:
    return float("nan")
  return float(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
               - mem.alias_size_in_bytes)


def model_table(dtype_name: str, peak: float, smoke: bool, repeats: int) -> None:
  """Table 3 for one dtype."""
  dtype = DTYPES[dtype_name]
  batch, hw = (2, (64, 64)) if smoke else (2, (512, 1024))
  names = ("fcn_resnet50_narrow", "deeplabv3_resnet50_narrow") if smoke else ("fcn_resnet50", "deeplabv3_resnet50")
  print(f"\n## Training step, {dtype_name} compute, batch {batch} at {hw[0]}x{hw[1]}, 19 classes; "
        f"load average {os.getloadavg()[0]:.1f}")
  print("| model | step ms | img/s | TFLOP/s | MFU | XLA peak GB (per image) | allocator peak GB | "
        "MMSeg GB (per image) |\n|---|---|---|---|---|---|---|---|")
  for name in names:
    step, args = jax_train_parts(name, batch, hw, dtype, num_classes=19)
    compiled = step.lower(*args).compile()
    flops, xla_peak = flops_of(compiled), xla_peak_bytes(compiled) / 1e9
    ms = _median_ms({"step": lambda: jax.block_until_ready(compiled(*args))}, repeats)["step"]
    alloc = allocator_peak_bytes()
    alloc_s = f"{alloc / 1e9:.2f}" if alloc else "n/a"
    ref = MMSEG_GB.get(name.replace("_narrow", ""))
    ref_s = f"{ref} ({ref / 2:.2f})" if ref and not smoke else "-"
    achieved = flops / ms * 1e3
    print(f"| {name} | {ms:.1f} | {batch / ms * 1e3:.2f} | {achieved / 1e12:.2f} | {achieved / peak:.0%} | "
          f"{xla_peak:.2f} ({xla_peak / batch:.2f}) | {alloc_s} | {ref_s} |", flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="tiny shapes: check the code paths on any backend")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--dtypes", default="bfloat16,float32")
  parser.add_argument("--skip-models", action="store_true")
  parser.add_argument("--skip-convs", action="store_true")
  args = parser.parse_args(argv)
  repeats = args.repeats or (2 if args.smoke else 10)
  dev = jax.devices()[0]
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind} x{jax.device_count()}, "
        f"load average {os.getloadavg()[0]:.1f}{' (smoke: tiny shapes, figures meaningless)' if args.smoke else ''}")
  if jax.default_backend() == "cpu" and not args.smoke:
    print("note: no accelerator; this suite is meant for one GPU (use --smoke to check it on CPU)")
  t_start = time.perf_counter()
  verdicts = {}
  for dtype_name in args.dtypes.split(","):
    peak = matmul_peak(DTYPES[dtype_name], 1024 if args.smoke else 8192, repeats)
    print(f"\n{dtype_name} matmul peak ({'1024' if args.smoke else '8192'}^3): {peak / 1e12:.2f} TFLOP/s")
    if not args.skip_convs:
      verdicts[dtype_name] = conv_table(dtype_name, peak, args.smoke, repeats)
    if not args.skip_models:
      model_table(dtype_name, peak, args.smoke, repeats)
  if verdicts:
    print("\n## Which custom VJPs XLA beats here (fwd+bwd; ours/XLA time > 1: keep XLA's own gradient)")
    print("| dtype | conv | our form | ours / XLA time | XLA beats ours |\n|---|---|---|---|---|")
    for dtype_name, rows in verdicts.items():
      for label, form, xla_wins, ratio in rows:
        print(f"| {dtype_name} | {label} | {form} | {ratio:.2f} | {'yes' if xla_wins else 'no'} |")
  print(f"\nsuite wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
  main()
