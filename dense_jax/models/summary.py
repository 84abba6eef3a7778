"""Print a model's parameter count and GFLOPs per image.

    python -m dense_jax.models.summary --model fcn8s [--size 512] [--num-classes 21]
    python -m dense_jax.models.summary --model all --size 256      # every registered model

GFLOPs come from XLA's cost analysis of the jitted inference program on the current backend
(`dense_jax.models.flops`); a multiply-add counts 2 FLOPs.
"""

from __future__ import annotations

import argparse
import sys

from dense_jax.models import flops
from dense_jax.models.registry import available_models, get_model


def summarize(name: str, size: int, num_classes: int | None, batch: int = 1, with_flops: bool = True) -> dict:
  kwargs = {} if num_classes is None else {"num_classes": num_classes}
  model = get_model(name, **kwargs)
  shape = (batch, size, size, 3)
  row = {"model": name, "size": size, **flops.param_counts(model, shape)}
  if with_flops:
    row["gflops"] = flops.inference_flops(model, shape) / 1e9
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help="a registered name, or 'all'")
  parser.add_argument("--size", type=int, default=512, help="square input size in pixels")
  parser.add_argument("--num-classes", type=int, default=None, help="default: the model's own (21 for the zoo)")
  parser.add_argument("--no-flops", action="store_true", help="parameters only (no compilation)")
  args = parser.parse_args(argv)
  names = available_models() if args.model == "all" else [args.model]
  print(f"{'model':28s} {'size':>5s} {'params':>14s} {'bn state':>10s} {'GFLOPs/img':>11s}")
  status = 0
  for name in names:
    try:
      row = summarize(name, args.size, args.num_classes, with_flops=not args.no_flops)
    except ValueError as e:  # e.g. an input size the architecture cannot take
      print(f"{name:28s} {args.size:5d}  error: {e}")
      status = 1
      continue
    gf = f"{row['gflops']:11.2f}" if "gflops" in row else f"{'-':>11s}"
    print(f"{name:28s} {row['size']:5d} {row['params']:14,d} {row['state']:10,d} {gf}")
    sys.stdout.flush()
  return status


if __name__ == "__main__":
  raise SystemExit(main())
