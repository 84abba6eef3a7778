"""Training-step benchmark of the quick U-Net: JAX vs the same network in PyTorch, memory, halo exchange.

    python -m experiments.benchmarks.train_step                 # all three parts
    python -m experiments.benchmarks.train_step --part speed --steps 30 [--ab-conv-vjp]
    python -m experiments.benchmarks.train_step --part memory   # peak memory of one step, 256x256 batch 8
    python -m experiments.benchmarks.train_step --part hlo      # spatial partitioning: collectives in the HLO
    python -m experiments.benchmarks.train_step --part flops    # achieved FLOP/s vs matmul peak, f32/bf16

speed: images/s of one full training step (forward, backward, AdamW update; batch-norm in training
  mode; cross-entropy with the ignore label) of the quick config's U-Net
  (`experiments/unet_dense_shapes.py:quick`) on 1 JAX CPU device and data-parallel on the quick config's
  `cpu_devices` (one device per core: XLA:CPU spreads one device's small ops poorly over cores), and of
  `experiments/benchmarks/torch_unet.TorchUNet` with the same layers, batch, resolution and optimizer.
  PyTorch runs with 1 and with all cores' intra-op
  threads (on a busy machine OpenMP's spinning threads can make 2 threads slower than 1) and the better
  one is compared. Median over `--repeats` interleaved rounds of `--steps` steps each after warm-up.
  Ratio = JAX / best PyTorch (≥ 1 means JAX is faster).
memory: XLA's `compiled.memory_analysis()` of the jitted step at 256×256, batch 8: arguments (state +
  batch), outputs, temporaries and the peak estimate (arguments + outputs + temporaries − donated
  aliases).
flops (run by default only on a GPU/TPU): the step's FLOPs from XLA's cost analysis divided by its
  measured time, against the measured FLOP/s of a 2048³ matmul, with float32 and with bfloat16 compute
  (`compute_dtype`, float32 parameters), at `--flops_size` (256).
hlo: the step compiled for a (data=2, model=4) mesh of 8 fake CPU devices with spatial partitioning
  (image height over 'model'); counts the collective ops of the optimised HLO. Activations crossing
  device boundaries show up as `collective-permute` (halo exchange with the neighbouring band);
  `all-gather`s of activations would mean whole maps are replicated. Runs in a subprocess because the
  fake-device flag must be set before JAX starts.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time

import numpy as np

from experiments.benchmarks import timing


def _quick_config(overrides: str = ""):
  from experiments import unet_dense_shapes  # pylint: disable=g-import-not-at-top
  return unet_dense_shapes.get_config("quick" + ("," + overrides if overrides else ""))


def _jax_step(config, batch: int, size: int, num_classes: int, num_devices: int = 1):
  """(jitted step, state, batch) as the trainer builds them, data-parallel over the first
  `num_devices` devices (batch-norm statistics and gradients over the whole batch)."""
  # pylint: disable=g-import-not-at-top
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P

  from dense_jax.models import get_model
  from dense_jax.train import loop, optimizers, sharding
  from dense_jax.train.state import init_train_state
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = get_model(config.model.name, num_classes=num_classes, **kwargs)
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.total_steps)
  mesh = sharding.make_mesh((num_devices, 1), jax.devices()[:num_devices])
  rng = np.random.default_rng(0)
  local = {"image": rng.uniform(size=(batch, size, size, 3)).astype(np.float32),
           "semantic": rng.integers(0, num_classes, size=(batch, size, size)).astype(np.int32)}
  data = sharding.to_global(local, mesh)
  sample = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
  init = lambda r: init_train_state(model, tx, r, sample)
  state_sharding = sharding.tree_shardings(jax.eval_shape(init, jax.random.PRNGKey(0)), mesh, ((".*", "replicated"),))
  state = jax.jit(init, out_shardings=state_sharding)(jax.random.PRNGKey(0))
  batch_sharding = {k: NamedSharding(mesh, s) for k, s in sharding.batch_specs(False).items()}
  step = jax.jit(loop.make_train_step(model, tx, schedule, spatial=False),
                 in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, NamedSharding(mesh, P())), donate_argnums=(0,))
  return step, state, data


def jax_runner(config, batch, size, num_classes, steps, num_devices=1):
  """A function that runs `steps` JAX training steps and returns the seconds they took."""
  import jax  # pylint: disable=g-import-not-at-top
  step, state, data = _jax_step(config, batch, size, num_classes, num_devices)
  box = {"state": state}

  def run(n=steps):
    t = time.perf_counter()
    for _ in range(n):
      box["state"], metrics = step(box["state"], data)
    jax.block_until_ready((box["state"], metrics))
    return time.perf_counter() - t

  run(3)   # compile + warm up
  return run


def torch_runner(config, batch, size, num_classes, steps, threads):
  """The same for the PyTorch U-Net with `threads` intra-op threads."""
  # pylint: disable=g-import-not-at-top
  import torch

  from experiments.benchmarks.torch_unet import TorchUNet
  m, opt = config.model, config.optimizer
  torch.manual_seed(0)
  net = TorchUNet(num_classes=num_classes, width=m.width, depth=m.depth, padding=m.padding, up=m.up,
                  norm=m.norm).train()
  optimizer = torch.optim.AdamW(net.parameters(), lr=opt.learning_rate, weight_decay=opt.get("weight_decay", 0.0))
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.uniform(size=(batch, 3, size, size)).astype(np.float32))
  y = torch.from_numpy(rng.integers(0, num_classes, size=(batch, size, size))).long()
  loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)

  def run(n=steps):
    torch.set_num_threads(threads)   # the runners compare thread counts: set per run, not once
    t = time.perf_counter()
    for _ in range(n):
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(net(x), y)
      loss.backward()
      if opt.get("grad_clip_norm"):
        torch.nn.utils.clip_grad_norm_(net.parameters(), opt.grad_clip_norm)
      optimizer.step()
    return time.perf_counter() - t

  run(3)
  return run


def speed(args) -> list[dict]:
  config = _quick_config(args.overrides)
  size = 64
  batch = args.batch or config.batch_size
  num_classes = 9
  import jax  # pylint: disable=g-import-not-at-top

  from experiments.benchmarks.conv import xla_conv_gradients  # pylint: disable=g-import-not-at-top
  runners = {}
  for n in sorted({1, len(jax.devices())}):
    runners[f"JAX (dense_jax), {n} device(s)"] = jax_runner(config, batch, size, num_classes, args.steps, n)
    if args.ab_conv_vjp:  # the same step with XLA's own conv gradients (compiled here, inside)
      with xla_conv_gradients():
        runners[f"JAX XLA conv grads, {n} device(s)"] = jax_runner(config, batch, size, num_classes, args.steps, n)
  try:
    for threads in args.threads:
      runners[f"PyTorch {_torch_version()}, {threads} thread(s)"] = torch_runner(
          config, batch, size, num_classes, args.steps, threads)
  except ImportError:
    pass
  # Each runner runs `--steps` steps; the rounds alternate between runners (timing.median_ms).
  ms = timing.median_ms({name: run for name, run in runners.items()}, args.repeats, warmup=0)
  ips = {name: batch * args.steps / v * 1e3 for name, v in ms.items()}
  m = config.model
  print(f"\nTraining step, U-Net width={m.width} depth={m.depth} padding={m.padding} up={m.up} "
        f"norm={m.norm}, batch {batch}, {size}x{size}, {num_classes} classes, AdamW; {os.cpu_count()} CPU "
        f"cores; median of {args.repeats} interleaved rounds of {args.steps} steps; load average "
        f"{os.getloadavg()[0]:.1f} (a shared machine's figures are not speed figures)")
  print("| framework | images/s |\n|---|---|")
  for name, value in ips.items():
    print(f"| {name} | {value:.1f} |")
  jax_best = max((k for k in ips if k.startswith("JAX (")), key=ips.get)
  torch_names = [k for k in ips if k.startswith("PyTorch")]
  if torch_names:
    best = max(torch_names, key=ips.get)
    print(f"| ratio best JAX ({jax_best.split(', ')[-1]}) / best PyTorch ({best.split(', ')[-1]}) | "
          f"{ips[jax_best] / ips[best]:.2f} |")
  return [{"part": "speed", "runner": name, "batch": batch, "size": size, "steps": args.steps, "images_per_s": v}
          for name, v in ips.items()]


def _torch_version() -> str:
  try:
    import torch  # pylint: disable=g-import-not-at-top
    return torch.__version__
  except ImportError:
    return "(not installed)"


def memory(args) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  mib = 1 / 2 ** 20
  print(f"\nPeak memory of one training step, quick U-Net at 256x256, batch 8 ({jax.default_backend()}, "
        f"XLA memory_analysis of the compiled step):")
  print("| remat | arguments | outputs | temporaries | donated (aliased) | peak estimate |\n|---|---|---|---|---|---|")
  rows = []
  for remat in (False, True):
    config = _quick_config(args.overrides)
    config.model.remat = remat
    step, state, data = _jax_step(config, 8, 256, 9)
    mem = timing.memory_bytes(step.lower(state, data).compile())
    print(f"| {remat} | {mem['args'] * mib:.1f} MiB | {mem['output'] * mib:.1f} MiB | {mem['temp'] * mib:.1f} MiB | "
          f"{mem['aliased'] * mib:.1f} MiB | {mem['peak'] * mib:.1f} MiB |")
    rows.append({"part": "memory", "remat": remat, **mem})
  return rows


def flops(args) -> list[dict]:
  """Achieved FLOP/s of the training step against the measured matmul peak, float32 and bfloat16."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  size, batch = args.flops_size, args.batch or 16
  print(f"\nAchieved FLOP/s, quick U-Net training step, batch {batch}, {size}x{size} "
        f"({jax.devices()[0].device_kind}):")
  print("| compute dtype | GFLOP/step (XLA cost analysis) | step ms | achieved TFLOP/s | matmul peak TFLOP/s | "
        "fraction of peak |\n|---|---|---|---|---|---|")
  rows = []
  for dtype in ("float32", "bfloat16"):
    config = _quick_config(args.overrides)
    config.compute_dtype = dtype
    if dtype == "bfloat16":
      config.model.dtype = jnp.bfloat16
    step, state, data = _jax_step(config, batch, size, 9)
    step_flops = timing.flops_of(step.lower(state, data).compile())
    box = {"state": state}

    def run():
      for _ in range(args.steps):
        box["state"], metrics = step(box["state"], data)
      jax.block_until_ready((box["state"], metrics))
    seconds = timing.median_ms({"step": run}, args.repeats, warmup=1)["step"] / 1e3 / args.steps
    peak = timing.matmul_peak(jnp.dtype(dtype), 2048, 5)
    achieved = step_flops / seconds
    print(f"| {dtype} | {step_flops / 1e9:.2f} | {seconds * 1e3:.1f} | {achieved / 1e12:.3f} | "
          f"{peak / 1e12:.3f} | {achieved / peak:.1%} |")
    rows.append({"part": "flops", "dtype": dtype, "batch": batch, "size": size, "flops": step_flops,
                 "step_ms": seconds * 1e3, "flop_per_s": achieved, "matmul_peak": peak, "of_peak": achieved / peak})
  return rows


COLLECTIVES = ("collective-permute", "all-gather", "all-reduce", "all-to-all", "reduce-scatter")


def collective_counts(hlo_text: str) -> dict[str, int]:
  """Occurrences of each collective op (async `-start` forms counted once) in optimised HLO text."""
  found = re.findall(r"\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(", hlo_text)
  counts = collections.Counter(found)
  return {op: counts.get(op, 0) for op in COLLECTIVES}


def hlo(args) -> None:
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "experiments.benchmarks.train_step", "--part", "hlo", "--size", str(args.size)]
    if args.overrides:
      cmd += ["--overrides", args.overrides]
    if args.dump:
      cmd += ["--dump", args.dump]
    subprocess.run(cmd, env=env, check=True)
    return
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P

  from dense_jax.models import get_model
  from dense_jax.train import loop, optimizers, sharding
  from dense_jax.train.state import init_train_state
  config = _quick_config(args.overrides)
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = get_model("unet", num_classes=9, **kwargs)
  tx, schedule = optimizers.make_optimizer(config.optimizer, config.total_steps)
  mesh = sharding.make_mesh((2, 4))
  size, batch = args.size, 8
  print(f"\nSpatial partitioning: quick U-Net, batch {batch}, {size}x{size}, mesh data=2 x model=4 "
        f"(8 fake CPU devices), image height split over 'model' ({size // 4} rows per device)")
  rows = []
  for spatial in (False, True):
    with jax.set_mesh(mesh):
      abstract = jax.eval_shape(lambda r: init_train_state(
          model, tx, r, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)), jax.random.PRNGKey(0))
      state_sharding = sharding.tree_shardings(abstract, mesh, ((".*", "replicated"),))
      batch_sharding = {k: NamedSharding(mesh, s) for k, s in sharding.batch_specs(spatial).items()}
      step = jax.jit(loop.make_train_step(model, tx, schedule, spatial),
                     in_shardings=(state_sharding, batch_sharding),
                     out_shardings=(state_sharding, NamedSharding(mesh, P())))
      data = {"image": jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32),
              "semantic": jax.ShapeDtypeStruct((batch, size, size), jnp.int32)}
      text = step.lower(abstract, data).compile().as_text()
    if args.dump and spatial:
      with open(args.dump, "w") as f:
        f.write(text)
    gathers = [line.strip() for line in text.splitlines() if re.search(r"\ball-gather(-start)?\(", line)]
    permutes = re.findall(r"= \(?(f32|bf16|s32)\[([\d,]+)\][^=]*? collective-permute(?:-start)?\(", text)
    rows.append((spatial, collective_counts(text), gathers, permutes))
  print("| spatial | " + " | ".join(COLLECTIVES) + " |\n|" + "---|" * (len(COLLECTIVES) + 1))
  for spatial, counts, _, _ in rows:
    print(f"| {spatial} | " + " | ".join(str(counts[op]) for op in COLLECTIVES) + " |")
  for spatial, _, _, permutes in rows:
    if spatial and permutes:
      shapes = collections.Counter(f"{dtype}[{dims}]" for dtype, dims in permutes)
      heights = [int(dims.split(",")[1]) for _, dims in permutes if dims.count(",") == 3]
      print("\ncollective-permute results (NHWC slabs; H = rows sent to a neighbour): "
            + ", ".join(f"{k} x{v}" for k, v in shapes.most_common()))
      if heights:
        print(f"largest halo: {max(heights)} row(s) of a {size // 4}-row band; the all-reduces are the "
              f"batch-norm statistics and gradient sums")
  for spatial, _, gathers, _ in rows:
    if spatial and gathers:
      print("\nall-gathers in the spatially partitioned step (shape and source op):")
      for line in gathers:
        shape = re.search(r"= (\S+)", line)
        source = re.search(r'op_name="([^"]+)"', line)
        print(f"  {shape.group(1) if shape else '?'}  {source.group(1) if source else ''}")
  if args.dump:
    print(f"\noptimised HLO of the spatially partitioned step written to {args.dump}")


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="JAX CPU devices (default: the quick config's cpu_devices); JAX also runs on 1")
  parser.add_argument("--part", choices=("all", "speed", "memory", "hlo", "flops"), default="all")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch", type=int, default=0, help="default: the quick config's batch")
  parser.add_argument("--threads", type=lambda t: [int(v) for v in t.split(",")],
                      default=sorted({1, os.cpu_count() or 1}), help="torch intra-op thread counts, e.g. 1,2")
  parser.add_argument("--size", type=int, default=128, help="image side for --part hlo")
  parser.add_argument("--overrides", default="", help="extra get_config args, e.g. 'up=bilinear'")
  parser.add_argument("--dump", default="", help="write the spatial step's optimised HLO here")
  parser.add_argument("--flops_size", type=int, default=256, help="image side for --part flops")
  parser.add_argument("--ab-conv-vjp", action="store_true",
                      help="speed: also time the step with XLA's own conv gradients (no blocked weight gradient)")
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  if args.part in ("all", "speed", "memory", "flops"):
    from dense_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
    config = _quick_config(args.overrides)
    if args.cpu_devices:
      config.cpu_devices = args.cpu_devices
    config_lib.apply_cpu_devices(config)
  rows = []
  if args.part in ("all", "speed"):
    rows += speed(args)
  if args.part in ("all", "memory"):
    rows += memory(args)
  if args.part in ("all", "hlo"):
    hlo(args)
  if args.part == "flops" or (args.part == "all" and _has_accelerator()):
    rows += flops(args)
  if args.json:
    timing.write_json(args.json, rows)
  return rows


def _has_accelerator() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.default_backend() != "cpu"


if __name__ == "__main__":
  main()
