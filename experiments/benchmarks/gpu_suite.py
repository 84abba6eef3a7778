"""One-GPU benchmark suite (under five minutes on one GPU): speed in bfloat16 and float32, MFU against the
measured matmul peak, peak memory per image against MMSegmentation, and which of our custom VJPs XLA beats.

    python -m experiments.benchmarks.gpu_suite            # on a machine with a GPU (or TPU)
    python -m experiments.benchmarks.gpu_suite --smoke    # tiny shapes, any backend (CPU: ~2-4 min
                                                          # on a loaded 2-core machine): checks the code paths

Tables (each for bfloat16 and float32 compute; float32 parameters in the models):
1. Matmul peak: the measured FLOP/s of an `n x n x n` matmul (n = 8192; 1024 with --smoke),
   `timing.matmul_peak`. MFU below = achieved FLOP/s / this peak, same dtype.
2. Convolutions, each pass timed alone (fwd, dx, dw) and fwd+bwd, per form: `conv2d` 'reference'
   (XLA's autodiff) vs 'blocked' (our weight-gradient VJP), `conv_transpose2d` 'reference' vs 'phase'
   (our sub-pixel form and VJP). "XLA beats ours" = the reference form's fwd+bwd is faster, i.e. the
   custom VJP must stay off on this backend (`dense_jax/ops/conv.py` picks the form per backend; this
   table is the measurement that decides).
3. Training step of FCN-ResNet50 and DeepLabV3-ResNet50 (output stride 8, 19 classes, SGD momentum,
   batch 2 at 512x1024 as MMSegmentation's Cityscapes configs; --smoke: the narrow variants at 2x64x64):
   step ms, images/s, TFLOP/s from XLA's cost analysis, MFU, and peak memory: XLA's estimate for the
   compiled step (arguments + outputs + temporaries - donated) and the allocator's peak
   (`memory_stats()['peak_bytes_in_use']`, cumulative over the process, hence listed in run order),
   per step and per image, against MMSegmentation's published training memory for the same setting
   (FCN-R50-D8 5.7 GB, DeepLabV3-R50-D8 6.1 GB per GPU at 2x512x1024 on a V100, PyTorch, float32).
Timing: median of `--repeats` runs after compile and warm-up, forms of one row timed alternately
(`timing.median_ms`); `--json PATH` writes the rows and the machine record.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops.conv import conv2d, conv_transpose2d
from experiments.benchmarks import table, timing
from experiments.benchmarks.timing import DTYPES
from experiments.benchmarks.zoo import jax_train_parts

MMSEG_GB = {"fcn_resnet50": 5.7, "deeplabv3_resnet50": 6.1}  # training memory per GPU, batch 2, 512x1024


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


def conv_rows(dtype_name: str, peak: float, smoke: bool, repeats: int) -> list[dict]:
  """Table 2 for one dtype: one row per (conv, form) with each pass's ms and TFLOP/s, fwd+bwd MFU, and
  `xla_beats_ours` on the custom form's row."""
  dtype = DTYPES[dtype_name]
  rows = []
  rng = np.random.default_rng(0)
  for label, op, forms, x_shape, w_shape, kwargs, flops in conv_cases(smoke):
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[:3])), dtype)
    fns = {}
    for form in forms:
      for name, fn in _passes(lambda x, w, form=form: op(x, w, method=form, **kwargs), x, w).items():
        fns[(form, name)] = fn
    ms = timing.median_ms(fns, repeats)
    for form in forms:
      row = {"table": "convs", "dtype": dtype_name, "conv": label, "form": form, "flops": flops}
      for k in ("fwd", "dx", "dw"):
        row[f"{k}_ms"], row[f"{k}_tflop_per_s"] = ms[(form, k)], flops / ms[(form, k)] * 1e3 / 1e12
      row["fwd_mfu"] = row["fwd_tflop_per_s"] * 1e12 / peak
      row["fwd_bwd_ms"] = ms[(form, "fb")]
      row["fwd_bwd_mfu"] = 3 * flops / ms[(form, "fb")] * 1e3 / peak
      if form == forms[1]:
        row["ours_over_xla"] = ms[(forms[1], "fb")] / ms[(forms[0], "fb")]
        row["xla_beats_ours"] = ms[(forms[0], "fb")] < ms[(forms[1], "fb")]
      rows.append(row)
  return rows


def model_rows(dtype_name: str, peak: float, smoke: bool, repeats: int) -> list[dict]:
  """Table 3 for one dtype: one row per model."""
  dtype = DTYPES[dtype_name]
  batch, hw = (2, (64, 64)) if smoke else (2, (512, 1024))
  names = ("fcn_resnet50_narrow", "deeplabv3_resnet50_narrow") if smoke else ("fcn_resnet50", "deeplabv3_resnet50")
  rows = []
  for name in names:
    step, args = jax_train_parts(name, batch, hw, dtype, num_classes=19)
    compiled = step.lower(*args).compile()
    flops, xla_peak = timing.flops_of(compiled), timing.xla_peak_bytes(compiled) / 1e9
    ms = timing.median_ms({"step": timing.blocking(compiled, *args)}, repeats)["step"]
    alloc = timing.allocator_peak_bytes()
    ref = MMSEG_GB.get(name.replace("_narrow", ""))
    achieved = flops / ms * 1e3
    rows.append({"table": "models", "dtype": dtype_name, "model": name, "batch": batch, "size": f"{hw[0]}x{hw[1]}",
                 "step_ms": ms, "images_per_s": batch / ms * 1e3, "flops": flops, "tflop_per_s": achieved / 1e12,
                 "mfu": achieved / peak, "xla_peak_gb": xla_peak, "xla_peak_gb_per_image": xla_peak / batch,
                 "allocator_peak_gb": alloc / 1e9 if alloc else None,
                 "mmseg_gb": ref if ref and not smoke else None})
  return rows


CONV_COLUMNS = ["conv", "form", "fwd_tflop_per_s", "fwd_mfu", "dx_tflop_per_s", "dw_tflop_per_s", "fwd_bwd_ms",
                "fwd_bwd_mfu"]
MODEL_COLUMNS = ["model", "step_ms", "images_per_s", "tflop_per_s", "mfu", "xla_peak_gb", "xla_peak_gb_per_image",
                 "allocator_peak_gb", "mmseg_gb"]


def suite_rows(smoke: bool, repeats: int, dtypes=("bfloat16", "float32"), skip_convs: bool = False,
               skip_models: bool = False, log=print) -> list[dict]:
  """Every table's rows, per dtype: 'peak', 'convs', 'models'; each table printed as it completes."""
  rows = []
  n = 1024 if smoke else 8192
  for dtype_name in dtypes:
    peak = timing.matmul_peak(DTYPES[dtype_name], n, repeats)
    rows.append({"table": "peak", "dtype": dtype_name, "n": n, "flop_per_s": peak})
    log(f"\n{dtype_name} matmul peak ({n}^3): {peak / 1e12:.2f} TFLOP/s")
    if not skip_convs:
      convs = conv_rows(dtype_name, peak, smoke, repeats)
      log(table.markdown(convs, CONV_COLUMNS, title=f"\n## Convolutions, {dtype_name} (MFU vs the matmul peak); "
                                                   f"{timing.load()}"))
      rows += convs
    if not skip_models:
      models = model_rows(dtype_name, peak, smoke, repeats)
      log(table.markdown(models, MODEL_COLUMNS, title=f"\n## Training step, {dtype_name} compute, 19 classes; "
                                                      f"{timing.load()}"))
      rows += models
  verdicts = [r for r in rows if "xla_beats_ours" in r]
  if verdicts:
    log(table.markdown(verdicts, ["dtype", "conv", "form", "ours_over_xla", "xla_beats_ours"],
                       title="\n## Which custom VJPs XLA beats here (fwd+bwd; ours/XLA time > 1: keep XLA's own "
                             "gradient)"))
  return rows


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="tiny shapes: check the code paths on any backend")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--dtypes", default="bfloat16,float32")
  parser.add_argument("--skip-models", action="store_true")
  parser.add_argument("--skip-convs", action="store_true")
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  repeats = args.repeats or (2 if args.smoke else 10)
  dev = jax.devices()[0]
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind} x{jax.device_count()}, "
        f"{timing.load()}{' (smoke: tiny shapes, figures meaningless)' if args.smoke else ''}")
  if jax.default_backend() == "cpu" and not args.smoke:
    print("note: no accelerator; this suite is meant for one GPU (use --smoke to check it on CPU)")
  t_start = time.perf_counter()
  rows = suite_rows(args.smoke, repeats, tuple(args.dtypes.split(",")), args.skip_convs, args.skip_models,
                    log=lambda line: print(line, flush=True))
  print(f"\nsuite wall time {time.perf_counter() - t_start:.0f} s")
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
