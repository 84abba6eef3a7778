"""Model-zoo speed: training images/s against torchvision, and inference images/s of every zoo model.

Run: `python -m experiments.benchmarks.zoo [--quick] [--batch 2] [--train-size 256] [--infer-size 512] [--profile]`
(torchvision rows appear when `torchvision` is importable, e.g. from a venv with torch + torchvision.)

1. Training, `--train-size`² (256), batch `--batch`: FCN-ResNet50 and DeepLabV3-ResNet50 (full size,
   21 classes, output stride 8, no auxiliary head) — ours (one jitted step: forward in training mode
   with batch statistics and dropout, softmax cross-entropy, backward, SGD momentum 0.9) against
   torchvision's `fcn_resnet50` / `deeplabv3_resnet50` (`model.train()`, the same loss and optimizer,
   `torch.set_num_threads(os.cpu_count())`). Ratio = ours / torchvision (≥ 1 means we are faster).
2. Inference, `--infer-size`² (512), batch 1, `train=False`: every full-size zoo model (the narrow
   variants with `--quick`), with XLA's GFLOPs per image for context.
Times: median of `--repeats` steps after a compile + warm-up step, `block_until_ready` each step;
the training steps of ours and torchvision's are timed alternately (`timing.images_per_s`), so a
shared machine's load falls on both alike. `--json PATH` writes the rows and the machine record.
`--profile` adds, per training model, where the step's time goes by op class (conv / matmul / layout
copies / reductions / elementwise, forward and backward; `experiments/benchmarks/op_profile.py`).
Weights are random (`dense_jax.models._random`): speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dense_jax.models import flops
from dense_jax.models._random import random_variables
from dense_jax.models.registry import get_model
from experiments.benchmarks import table, timing
from experiments.benchmarks.conv import xla_conv_gradients
from experiments.benchmarks.op_profile import print_profile, profile_by_class, profile_rows

FULL = ["sliding_window", "fcn32s", "fcn16s", "fcn8s", "fcn_resnet50", "segnet", "deconvnet", "dilated_frontend",
        "dilated_context", "deeplabv3_resnet50", "deeplabv3_resnet101", "unet"]
NARROW = ["sliding_window_narrow", "fcn32s_narrow", "fcn16s_narrow", "fcn8s_narrow", "fcn_resnet50_narrow",
          "segnet_narrow", "deconvnet_narrow", "dilated_frontend_narrow", "dilated_context_narrow",
          "deeplabv3_resnet50_narrow"]


def _logits(out):
  """A model's semantic logits: from its `{task: output}` dict, or the array itself."""
  return out["semantic"] if isinstance(out, dict) else out


def jax_train_parts(name: str, batch: int, size, dtype=jnp.float32, num_classes: int = 21):
  """(jitted step, its arguments): one training step of our model — forward in training mode with
  batch statistics and dropout, softmax cross-entropy, backward, SGD momentum 0.9 — on a random
  `(batch, H, W, 3)` batch (`size` an int or `(H, W)`); `dtype` is the compute dtype (params float32)."""
  model = get_model(name, num_classes=num_classes, **({} if dtype == jnp.float32 else {"dtype": dtype}))
  hw = (size, size) if isinstance(size, int) else tuple(size)
  shape = (batch, *hw, 3)
  variables = random_variables(model, shape)
  params, stats = variables["params"], variables.get("batch_stats", {})
  opt = optax.sgd(0.01, momentum=0.9)
  opt_state = opt.init(params)
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype)
  y = jnp.asarray(np.random.default_rng(1).integers(0, num_classes, size=shape[:3]), jnp.int32)

  @jax.jit
  def step(params, stats, opt_state, key):
    def loss_fn(p):
      out, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": key})
      logits = _logits(out).astype(jnp.float32)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  return step, [params, stats, opt_state, jax.random.key(0)]


def jax_train_step(name: str, batch: int, size, dtype=jnp.float32):
  """A no-argument callable running one jitted training step of our model (blocking)."""
  step, args = jax_train_parts(name, batch, size, dtype)
  state, key = args[:3], args[3]

  def run():
    out = step(*state, key)
    jax.block_until_ready(out)
    state[:] = out[:3]

  return run


def torch_train_step(name: str, batch: int, size: int):
  """The same step for torchvision's model, or None without torchvision."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  timing.torch_threads()
  torch.manual_seed(0)
  model = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=21,
                                                         aux_loss=False).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  x = torch.randn(batch, 3, size, size)
  y = torch.randint(0, 21, (batch, size, size))

  def run():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x)["out"], y)
    loss.backward()
    opt.step()

  return run


def inference_row(name: str, size: int, repeats: int) -> dict:
  """Inference images/s (batch 1) of zoo model `name` at `size`², its parameters, GFLOPs and compile s."""
  model = get_model(name)
  shape = (1, size, size, 3)
  variables = random_variables(model, shape)
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  t0 = time.perf_counter()
  compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  compile_s = time.perf_counter() - t0
  ms = timing.median_ms({"infer": timing.blocking(compiled, variables, x)}, repeats, warmup=1)["infer"]
  return {"table": "inference", "model": name, "params": flops.count_params(variables["params"]),
          "gflops": timing.flops_of(compiled) / 1e9, "compile_s": compile_s, "img_s": 1e3 / ms}


def train_rows(batch: int, size: int, repeats: int, ab_conv_vjp: bool = False, log=print) -> list[dict]:
  """Table 1: one row per model, ours against torchvision's images/s (timed alternately)."""
  rows = []
  for name in ("fcn_resnet50", "deeplabv3_resnet50"):
    runs = {"ours": jax_train_step(name, batch, size)}
    if ab_conv_vjp:  # the same step with XLA's own conv gradients, compiled inside
      with xla_conv_gradients():
        runs["ours, XLA conv grads"] = jax_train_step(name, batch, size)
        runs["ours, XLA conv grads"]()
    torch_run = torch_train_step(name, batch, size)
    if torch_run is not None:
      runs["torchvision"] = torch_run
    speed = timing.images_per_s(runs, batch, repeats)
    ours, theirs = speed["ours"], speed.get("torchvision")
    row = {"table": "train", "model": name, "size": size, "batch": batch, "ours_img_s": ours,
           "torchvision_img_s": theirs, "ratio": ours / theirs if theirs else None,
           "ours_xla_conv_grads_img_s": speed.get("ours, XLA conv grads"), "load_average": os.getloadavg()[0]}
    log(table.markdown([row], ["model", "ours_img_s", "torchvision_img_s", "ratio", "ours_xla_conv_grads_img_s",
                               "load_average"]).splitlines()[-1])
    rows.append(row)
  return rows


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="narrow models for inference, 2 training steps")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--train-size", type=int, default=256)
  parser.add_argument("--infer-size", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--models", nargs="*", default=None, help="inference rows (default: full or narrow list)")
  parser.add_argument("--skip-train", action="store_true")
  parser.add_argument("--skip-infer", action="store_true")
  parser.add_argument("--ab-conv-vjp", action="store_true",
                      help="also time our step with XLA's own conv gradients (no blocked weight gradient)")
  parser.add_argument("--profile", action="store_true",
                      help="after the training table, time each model's step by op class (op_profile)")
  timing.add_json_flag(parser)
  args = parser.parse_args(argv)
  repeats = args.repeats or (2 if args.quick else 5)
  m = timing.machine()
  print(f"backend: {m['backend']}, devices: {m['device_count']}, cpu cores: {m['cpu_count']}, {timing.load()}")
  log = lambda line: print(line, flush=True)
  rows = []
  if not args.skip_train:
    print(f"\n## training images/s, {args.train_size}x{args.train_size}, batch {args.batch}, median of {repeats}")
    print("| model | ours_img_s | torchvision_img_s | ratio | ours_xla_conv_grads_img_s | load_average |\n"
          "|---|---|---|---|---|---|")
    rows += train_rows(args.batch, args.train_size, repeats, args.ab_conv_vjp, log)
    if args.profile:
      for name in ("fcn_resnet50", "deeplabv3_resnet50"):
        step, step_args = jax_train_parts(name, args.batch, args.train_size)
        profile = profile_by_class(step.lower(*step_args).compile(), step_args, steps=2)
        print_profile(f"{name} training step, {args.train_size}x{args.train_size}, batch {args.batch}", profile)
        rows += [{"table": "profile", "model": name, **r} for r in profile_rows(profile)]

  if not args.skip_infer:
    names = args.models or (NARROW if args.quick else FULL)
    print(f"\n## inference images/s, {args.infer_size}x{args.infer_size}, batch 1, median of {repeats}")
    print("| model | params | gflops | compile_s | img_s |\n|---|---|---|---|---|")
    for name in names:
      try:
        r = inference_row(name, args.infer_size, repeats)
      except ValueError as e:  # an input size the model cannot take (the valid U-Net)
        print(f"| {name} | skipped: {e} | | | |")
        continue
      rows.append(r)
      log(table.markdown([r], ["model", "params", "gflops", "compile_s", "img_s"]).splitlines()[-1])
  if args.json:
    timing.write_json(args.json, rows)
  return rows


if __name__ == "__main__":
  main()
