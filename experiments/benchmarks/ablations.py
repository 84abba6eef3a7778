"""Step time, memory and FLOPs of every variant of the ablation sweeps, measured side by side.

    python -m experiments.benchmarks.ablations                            # the three quick sweeps
    python -m experiments.benchmarks.ablations --experiment dilation --steps 20 --repeats 5
    python -m experiments.benchmarks.ablations --experiment rf --arg ""   # the full configs' models

The `steps_per_sec` a sweep's runs log are measured while the runs train one after another, each with
its own input pipeline and whatever else the machine does meanwhile; this benchmark times the train
steps alone and interleaved, so variants of one sweep are compared under the same conditions.

For each run of the experiment's sweep (its overrides applied to the config of `--arg`, default
'quick'): the trainer's own train step (`dense_jax.train.loop.make_train_step`: forward, backward,
AdamW update; batch-norm in training mode) jitted with the state donated, on a fixed random batch of
the config's batch size and image size. Reported: ms per step (median over `--repeats` interleaved
rounds of `--steps` steps, after one warm-up round), images/s, `train_mb` (XLA's memory analysis of
the compiled step: arguments + outputs + temporaries - donated aliases) and inference GFLOPs per image
(`dense_jax.models.flops`). On a shared machine the absolute numbers move; the ratios are the point.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.benchmarks import timing

EXPERIMENTS = {
    "dilation": "experiments/dilation_vs_downsampling.py",
    "rf": "experiments/receptive_field.py",
    "upsampling": "experiments/upsampling.py",
}
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _apply(config, overrides: dict):
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _compiled_step(config):
  # pylint: disable=g-import-not-at-top
  from dense_jax.tools import restore
  from dense_jax.train import config as config_lib, loop, optimizers
  from dense_jax.train.state import init_train_state
  from experiments.ablation_common import train_step_memory_mb
  config = config_lib.resolve(config)
  model, info, size = restore.build_model(config)
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.total_steps)
  b = config.batch_size
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((b, *size, 3), np.float32)),
           "semantic": jnp.asarray(rng.integers(0, info.num_classes, (b, *size)), jnp.int32)}
  state = jax.jit(lambda r: init_train_state(model, tx, r, batch["image"][:1]))(jax.random.PRNGKey(0))
  step = jax.jit(loop.make_train_step(model, tx, schedule, False), donate_argnums=(0,))
  return model, size, b, step, state, batch, train_step_memory_mb(config, model, size)


def benchmark(experiment: str, arg: str, steps: int, repeats: int) -> list[dict]:
  from dense_jax.models import flops  # pylint: disable=g-import-not-at-top
  from experiments import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  path = str(REPO_ROOT / EXPERIMENTS[experiment])
  spec = f"{path}:{arg}" if arg else path
  module = sweep_lib.load_module(path)
  runs = sweep_lib.collect_runs(spec)
  variants = []
  for run in runs:
    config = _apply(module.get_config(run.arg), run.overrides)
    model, size, b, step, state, batch, mb = _compiled_step(config)
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    variants.append(dict(name=run.name, step=step, state=state, batch=batch, batch_size=b, train_mb=mb,
                         gflops=flops.inference_flops(model, (1, *size, 3)) / 1e9))
  def runner(v):
    def run():
      state = v["state"]
      for _ in range(steps):
        state, metrics = v["step"](state, v["batch"])
      jax.block_until_ready(metrics)
      v["state"] = state
    return run
  ms = timing.median_ms({v["name"]: runner(v) for v in variants}, repeats, warmup=1)   # one warm-up round
  rows = []
  for v in variants:
    step_ms = ms[v["name"]] / steps
    rows.append({"variant": v["name"], "ms/step": step_ms, "images/s": v["batch_size"] / step_ms * 1e3,
                 "train_mb": v["train_mb"], "gflops": v["gflops"]})
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--experiment", choices=sorted(EXPERIMENTS) + ["all"], default="all")
  parser.add_argument("--arg", default="quick", help="the experiment files' argument ('' = full mode)")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  all_rows = []
  names = sorted(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
  print(f"backend {jax.default_backend()}, {jax.device_count()} device(s); median of {args.repeats} "
        f"interleaved rounds of {args.steps} steps")
  for name in names:
    rows = benchmark(name, args.arg, args.steps, args.repeats)
    all_rows += [{"experiment": name, **r} for r in rows]
    print(f"\n{name} ({EXPERIMENTS[name]}:{args.arg})")
    print(f"{'variant':<14}{'ms/step':>10}{'images/s':>10}{'train_mb':>10}{'GFLOPs/img':>12}")
    for r in rows:
      print(f"{r['variant']:<14}{r['ms/step']:>10.1f}{r['images/s']:>10.1f}{r['train_mb']:>10.1f}"
            f"{r['gflops']:>12.4f}")
  if args.json:
    timing.write_json(args.json, all_rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
