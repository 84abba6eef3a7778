"""Peak training memory of the UberNet-style multi-task model with 1 task against 5 tasks.

    python -m experiments.benchmarks.multitask_memory                      # narrow, 2 x 128 x 128
    python -m experiments.benchmarks.multitask_memory --model multitask --batch 8 --size 256

For each configuration it compiles one training step (forward, the sum of one simple loss per task,
backward: `jax.value_and_grad` over the parameters) with `jax.jit(...).lower(...).compile()` and prints
XLA's `memory_analysis()`: `temp` (the scratch buffers the step allocates: activations kept for the
backward pass and the working set — the figure that grows with tasks), `args` (parameters, batch
statistics, images), `output` (the gradients), and `peak = temp + args + output - aliased`. Nothing runs
on the device; figures are those of the backend's compiler (CPU here unless JAX sees an accelerator).
With `--no-remat` the trunk and heads keep every activation, for comparison.

`--time` also runs each compiled step on random weights and images (meant for an accelerator):
images/s (median of `--repeats` steps after a warm-up, the 1-task and 5-task steps timed alternately)
and the allocator's peak (`memory_stats()['peak_bytes_in_use']`, cumulative over the process: the
1-task step runs alone first, so its figure is its own). `--dtype bfloat16` sets the compute dtype
(parameters stay float32).

    python -m experiments.benchmarks.multitask_memory --model multitask --batch 8 --size 256 --time
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.models._dense_tasks import ALL_TASKS
from dense_jax.models._random import random_variables
from dense_jax.models.registry import get_model
from experiments.benchmarks import timing


def simple_loss(outputs):
  """A stand-in loss touching every output: the mean square of each (the real task losses cost the
  same memory order: one output-sized map each)."""
  return sum(jnp.mean(jnp.square(y.astype(jnp.float32))) for y in outputs.values())


def compiled_training_step(model, shape):
  """One forward + backward step of `model` on images of `shape`, compiled: (compiled, abstract args)."""
  x = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)

  def step(params, stats, images):
    def loss_fn(p):
      outputs, updates = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                                     mutable=["batch_stats"])
      return simple_loss(outputs), updates["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, stats, grads

  return jax.jit(step).lower(variables["params"], variables.get("batch_stats", {}), x).compile()


def memory_figures(compiled) -> dict[str, int]:
  """XLA's memory analysis (bytes) of a compiled step (`timing.memory_bytes`); peak = temp + args + output - aliased."""
  return timing.memory_bytes(compiled)


def training_step_memory(model, shape) -> dict[str, int]:
  """XLA's memory analysis (bytes) of one compiled forward + backward step of `model` on `shape`."""
  return memory_figures(compiled_training_step(model, shape))


def compare(model_name: str, shape, remat: bool = True, **model_kwargs) -> dict[str, dict[str, int]]:
  """Memory of the 1-task (semantic) and the 5-task model."""
  result = {}
  for label, tasks in (("1 task", ("semantic",)), ("5 tasks", ALL_TASKS)):
    # gray_input fixed so that both models see the same input and differ only by their heads.
    model = get_model(model_name, tasks=tasks, remat=remat, gray_input=True, **model_kwargs)
    result[label] = training_step_memory(model, shape)
  return result


def time_steps(models: dict, shape, repeats: int) -> dict[str, dict]:
  """Per label: step ms (median, the steps timed alternately), images/s, XLA's and the allocator's peak."""
  runs, result = {}, {}
  for label, model in models.items():
    compiled = compiled_training_step(model, shape)
    variables = random_variables(model, shape)
    images = jnp.asarray(np.random.default_rng(0).uniform(size=shape), jnp.float32)
    args = (variables["params"], variables.get("batch_stats", {}), images)
    run = lambda compiled=compiled, args=args: jax.block_until_ready(compiled(*args))
    run()   # warm-up; the allocator's peak now includes this step
    result[label] = {**memory_figures(compiled), "allocator_peak": timing.allocator_peak_bytes()}
    runs[label] = run
  for label, ms in timing.median_ms(runs, repeats).items():
    result[label].update(step_ms=ms, images_per_s=shape[0] / ms * 1e3)
  return result


def rows_of(result: dict) -> list[dict]:
  """`compare` / `time_steps` results as rows: one per configuration, its label under 'tasks'."""
  return [{"tasks": label, **m} for label, m in result.items()]


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="multitask_narrow")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--num-classes", type=int, default=9)
  parser.add_argument("--no-remat", action="store_true")
  parser.add_argument("--time", action="store_true", help="also run and time the steps (images/s, allocator peak)")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  shape = (args.batch, args.size, args.size, 3)
  print(f"{args.model}, input {shape}, backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"remat={not args.no_remat}, compute {args.dtype}, {timing.load()}")
  model_kwargs = dict(num_classes=args.num_classes, dtype=jnp.dtype(args.dtype))
  if args.time:
    models = {label: get_model(args.model, tasks=tasks, remat=not args.no_remat, gray_input=True, **model_kwargs)
              for label, tasks in (("1 task", ("semantic",)), ("5 tasks", ALL_TASKS))}
    result = time_steps(models, shape, args.repeats)
  else:
    result = compare(args.model, shape, remat=not args.no_remat, **model_kwargs)
  mib = lambda b: f"{b / 2 ** 20:9.1f} MiB"
  for label, m in result.items():
    timed = (f"  {m['step_ms']:.1f} ms/step, {m['images_per_s']:.1f} images/s, allocator peak "
             f"{mib(m['allocator_peak']) if m['allocator_peak'] else 'n/a'}") if "step_ms" in m else ""
    print(f"  {label:8s} peak {mib(m['peak'])}  (temp {mib(m['temp'])}, args {mib(m['args'])}, "
          f"output {mib(m['output'])}){timed}")
  ratio = result["5 tasks"]["peak"] / result["1 task"]["peak"]
  temp_ratio = result["5 tasks"]["temp"] / result["1 task"]["temp"]
  print(f"  5 tasks / 1 task: peak x{ratio:.2f}, temp x{temp_ratio:.2f}")
  rows = rows_of(result)
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
