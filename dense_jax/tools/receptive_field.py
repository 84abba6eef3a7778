"""Receptive fields of a config's model: a per-layer table, and the effective receptive field as an image.

    python -m dense_jax.tools.receptive_field --config experiments/receptive_field.py:quick
    python -m dense_jax.tools.receptive_field --config experiments/receptive_field.py:quick \\
        --config.model.dilations="(2, 2, 2)" --out /tmp/erf.png
    python -m dense_jax.tools.receptive_field --workdir runs/rf/exponential --out erf.png   # trained

Prints one row per spatial layer — kernel, stride, dilation, input and output size, and the
receptive field `rf` and jump after it — then draws the effective receptive field (ERF) of the centre
output pixel, for the model's initial parameters or, with `--workdir`, for the newest checkpoint there
(the config then defaults to the run's `config.json`).

How the layer list is found, for any flax.linen model and without editing it: the model is traced once
with `jax.eval_shape` under `flax.linen.intercept_methods`, and every `__call__` of a spatial module is
recorded with its input and output shapes — `flax.linen.Conv` and `dense_jax.nn.Conv` (kernel,
stride, dilation; an `input_dilation` > 1 makes it an up-sampler), any module named `*ConvTranspose*`
(`kernel`/`kernel_size`, `stride`/`strides`), `BilinearUpsample`, `MaxPoolWithArgmax`, `Unpool`,
`MaxUnpool`. The functional poolings
`flax.linen.{max,avg,min}_pool` and `dense_jax.ops.max_pool_with_argmax` are wrapped for the duration
of the trace (they are looked up at call time by the models here). Anything else that changes the
spatial size (a resize, a strided slice) is inferred from the shapes: a map shrunk by an integer factor
f counts as an `f×f/f` pooling, one grown by f as a bilinear ×f up-sampling.

The receptive field follows one path through the network, in call order: a layer whose input size is
not the current map's size is a *branch* — e.g. a ResNet shortcut (its input is an earlier, larger map
and its output the current size) — and is listed but not composed. Down-sampling layers compose as in
`dense_jax.ops.receptive_field` (`r += (d·(k-1)+1 - 1)·j`, `j *= s`); an up-sampling by f whose output
pixel reads `t` input pixels per axis (`ceil((d·(k-1)+1) / f)` for a transposed conv, 1 for nearest /
bed-of-nails / max-unpooling, 2 for bilinear) adds `(t - 1)·j` and divides the jump by f.
Sizes are along the height axis (the models here are isotropic); parallel branches of different
receptive fields (ASPP, skip concatenations) are followed along the branch that was called last.

ERF (Luo et al., 2016): `dense_jax.ops.effective_receptive_field` of the logits' centre pixel, averaged
over a batch of N(0.5, 0.25²) noise images (or `--inputs data`: validation images), drawn with the
theoretical receptive field as a square and the smallest centred square holding 90% of the ERF.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dense_jax import paths

# ---------------------------------------------------------------------------------------------------
# Recording the spatial layers of a model.
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Layer:
  """One spatial layer as it was called. `kind`: 'conv', 'pool' (down-sampling path: kernel, stride,
  dilation), 'up' (factor, taps = input pixels an output pixel reads per axis), or 'inferred-down' /
  'inferred-up' (a size change no recorded layer explains). Filled by `layer_table`: `on_path`, `rf`
  (input pixels) and `jump` (input pixels between adjacent outputs; < 1 after up-sampling)."""
  name: str
  kind: str
  in_hw: tuple[int, int]
  out_hw: tuple[int, int]
  kernel: int = 1
  stride: int = 1
  dilation: int = 1
  factor: int = 1
  taps: int = 1
  on_path: bool = True
  rf: float | None = None
  jump: float | None = None


def _first(value, default=1) -> int:
  if value is None:
    return default
  if isinstance(value, (tuple, list)):
    return int(value[0])
  return int(value)


def _nhwc_size(x) -> tuple[int, int] | None:
  """`(H, W)` of a rank-4 (NHWC) array, None for anything else."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 4:
    return None
  return int(shape[1]), int(shape[2])


def _module_layer(module: nn.Module) -> dict | None:
  """The spatial description of a module call, or None if the module is not a recorded leaf."""
  cls = type(module).__name__
  # flax's modules say kernel_size / strides / kernel_dilation, dense_jax.nn's (and the zoo's)
  # kernel_size or kernel / stride / dilation.
  kernel = getattr(module, "kernel_size", getattr(module, "kernel", None))
  stride = getattr(module, "strides", getattr(module, "stride", 1))
  dilation = getattr(module, "kernel_dilation", getattr(module, "dilation", 1))
  if cls == "BilinearUpsample":
    f = _first(module.factor)
    k = 2 * f - f % 2
    return dict(kind="up", kernel=k, factor=f, taps=math.ceil(k / f))
  if isinstance(module, nn.ConvTranspose) or "ConvTranspose" in cls:
    k, s, d = _first(kernel), _first(stride), _first(dilation)
    return dict(kind="up", kernel=k, factor=s, dilation=d, taps=math.ceil((d * (k - 1) + 1) / s))
  if isinstance(module, nn.Conv) or (cls == "Conv" and kernel is not None):
    if isinstance(kernel, (tuple, list)) and len(kernel) != 2:
      return None
    k, s, d = _first(kernel), _first(stride), _first(dilation)
    lhs = _first(getattr(module, "input_dilation", 1))
    if lhs > 1:   # a transposed conv written as a conv with input dilation
      return dict(kind="up", kernel=k, factor=lhs, dilation=d, taps=math.ceil((d * (k - 1) + 1) / lhs))
    return dict(kind="conv", kernel=k, stride=s, dilation=d)
  if cls == "MaxPoolWithArgmax":
    k = _first(module.window)
    return dict(kind="pool", kernel=k, stride=_first(module.stride, k))
  if cls == "Unpool":
    return dict(kind="up", factor=_first(module.factor), taps=1)
  if cls == "MaxUnpool":
    return dict(kind="up", factor=_first(module.stride, _first(module.window)), taps=1)
  return None


def _module_name(module: nn.Module) -> str:
  try:
    return "/".join(str(p) for p in module.path) or type(module).__name__
  except Exception:  # pylint: disable=broad-except  # unbound module: fall back to its class
    return type(module).__name__


@contextlib.contextmanager
def _wrapped_pools(record):
  """Temporarily wraps the functional poolings so that calls to them are recorded."""
  import flax.linen  # pylint: disable=g-import-not-at-top

  import dense_jax.ops  # pylint: disable=g-import-not-at-top
  patched = []

  def wrap(namespace, attr, describe):
    original = getattr(namespace, attr, None)
    if original is None:
      return

    def wrapper(x, *args, **kwargs):
      out = original(x, *args, **kwargs)
      y = out[0] if isinstance(out, tuple) else out
      record(f"({attr})", describe(*args, **kwargs), x, y)
      return out

    setattr(namespace, attr, wrapper)
    patched.append((namespace, attr, original))

  def flax_pool(window_shape, strides=None, padding="VALID", *a, **kw):
    del padding, a, kw
    return dict(kind="pool", kernel=_first(window_shape), stride=_first(strides, _first(window_shape)))

  def argmax_pool(window, stride=None, padding=0):
    del padding
    return dict(kind="pool", kernel=_first(window), stride=_first(stride, _first(window)))

  for attr in ("max_pool", "avg_pool", "min_pool"):
    wrap(flax.linen, attr, flax_pool)
  wrap(dense_jax.ops, "max_pool_with_argmax", argmax_pool)
  try:
    yield
  finally:
    for namespace, attr, original in reversed(patched):
      setattr(namespace, attr, original)


def record_layers(model: nn.Module, input_shape: Sequence[int] = (1, 64, 64, 3), *, train: bool = False,
                  ) -> tuple[list[Layer], tuple[int, int]]:
  """The spatial layers `model` calls on an input of `input_shape`, in call order, and the output size.

  Traces `model.init` abstractly (`jax.eval_shape`): nothing is computed or allocated.
  """
  if len(input_shape) != 4:
    raise ValueError(f"input_shape: expected (N, H, W, C), got {tuple(input_shape)}")
  layers: list[Layer] = []

  def record(name, spec, x, y):
    in_hw, out_hw = _nhwc_size(x), _nhwc_size(y)
    if spec is None or in_hw is None or out_hw is None:
      return
    layers.append(Layer(name=name, in_hw=in_hw, out_hw=out_hw, **spec))

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and args:
      spec = _module_layer(context.module)
      if spec is not None:
        record(_module_name(context.module), spec, args[0], out[0] if isinstance(out, tuple) else out)
    return out

  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  with _wrapped_pools(record), nn.intercept_methods(interceptor):
    out, _ = jax.eval_shape(lambda x: model.init_with_output(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=train), x)
  out = out[0] if isinstance(out, (tuple, list)) else out
  if isinstance(out, dict):
    out = next(v for v in out.values() if _nhwc_size(v) is not None)
  return layers, _nhwc_size(out)


# ---------------------------------------------------------------------------------------------------
# Composing the receptive field along the path.
# ---------------------------------------------------------------------------------------------------


def _ratio(big: tuple[int, int], small: tuple[int, int]) -> int | None:
  """The integer factor f with big == small·f on both axes (up to ceil rounding), else None."""
  f = big[0] // small[0] if small[0] else 0
  if f >= 2 and all(-(-b // f) == s for b, s in zip(big, small)):
    return f
  return None


def compose(layers: Sequence[Layer], input_hw: tuple[int, int], output_hw: tuple[int, int] | None = None
            ) -> list[Layer]:
  """Marks each layer on/off the path and fills `rf` and `jump` (module docstring); inserts the
  inferred layers that explain size changes no recorded layer made. Returns a new list."""
  rows: list[Layer] = []
  current, seen = tuple(input_hw), [tuple(input_hw)]
  rf, jump = 1.0, 1.0

  def apply(layer: Layer):
    nonlocal rf, jump, current
    if layer.kind in ("conv", "pool", "inferred-down"):
      rf += (layer.dilation * (layer.kernel - 1)) * jump
      jump *= layer.stride
    else:
      rf += (layer.taps - 1) * jump
      jump /= layer.factor
    layer.rf, layer.jump, layer.on_path = rf, jump, True
    current = layer.out_hw
    seen.append(current)
    rows.append(layer)

  def bridge(target: tuple[int, int]):
    """An inferred layer taking the current map to `target`, if an integer factor does it."""
    f = _ratio(current, target)
    if f:
      apply(Layer("(inferred)", "inferred-down", current, target, kernel=f, stride=f))
      return True
    f = _ratio(target, current)
    if f:
      apply(Layer("(inferred)", "inferred-up", current, target, factor=f, taps=2))
      return True
    return False

  for layer in layers:
    layer = dataclasses.replace(layer)
    if layer.in_hw != current:
      if layer.in_hw in seen and layer.out_hw == current:
        layer.on_path = False       # a branch that rejoins here (a shortcut)
        rows.append(layer)
        continue
      if not bridge(layer.in_hw):
        current = layer.in_hw         # a crop or another size change we cannot compose: restart there
    apply(layer)
  if output_hw is not None and tuple(output_hw) != current:
    bridge(tuple(output_hw))
  return rows


def layer_table(model: nn.Module, input_shape: Sequence[int] = (1, 64, 64, 3), *, train: bool = False
                ) -> list[Layer]:
  """`record_layers` + `compose`: every spatial layer of `model` with the receptive field after it."""
  layers, output_hw = record_layers(model, input_shape, train=train)
  return compose(layers, tuple(input_shape[1:3]), output_hw)


def final_receptive_field(rows: Sequence[Layer], upto: str | None = None) -> tuple[float, float]:
  """`(rf, jump)` after the last on-path row, or after the last on-path row whose name contains `upto`."""
  path = [r for r in rows if r.on_path and (upto is None or upto in r.name)]
  if not path:
    raise ValueError(f"upto: no layer on the path matches {upto!r}" if upto else "rows: no layer on the path")
  return path[-1].rf, path[-1].jump


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def format_table(rows: Sequence[Layer]) -> str:
  """A plain-text table: layer, kind, k, s (or ×f for up-sampling), d, in, out, rf, jump."""
  header = ("#", "layer", "kind", "k", "s", "d", "in", "out", "rf", "jump")
  lines = []
  for i, r in enumerate(rows):
    stride = f"x{r.factor}" if r.kind in ("up", "inferred-up") else str(r.stride)
    kind = r.kind if r.on_path else "branch"
    lines.append((str(i), r.name, kind, str(r.kernel), stride, str(r.dilation),
                  f"{r.in_hw[0]}x{r.in_hw[1]}", f"{r.out_hw[0]}x{r.out_hw[1]}",
                  _fmt(r.rf) if r.on_path else "", _fmt(r.jump) if r.on_path else ""))
  widths = [max(len(h), *(len(l[c]) for l in lines)) if lines else len(h) for c, h in enumerate(header)]
  fmt = lambda cells: "  ".join(c.ljust(w) if j in (1, 2) else c.rjust(w)
                                for j, (c, w) in enumerate(zip(cells, widths)))
  return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines])


# ---------------------------------------------------------------------------------------------------
# Effective receptive field.
# ---------------------------------------------------------------------------------------------------


def erf_map(model: nn.Module, variables, images, output_position=None) -> np.ndarray:
  """`(H, W)` ERF of the logits' pixel `output_position` (default the centre) for `images`."""
  from dense_jax.models.build import primary_output  # pylint: disable=g-import-not-at-top
  from dense_jax.ops import effective_receptive_field  # pylint: disable=g-import-not-at-top
  fn = jax.jit(lambda v, x: effective_receptive_field(lambda z: primary_output(model.apply(v, z, train=False)),
                                                      x, output_position))
  return np.asarray(fn(variables, jnp.asarray(images, jnp.float32)))


def erf_width(erf: np.ndarray, fraction: float = 0.9, centre: tuple[int, int] | None = None) -> int:
  """Width `2r + 1` of the smallest square centred on `centre` (default the map's centre pixel,
  `(H // 2, W // 2)`) that holds at least `fraction` of the ERF's mass (0 for an all-zero map)."""
  erf = np.asarray(erf, np.float64)
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction: expected a value in (0, 1], got {fraction!r}")
  total = erf.sum()
  if total <= 0:
    return 0
  h, w = erf.shape
  ci, cj = centre if centre is not None else (h // 2, w // 2)
  for r in range(max(h, w) + 1):
    window = erf[max(ci - r, 0):ci + r + 1, max(cj - r, 0):cj + r + 1]
    if window.sum() >= fraction * total * (1 - 1e-9):
      return 2 * r + 1
  return 2 * max(h, w) + 1


def noise_images(shape: Sequence[int], seed: int = 0) -> np.ndarray:
  """N(0.5, 0.25²) images clipped to [0, 1] (the range the pipelines produce)."""
  rng = np.random.default_rng(seed)
  return np.clip(rng.normal(0.5, 0.25, tuple(shape)), 0.0, 1.0).astype(np.float32)


def plot_erf(erf: np.ndarray, path: str | paths.Path, *, rf: float | None = None, title: str = "",
             fraction: float = 0.9) -> paths.Path:
  """Saves the ERF as a PNG (square-root colour scale, so the tails show), with the theoretical
  receptive field `rf` (a square of that width around the centre, clipped to the image) and the
  centred square holding `fraction` of the ERF."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import Rectangle  # pylint: disable=g-import-not-at-top
  erf = np.asarray(erf, np.float64)
  h, w = erf.shape
  ci, cj = h // 2, w // 2
  fig, ax = plt.subplots(figsize=(4.2, 4.2))
  ax.imshow(np.sqrt(erf / max(erf.max(), 1e-30)), cmap="magma", interpolation="nearest")
  width = erf_width(erf, fraction)
  legend = []
  if width:
    ax.add_patch(Rectangle((cj - width / 2, ci - width / 2), width, width, fill=False, ec="cyan", lw=1.2))
    legend.append(f"{fraction:.0%} of ERF: {width} px")
  if rf is not None:
    ax.add_patch(Rectangle((cj - rf / 2, ci - rf / 2), rf, rf, fill=False, ec="white", lw=1.2, ls="--"))
    legend.append(f"theoretical RF: {rf:g} px")
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  ax.set_title((title + "\n" if title else "") + ", ".join(legend), fontsize=8)
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  path = paths.as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, dpi=110, format=path.suffix[1:] or "png")
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------------


def analyse(config, *, workdir: str | None = None, out: str | None = None, batch: int = 8,
            inputs: str = "noise", seed: int = 0) -> dict[str, Any]:
  """The table, the ERF (PNG at `out` if given) and summary numbers for `config`'s model."""
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  model, info, image_size = restore.build_model(config)
  shape = (1, *image_size, 3)
  rows = layer_table(model, shape)
  rf, jump = final_receptive_field(rows)
  if workdir is not None:
    step, variables = restore.restore_variables(config, workdir)
  else:
    step, variables = None, restore.init_variables(config, model, image_size)
  if inputs == "data":
    images = restore.validation_images(config, batch, image_size)
  elif inputs == "noise":
    images = noise_images((batch, *image_size, 3), seed)
  else:
    raise ValueError(f"inputs: expected 'noise' or 'data', got {inputs!r}")
  erf = erf_map(model, variables, images)
  summary = {"rf": rf, "jump": jump, "erf_width50": erf_width(erf, 0.5), "erf_width90": erf_width(erf, 0.9),
             "step": step, "rows": rows, "erf": erf}
  if out is not None:
    trained = f"step {step}" if step is not None else "untrained"
    summary["png"] = plot_erf(erf, out, rf=rf, title=f"{config.model.name} ({trained}, {inputs} inputs)")
  return summary


def main(argv=None) -> int:
  # pylint: disable=g-import-not-at-top
  from absl import app, flags
  from ml_collections import config_flags

  config_flag = config_flags.DEFINE_config_file("config", None, "Experiment file, `path.py[:arg]`.")
  workdir_flag = flags.DEFINE_string("workdir", None, "A run's workdir: restore its newest checkpoint "
                                     "(and use its config.json unless --config is given).")
  out_flag = flags.DEFINE_string("out", None, "Where to save the ERF image (PNG); default: none, "
                                 "or <workdir>/erf.png with --workdir.")
  batch_flag = flags.DEFINE_integer("batch", 8, "Images the ERF is averaged over.")
  inputs_flag = flags.DEFINE_enum("inputs", "noise", ["noise", "data"], "ERF inputs: noise or validation images.")

  def run(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from dense_jax.tools import restore
    config = config_flag.value
    if config is None:
      if workdir_flag.value is None:
        raise app.UsageError("give --config FILE[:ARG] or --workdir of a run")
      config = restore.load_run_config(workdir_flag.value)
    out = out_flag.value
    if out is None and workdir_flag.value is not None:
      out = str(paths.as_path(workdir_flag.value) / "erf.png")
    result = analyse(config, workdir=workdir_flag.value, out=out, batch=batch_flag.value,
                     inputs=inputs_flag.value)
    print(format_table(result["rows"]))
    print(f"\nreceptive field {result['rf']:g} px, jump {result['jump']:g}; effective receptive field "
          f"(centred square holding 50% / 90% of it): {result['erf_width50']} / {result['erf_width90']} px"
          + (f"; checkpoint step {result['step']}" if result["step"] is not None else "; untrained"))
    if "png" in result:
      print(f"wrote {result['png']}")
    return 0

  app.run(run, argv)
  return 0


if __name__ == "__main__":
  main()
