"""Convolution speed: transposed convs (each form), dilated and strided convs, against Flax and PyTorch.

Run: `python -m experiments.benchmarks.conv [--quick] [--repeats 9]`

Tables (NHWC float32, batch 4; "fwd+bwd" is the output plus the VJP w.r.t. input AND kernel with a
fixed random cotangent, so the same three passes PyTorch's `y.backward(ct)` runs):
1. Transposed conv 64x64 -> 128x128, 128 -> 64 channels, kernel 4, stride 2, padding 1 (the U-Net /
   FCN upsampler): `dense_jax.ops.conv_transpose2d` with each `method`, `flax.linen.ConvTranspose`
   (padding 'SAME', same shapes), PyTorch `ConvTranspose2d` (NCHW). Figure to reach:
   our fwd+bwd at least as fast as PyTorch's (`torch/ours` >= 1).
2. FCN upsamplers (kernel 2s, stride s, 21 -> 21 channels, output 128x128), each method and PyTorch.
3. Dilated 3x3 convs, 64x64, 64 -> 64 channels, 'SAME', rates 1, 2, 4, 8, 16, each `conv2d` method
   and PyTorch. Figure to reach: rate 16 within 1.5x the time of rate 1.
4. Strided and plain 3x3 convs (U-Net / ResNet blocks) and the 7x7/2 stem, and PyTorch.
5. Stride-1 transposed convs (padding 0: output larger than input; padding 1: same size), each method.
6. `--only sweep`: 3x3 'SAME' convs over channel counts 16-256 (incl. 24->24, 48->96, 96->80, 200->136,
   72->56), sizes 32-128 and batch sizes 1-16: forward, input-gradient and weight-gradient GFLOP/s of
   XLA's autodiff ('reference') and of the blocked weight gradient ('blocked', also as a fraction of
   the matmul peak), fwd+bwd ms of 'reference' and of what `conv2d` picks ('auto'), and PyTorch's
   fwd+bwd; the worst shape's torch/ours ratio last (goal: >= 1/1.1).
"GFLOP/s" counts useful multiply-adds only (2·N·H_in·W_in·kh·kw·C_in·C_out for a transposed conv,
2·N·H_out·W_out·kh·kw·C_in·C_out for a conv; no inserted zeros, no padding taps), per pass: fwd+bwd
counts three passes. Times are medians of `--repeats` runs after a warm-up, interleaved between
rows (`timing.median_ms`); PyTorch's threads: `--torch-threads` (default every core). `--json PATH` writes
the rows and the machine record. The first
line is a 2048² float32 matmul: the machine's practical peak.

On a shared machine, PyTorch's OpenMP threads lose more to other processes than XLA's thread pool
does, which flatters our ratios; a load-robust per-core comparison runs both single-threaded:
`XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python -m experiments.benchmarks.conv --torch-threads 1`.
`--only transposed` (or fcn, dilated, convs, stride1, sweep) runs one table. Every table prints the
load average (figures from a shared machine are not speed figures; compare ratios timed in one run).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops import conv as conv_lib
from dense_jax.ops.conv import conv2d, conv_transpose2d
from experiments.benchmarks import table, timing

_BATCH = 4


@contextlib.contextmanager
def xla_conv_gradients():
  """Inside, `conv2d(method='auto')` keeps XLA's own gradients on CPU too (for an A/B of the blocked
  weight gradient in whole training steps: jit the step inside, time it anywhere)."""
  old = conv_lib._BLOCKED_MIN_CHANNELS
  conv_lib._BLOCKED_MIN_CHANNELS = 1 << 30
  try:
    yield
  finally:
    conv_lib._BLOCKED_MIN_CHANNELS = old


def _jax_pair(f, *args):
  """Callables for jitted fwd, and jitted fwd+bwd (VJP w.r.t. every argument). The cotangent is
  random and passed as an argument: a constant one would let XLA fold work at compile time."""
  fwd = jax.jit(f)
  ct = jax.random.normal(jax.random.PRNGKey(0), jax.eval_shape(f, *args).shape, jnp.float32)

  def fwd_bwd(ct, *a):
    y, vjp = jax.vjp(f, *a)
    return y, vjp(ct)
  fwd_bwd = jax.jit(fwd_bwd)
  return (lambda: jax.block_until_ready(fwd(*args)),
          lambda: jax.block_until_ready(fwd_bwd(ct, *args)))


def _torch_pair(torch, module, x_nhwc: np.ndarray):
  xt = torch.tensor(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)), requires_grad=True)
  with torch.no_grad():
    ct = torch.randn_like(module(xt))

  def fwd():
    with torch.no_grad():
      return module(xt)

  def fwd_bwd():
    module.zero_grad(set_to_none=True)
    xt.grad = None
    module(xt).backward(ct)
  return fwd, fwd_bwd


def _table(title: str, rows: dict, flops: float, baseline: str | None, repeats: int) -> list[dict]:
  """rows: name -> (fwd callable, fwd+bwd callable), timed alternately. Prints ms, GFLOP/s and
  baseline/ours; returns one row per name."""
  fns = {}
  for name, (f, fb) in rows.items():
    fns[(name, "fwd")] = f
    fns[(name, "fb")] = fb
  ms = timing.median_ms(fns, repeats)
  out = []
  for name in rows:
    f, fb = ms[(name, "fwd")], ms[(name, "fb")]
    row = {"table": title, "name": name, "fwd_ms": f, "fwd_gflop_per_s": flops / f / 1e6, "fwd_bwd_ms": fb,
           "fwd_bwd_gflop_per_s": 3 * flops / fb / 1e6}
    if baseline in rows:
      row["baseline_over_ours_fwd"] = ms[(baseline, "fwd")] / f
      row["baseline_over_ours_fwd_bwd"] = ms[(baseline, "fb")] / fb
    out.append(row)
  columns = ["name", "fwd_ms", "fwd_gflop_per_s", "fwd_bwd_ms", "fwd_bwd_gflop_per_s"]
  if baseline in rows:
    columns += ["baseline_over_ours_fwd", "baseline_over_ours_fwd_bwd"]
  print(table.markdown(out, columns, digits=2, title=f"\n{title} ({timing.load()}; baseline: {baseline or '-'})"))
  return out


def matmul_peak(repeats: int) -> float:
  """GFLOP/s of a 2048x2048 float32 matmul (`timing.matmul_peak`)."""
  return timing.matmul_peak(jnp.float32, 2048, repeats) / 1e9


def bench_transposed(repeats: int, torch):
  """Table 1: the U-Net upsampler."""
  h, ci, co, k, s, p = 64, 128, 64, 4, 2, 1
  rng = np.random.default_rng(0)
  x = rng.standard_normal((_BATCH, h, h, ci), np.float32)
  w = (rng.standard_normal((k, k, ci, co)) * 0.05).astype(np.float32)
  rows = {}
  for method in ("reference", "phase", "auto"):
    rows[f"conv_transpose2d[{method}]"] = _jax_pair(
        lambda x, w, m=method: conv_transpose2d(x, w, stride=s, padding=p, method=m), x, w)
  module = nn.ConvTranspose(co, (k, k), strides=(s, s), padding="SAME")
  params = module.init(jax.random.PRNGKey(0), x[:1])
  rows["flax.linen.ConvTranspose"] = _jax_pair(lambda params, x: module.apply(params, x), params, x)
  if torch is not None:
    rows["torch ConvTranspose2d"] = _torch_pair(torch, torch.nn.ConvTranspose2d(ci, co, k, s, p, bias=False), x)
  flops = 2 * _BATCH * h * h * k * k * ci * co
  return _table(f"Transposed conv {h}x{h}->{2 * h}x{2 * h}, {ci}->{co} ch, kernel {k}, stride {s}, pad {p}",
         rows, flops, "torch ConvTranspose2d" if torch is not None else None, repeats)


def bench_fcn(repeats: int, torch, factors):
  """Table 2: FCN's bilinear-initialised upsamplers (kernel 2s, stride s, padding s/2)."""
  c, out = 21, 128
  rng = np.random.default_rng(1)
  result = []
  for s in factors:
    h, k, p = out // s, 2 * s, s // 2
    x = rng.standard_normal((_BATCH, h, h, c), np.float32)
    w = (rng.standard_normal((k, k, c, c)) * 0.05).astype(np.float32)
    rows = {}
    for method in ("reference", "phase"):
      rows[f"conv_transpose2d[{method}]"] = _jax_pair(
          lambda x, w, m=method, s=s, p=p: conv_transpose2d(x, w, stride=s, padding=p, method=m), x, w)
    if torch is not None:
      rows["torch ConvTranspose2d"] = _torch_pair(torch, torch.nn.ConvTranspose2d(c, c, k, s, p, bias=False), x)
    flops = 2 * _BATCH * h * h * k * k * c * c
    result += _table(f"FCN upsampler x{s}: {h}x{h}->{out}x{out}, {c} ch, kernel {k}, stride {s}, pad {p}",
                     rows, flops, "torch ConvTranspose2d" if torch is not None else None, repeats)
  return result


def bench_dilated(repeats: int, torch, rates):
  """Table 3: 3x3 convs at growing dilation rates ('SAME')."""
  h, c = 64, 64
  rng = np.random.default_rng(2)
  x = rng.standard_normal((_BATCH, h, h, c), np.float32)
  w = (rng.standard_normal((3, 3, c, c)) * 0.05).astype(np.float32)
  flops = 2 * _BATCH * h * h * 9 * c * c
  rows = {}
  for d in rates:
    rows[f"conv2d dilation {d}"] = _jax_pair(
        lambda x, w, d=d: conv2d(x, w, padding=d, dilation=d), x, w)
    if torch is not None:
      rows[f"torch Conv2d dilation {d}"] = _torch_pair(
          torch, torch.nn.Conv2d(c, c, 3, padding=d, dilation=d, bias=False), x)
  result = _table(f"Dilated 3x3 conv {h}x{h}, {c}->{c} ch (ours: one lax conv with rhs_dilation)",
                  rows, flops, None, repeats)
  ms = {(r["name"], k): r[f"{v}_ms"] for r in result for k, v in (("fwd", "fwd"), ("fb", "fwd_bwd"))}
  top, one = max(rates), min(rates)
  for who in ("conv2d", "torch Conv2d"):
    if f"{who} dilation {top}" in rows:
      print(f"  {who}: rate {top} / rate {one} time: fwd "
            f"{ms[(f'{who} dilation {top}', 'fwd')] / ms[(f'{who} dilation {one}', 'fwd')]:.2f}, fwd+bwd "
            f"{ms[(f'{who} dilation {top}', 'fb')] / ms[(f'{who} dilation {one}', 'fb')]:.2f}")
  return result


def bench_convs(repeats: int, torch):
  """Table 4: U-Net / ResNet convolutions."""
  rng = np.random.default_rng(3)
  cases = [  # (name, H_in, C_in, C_out, kernel, stride, padding)
      ("3x3/1 64x64 64->64", 64, 64, 64, 3, 1, 1),
      ("3x3/2 128x128 64->128", 128, 64, 128, 3, 2, 1),
      ("7x7/2 stem 128x128 3->64", 128, 3, 64, 7, 2, 3),
  ]
  result = []
  for name, h, ci, co, k, s, p in cases:
    x = rng.standard_normal((_BATCH, h, h, ci), np.float32)
    w = (rng.standard_normal((k, k, ci, co)) * 0.05).astype(np.float32)
    rows = {"conv2d": _jax_pair(lambda x, w, s=s, p=p: conv2d(x, w, stride=s, padding=p), x, w)}
    if torch is not None:
      rows["torch Conv2d"] = _torch_pair(torch, torch.nn.Conv2d(ci, co, k, s, p, bias=False), x)
    ho = (h + 2 * p - k) // s + 1
    flops = 2 * _BATCH * ho * ho * k * k * ci * co
    result += _table(f"Conv {name}", rows, flops, "torch Conv2d" if torch is not None else None, repeats)
  return result


# (N, H, W, C_in, C_out): channel counts 16-256 incl. non-multiples of 8/16, sizes, batch sizes.
SWEEP = [
    (4, 64, 64, 16, 16), (4, 64, 64, 24, 24), (4, 64, 64, 32, 32), (4, 64, 64, 64, 64), (4, 64, 64, 128, 128),
    (4, 64, 64, 256, 256), (4, 64, 64, 48, 96), (3, 88, 72, 96, 80), (2, 60, 60, 24, 40),
    (4, 32, 32, 200, 136), (2, 50, 46, 72, 56), (16, 64, 64, 16, 16), (2, 128, 128, 64, 64),
    (1, 128, 128, 128, 128), (8, 32, 32, 256, 256), (16, 32, 32, 64, 64),
]
SWEEP_QUICK = [(4, 64, 64, 32, 32), (4, 64, 64, 128, 128), (3, 88, 72, 96, 80), (16, 64, 64, 16, 16)]


def _conv_passes(x, w, method, **kw):
  """Callables for the forward, the input gradient alone, the weight gradient alone, and fwd+bwd
  (both gradients), each jitted; cotangent random."""
  f = lambda x, w: conv2d(x, w, method=method, **kw)
  ct = jax.random.normal(jax.random.PRNGKey(0), jax.eval_shape(f, x, w).shape, jnp.float32)
  fwd = jax.jit(f)
  dx = jax.jit(lambda x, w, ct: jax.vjp(lambda v: f(v, w), x)[1](ct))
  dw = jax.jit(lambda x, w, ct: jax.vjp(lambda v: f(x, v), w)[1](ct))
  fb = jax.jit(lambda x, w, ct: jax.vjp(f, x, w)[1](ct))
  block = jax.block_until_ready
  return {"fwd": lambda: block(fwd(x, w)), "dx": lambda: block(dx(x, w, ct)),
          "dw": lambda: block(dw(x, w, ct)), "fb": lambda: block(fb(x, w, ct))}


def bench_sweep(repeats: int, torch, shapes, peak: float, kernel=3, stride=1, dilation=1):
  """Table 6: 3x3 'SAME' conv, per pass, per form, over channel counts / sizes / batch sizes; the
  worst shape's fwd+bwd against PyTorch's. Each row's callables are timed alternately."""
  print(f"\nConv {kernel}x{kernel}/{stride} dilation {dilation} 'SAME' sweep: GFLOP/s per pass (ref = XLA's "
        f"autodiff, blk = the blocked weight gradient, auto = what conv2d picks here; blk/peak = blk dw "
        f"GFLOP/s / the matmul peak {peak:.0f}); fwd+bwd ms and torch/ours (>1: ours faster). "
        f"load average {os.getloadavg()[0]:.1f}")
  print(f"{'N,H,W,Cin->Cout':22s} {'fwd':>6s} {'dx':>6s} {'dw ref':>7s} {'dw blk':>7s} {'blk/peak':>8s} "
        f"{'fb ref ms':>10s} "
        f"{'fb auto ms':>10s} {'torch ms':>9s} {'torch/auto':>10s} {'load':>5s}")
  rng = np.random.default_rng(6)
  worst = None
  result = []
  for n, h, wd, ci, co in shapes:
    x = rng.standard_normal((n, h, wd, ci), np.float32)
    w = (rng.standard_normal((kernel, kernel, ci, co)) * 0.05).astype(np.float32)
    kw = dict(stride=stride, padding="SAME", dilation=dilation)
    ref, blk = _conv_passes(x, w, "reference", **kw), _conv_passes(x, w, "blocked", **kw)
    auto = _conv_passes(x, w, "auto", **kw)
    fns = {**{("ref", k): v for k, v in ref.items()}, ("blk", "dw"): blk["dw"], ("auto", "fb"): auto["fb"]}
    if torch is not None:
      module = torch.nn.Conv2d(ci, co, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation,
                               bias=False)
      fns[("torch", "fb")] = _torch_pair(torch, module, x)[1]
    ms = timing.median_ms(fns, repeats)
    ho, wo = -(-h // stride), -(-wd // stride)
    flops = 2 * n * ho * wo * kernel * kernel * ci * co
    gf = lambda key: flops / ms[key] / 1e6
    line = (f"{f'{n},{h},{wd},{ci}->{co}':22s} {gf(('ref', 'fwd')):6.0f} {gf(('ref', 'dx')):6.0f} "
            f"{gf(('ref', 'dw')):7.0f} {gf(('blk', 'dw')):7.0f} {gf(('blk', 'dw')) / peak:8.0%} "
            f"{ms[('ref', 'fb')]:10.1f} {ms[('auto', 'fb')]:10.1f}")
    if ("torch", "fb") in ms:
      ratio = ms[("torch", "fb")] / ms[("auto", "fb")]
      line += f" {ms[('torch', 'fb')]:9.1f} {ratio:10.2f}"
      if worst is None or ratio < worst[1]:
        worst = ((n, h, wd, ci, co), ratio)
    print(line + f" {os.getloadavg()[0]:5.1f}", flush=True)
    result.append({"table": "sweep", "shape": [n, h, wd, ci, co], "flops": flops,
                   **{f"{form}_{pass_}_ms": v for (form, pass_), v in ms.items()}})
  if worst:
    print(f"  worst shape fwd+bwd torch/ours: {worst[0]} -> {worst[1]:.2f} (the goal: >= 1/1.1 = 0.91)")
  return result


def bench_stride1_transposed(repeats: int):
  """Table 5: stride-1 transposed convs, where 'phase' only takes over when the output grows."""
  rng = np.random.default_rng(4)
  x = rng.standard_normal((_BATCH, 64, 64, 64), np.float32)
  w = (rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32)
  result = []
  for p in (0, 1):
    rows = {f"conv_transpose2d[{m}]": _jax_pair(
        lambda x, w, m=m, p=p: conv_transpose2d(x, w, stride=1, padding=p, method=m), x, w)
            for m in ("reference", "phase")}
    flops = 2 * _BATCH * 64 * 64 * 9 * 64 * 64
    result += _table(f"Transposed conv 3x3, stride 1, padding {p}, 64x64, 64->64 ch", rows, flops, None, repeats)
  return result


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats and cases")
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--only", choices=("transposed", "fcn", "dilated", "convs", "stride1", "sweep"))
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  repeats = 3 if args.quick else args.repeats
  torch = None if args.no_torch else timing.torch_or_none(args.torch_threads)
  print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} cores, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
        f"torch {torch.__version__ + f' ({args.torch_threads} threads)' if torch else 'absent'}; "
        f"load average {os.getloadavg()[0]:.1f}")
  peak = matmul_peak(repeats)
  print(f"2048x2048 f32 matmul: {peak:.1f} GFLOP/s (practical peak)")
  tables = {
      "transposed": lambda: bench_transposed(repeats, torch),
      "fcn": lambda: bench_fcn(repeats, torch, (8,) if args.quick else (2, 8, 16)),
      "dilated": lambda: bench_dilated(repeats, torch, (1, 16) if args.quick else (1, 2, 4, 8, 16)),
      "convs": lambda: bench_convs(repeats, torch),
      "stride1": lambda: bench_stride1_transposed(repeats),
      "sweep": lambda: bench_sweep(repeats, torch, SWEEP_QUICK if args.quick else SWEEP, peak),
  }
  rows = [{"table": "peak", "gflop_per_s": peak}]
  for name, run in tables.items():
    if (args.only == name) if args.only else (not args.quick or name in ("transposed", "fcn", "dilated", "sweep")):
      rows += run()
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
