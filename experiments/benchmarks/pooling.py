"""Argmax pooling + max-unpooling against plain max pooling, forward and forward+backward.

Run: `python -m experiments.benchmarks.pooling [--quick] [--repeats 20]`

Input: batch 4, 64×64, 64 channels (NHWC, float32). Rows:
- `flax max_pool`: `flax.linen.max_pool` (lax.reduce_window; its gradient is XLA's select-and-scatter);
- `argmax pool`: `dense_jax.ops.max_pool_with_argmax` alone;
- `argmax pool + unpool`: pooling, then `max_unpool` back to 64×64 (the SegNet pair);
- `torch pool+unpool`: `max_pool2d(return_indices=True)` + `max_unpool2d` (NCHW), when torch is installed.
"fwd+bwd" is the output and the VJP with a fixed cotangent. Each time is the median of `--repeats`
runs after a warm-up, with `block_until_ready`. "scatter" says whether the fwd+bwd program has a
scatter or select-and-scatter, before or after XLA's passes. The figure to reach:
"argmax pool + unpool" fwd+bwd within 2× of "flax max_pool" fwd+bwd, with no scatter.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops._hlo import has_scatter
from dense_jax.ops.pooling import max_pool_with_argmax, max_unpool
from experiments.benchmarks import timing


def _fwd_bwd(f):
  """x, ct -> (f(x), vjp(ct)) jitted: one forward and one backward pass."""
  def run(x, ct):
    y, vjp = jax.vjp(f, x)
    return y, vjp(ct)[0]
  return jax.jit(run)


def _cases(window: int, stride: int, padding: int, size: int):
  def plain(x):
    return nn.max_pool(x, (window, window), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)))

  def pool(x):
    return max_pool_with_argmax(x, window, stride, padding)[0]

  def pool_unpool(x):
    y, idx = max_pool_with_argmax(x, window, stride, padding)
    return max_unpool(y, idx, window, stride, padding, output_size=(size, size))

  return {"flax max_pool": plain, "argmax pool": pool, "argmax pool + unpool": pool_unpool}


def _torch_ms(x: np.ndarray, window, stride, padding, repeats: int):
  torch = timing.torch_or_none()
  if torch is None:
    return None
  xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous()
  size = xt.shape[-2:]

  def fwd():
    with torch.no_grad():
      y, idx = torch.nn.functional.max_pool2d(xt, window, stride, padding, return_indices=True)
      return torch.nn.functional.max_unpool2d(y, idx, window, stride, padding, output_size=size)

  ct = torch.ones(xt.shape)

  def fwd_bwd():
    xg = xt.detach().requires_grad_()
    y, idx = torch.nn.functional.max_pool2d(xg, window, stride, padding, return_indices=True)
    out = torch.nn.functional.max_unpool2d(y, idx, window, stride, padding, output_size=size)
    out.backward(ct)
    return xg.grad

  ms = timing.median_ms({"fwd": fwd, "fwd+bwd": fwd_bwd}, repeats)
  return ms["fwd"], ms["fwd+bwd"]


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small input, few repeats (smoke run)")
  parser.add_argument("--repeats", type=int, default=None)
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  batch, size, channels = (2, 16, 8) if args.quick else (4, 64, 64)
  repeats = args.repeats or (3 if args.quick else 30)
  rng = np.random.default_rng(0)
  x_np = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
  x = jnp.asarray(x_np)
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), input {x.shape} float32, "
        f"median of {repeats}")
  rows = []
  for window, stride, padding in [(2, 2, 0), (3, 2, 1)]:
    print(f"\nwindow {window}, stride {stride}, padding {padding}")
    print(f"{'op':<24}{'fwd ms':>10}{'fwd+bwd ms':>12}{'vs flax':>9}  scatter")
    base = None
    for name, f in _cases(window, stride, padding, size).items():
      fwd = jax.jit(f)
      both = _fwd_bwd(f)
      ct = jnp.ones(jax.eval_shape(f, x).shape, x.dtype)
      ms = timing.median_ms({"fwd": timing.blocking(fwd, x), "both": timing.blocking(both, x, ct)}, repeats)
      t_fwd, t_both = ms["fwd"], ms["both"]
      base = t_both if base is None else base
      scatter = has_scatter(both, x, ct)
      print(f"{name:<24}{t_fwd:>10.3f}{t_both:>12.3f}{t_both / base:>8.2f}x  {'yes' if scatter else 'no'}")
      rows.append({"window": window, "stride": stride, "padding": padding, "op": name, "fwd_ms": t_fwd,
                   "fwd_bwd_ms": t_both, "vs_flax": t_both / base, "scatter": scatter})
    torch_ms = _torch_ms(x_np, window, stride, padding, repeats)
    if torch_ms is not None:
      print(f"{'torch pool+unpool':<24}{torch_ms[0]:>10.3f}{torch_ms[1]:>12.3f}{torch_ms[1] / base:>8.2f}x  "
            f"n/a")
      rows.append({"window": window, "stride": stride, "padding": padding, "op": "torch pool+unpool",
                   "fwd_ms": torch_ms[0], "fwd_bwd_ms": torch_ms[1], "vs_flax": torch_ms[1] / base, "scatter": None})
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
