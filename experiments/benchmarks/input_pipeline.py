"""Examples/s of the training input pipeline for `dense_shapes` (64x64 and 256x256), by stage.

Run: `python -m experiments.benchmarks.input_pipeline [--configs small_64,large_256] [--data_dir DIR]
      [--batch 32] [--threads 2] [--seconds 10] [--quick]`

Prepares each config's TFDS files first if they are absent (the time is reported; `--data_dir`
defaults to the usual TFDS data dir). Rows, each in examples per second (median over 3 timed windows
of `--seconds / 3` after one warm-up batch):
- `read`: random access to the prepared ArrayRecord files (decode only), one thread;
- `read+augment`: the same plus the training augmentation (jitter, scale, crop, flip), one thread;
- `pipeline all keys`: `create_iterator(..., train=True)` with every label, `--threads` threads;
- `pipeline image+semantic`: the same with `keys=('image', 'semantic')`, what a segmentation run reads;
- `U-Net train step` (with `--unet`): what the pipeline must outrun, the examples/s of a jitted
  training step (forward, backward, SGD) of the quick U-Net (width 16, depth 3, 'same' padding, no
  norm) at the config's resolution, batch `--batch`, on the same CPU.
`--quick` runs 2 s per row and small_64 only (a smoke test on a busy machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dense_jax import data
from dense_jax.data import augment as augment_lib, dense_shapes, sources
from experiments.benchmarks import timing


def bench_config(name: str, args) -> list[tuple[str, str, float]]:
  cfg = dense_shapes.CONFIGS[name]
  t0 = time.perf_counter()
  was_prepared = dense_shapes.source._builder(cfg, args.data_dir).is_prepared()
  dense_shapes.prepare(cfg, args.data_dir)
  prep = time.perf_counter() - t0
  rows = [(name, "prepare (s)" if not was_prepared else "open (s, already prepared)", prep)]
  full = f"dense_shapes/{name}"
  info = sources.dataset_info(full)
  src = sources.get_source(full, "train", args.data_dir)
  rng = np.random.default_rng(0)
  size = info.image_size

  def read():
    src[int(rng.integers(len(src)))]

  def read_aug():
    ex = src[int(rng.integers(len(src)))]
    augment_lib.random_augment(ex, rng, size, keypoint_flip_perm=info.keypoint_flip_perm)

  rows.append((name, "read", timing.rate_per_s(read, 1, args.seconds)))
  rows.append((name, "read+augment", timing.rate_per_s(read_aug, 1, args.seconds)))
  for label, keys in (("pipeline all keys", None), ("pipeline image+semantic", ("image", "semantic"))):
    it = data.create_iterator(full, "train", global_batch_size=args.batch, seed=0, train=True,
                              data_dir=args.data_dir, process_index=0, process_count=1, keys=keys,
                              num_threads=args.threads, prefetch=max(2 * args.batch, 8))
    rows.append((name, f"{label} ({args.threads} threads)", timing.rate_per_s(lambda: next(it), args.batch,
                                                                  args.seconds)))
    it.close()
  return rows


def unet_rate(size: int, num_classes: int, args) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import optax

  from dense_jax.models import get_model
  model = get_model("unet", num_classes=num_classes, width=16, depth=3, padding="same")
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(args.batch, size, size, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_classes, size=(args.batch, size, size)), jnp.int32)
  params = model.init(jax.random.key(0), images[:1])

  @jax.jit
  def step(params, images, labels):
    def loss_fn(p):
      logits = model.apply(p, images, train=True)["semantic"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    grads = jax.grad(loss_fn)(params)
    return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

  state = {"p": params}

  def run():
    state["p"] = jax.block_until_ready(step(state["p"], images, labels))
  return timing.rate_per_s(run, args.batch, args.seconds)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="small_64,large_256")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--seconds", type=float, default=9.0)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--unet", action="store_true", help="also time a U-Net training step")
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  configs = args.configs.split(",")
  if args.quick:
    configs, args.seconds = ["small_64"], 2.0
  rows = []
  for c in configs:
    rows += bench_config(c, args)
    if args.unet:
      info = sources.dataset_info(f"dense_shapes/{c}")
      rows.append((c, f"U-Net train step (batch {args.batch})",
                   unet_rate(info.image_size[0], info.num_classes, args)))
  print(f"{'config':<12} {'stage':<42} {'value':>10}")
  for cfg, stage, value in rows:
    unit = "" if "(s" in stage else " ex/s"
    print(f"{cfg:<12} {stage:<42} {value:>10.1f}{unit}")
  rows = [{"config": cfg, "stage": stage, "value": value, "unit": "s" if "(s" in stage else "examples/s"}
          for cfg, stage, value in rows]
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
