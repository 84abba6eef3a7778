"""Device mesh, parameter-sharding rules and batch placement.

Mesh. Always two axes `('data', 'model')`; `config.mesh_shape = (d, m)` gives their sizes, one of them
may be -1 ("all the devices the other leaves"). Both axes are `AxisType.Auto`: the step is written for
one big device and XLA's partitioner (GSPMD/Shardy) propagates the shardings we pin on the inputs, the
state and a few activations — Flax linen layers carry no sharding-in-types annotations, which
`AxisType.Explicit` would demand of every op. The mesh is entered with `jax.set_mesh`.

What each axis does:
- `data`: the batch is split over it (data parallelism); batch-norm means and the loss are sums over
  the global batch, so the result does not depend on the split.
- `model`: either parameters are sharded over it (FSDP-style rules, below), or — with spatial
  partitioning — the image *height* of the batch is split over it, so each device holds a horizontal
  band of every activation and convolutions exchange only the few boundary rows (halos) with the
  neighbouring band. Without either, `model` devices just replicate the work.

Parameter rules. `rules` is a sequence of `(regex, spec)`; the first regex that `re.search`-matches a
leaf's path (e.g. `params/down0/conv0/kernel`, `opt_state/1/0/mu/down0/conv0/kernel`) decides:
  'replicated'              the whole array on every device (the default when nothing matches)
  'fsdp:data' / 'fsdp:model' split the largest dimension divisible by that axis' size over it (arrays
                            under `FSDP_MIN_SIZE` elements, e.g. biases, stay replicated)
  a tuple such as (None, None, None, 'model')   an explicit PartitionSpec
Optimizer moments share their parameter's path suffix, so one rule shards both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "model")
FSDP_MIN_SIZE = 2 ** 12


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, int]:
  """`(data, model)` sizes with -1 filled in; ValueError if they do not multiply to `num_devices`."""
  shape = tuple(int(s) for s in mesh_shape)
  if len(shape) != 2 or any(s == 0 or s < -1 for s in shape) or shape.count(-1) > 1:
    raise ValueError(f"config.mesh_shape: expected two sizes for ('data', 'model'), each >= 1 or one of "
                     f"them -1, got {tuple(mesh_shape)!r}")
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    if num_devices % known:
      raise ValueError(f"config.mesh_shape: {tuple(mesh_shape)} needs the device count ({num_devices}) "
                       f"to be divisible by {known}")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if shape[0] * shape[1] != num_devices:
    raise ValueError(f"config.mesh_shape: expected data × model = the number of devices ({num_devices}), "
                     f"got {tuple(mesh_shape)} = {shape[0] * shape[1]} devices")
  return shape


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """The `('data', 'model')` mesh over `devices` (default: all), both axes `AxisType.Auto`."""
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(mesh_shape, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def path_string(path) -> str:
  """'params/down0/conv0/kernel' for a pytree key path."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def check_rules(rules) -> list[tuple[re.Pattern, Any]]:
  compiled = []
  for rule in rules:
    if not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise ValueError(f"config.sharding.params: expected (regex, spec) pairs, got {rule!r}")
    pattern, spec = rule
    if isinstance(spec, str):
      if spec not in ("replicated", "fsdp:data", "fsdp:model"):
        raise ValueError(f"config.sharding.params: spec for {pattern!r}: expected 'replicated', 'fsdp:data', "
                         f"'fsdp:model' or a tuple of axis names/None, got {spec!r}")
    elif not all(a is None or a in AXES for a in spec):
      raise ValueError(f"config.sharding.params: spec for {pattern!r}: axis names must be in {AXES} or None, "
                       f"got {spec!r}")
    compiled.append((re.compile(pattern), spec))
  return compiled


def leaf_spec(path: str, shape: tuple[int, ...], rules, mesh: Mesh) -> P:
  """The PartitionSpec the first matching rule gives a leaf at `path` of `shape` (see module doc)."""
  for pattern, spec in check_rules(rules):
    if not pattern.search(path):
      continue
    if spec == "replicated":
      return P()
    if isinstance(spec, str):  # fsdp:<axis>
      axis = spec.split(":")[1]
      size = mesh.shape[axis]
      if size == 1 or int(np.prod(shape)) < FSDP_MIN_SIZE:
        return P()
      candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % size == 0]
      if not candidates:
        return P()
      dims = [None] * len(shape)
      dims[int(candidates[0])] = axis
      return P(*dims)
    spec = tuple(spec)
    if len(spec) != len(shape):
      raise ValueError(f"config.sharding.params: spec {spec} for {path!r} has {len(spec)} entries, the "
                       f"array has shape {shape}")
    for dim, axis in zip(shape, spec):
      if axis is not None and dim % mesh.shape[axis]:
        raise ValueError(f"config.sharding.params: spec {spec} for {path!r}: dimension {dim} is not "
                         f"divisible by the {axis!r} axis size {mesh.shape[axis]}")
    return P(*spec)
  return P()


def tree_shardings(tree, mesh: Mesh, rules) -> Any:
  """A NamedSharding for every leaf of `tree` (arrays or ShapeDtypeStructs) by `rules`."""
  def one(path, leaf):
    return NamedSharding(mesh, leaf_spec(path_string(path), tuple(leaf.shape), rules, mesh))
  return jax.tree_util.tree_map_with_path(one, tree)


PIXEL_KEYS = ("image", "semantic")   # the default per-pixel batch entries (the tasks name theirs)


def batch_specs(spatial: bool, keys=None, pixel_keys=PIXEL_KEYS) -> dict[str, P]:
  """Batch partitioning of `keys` (default: `pixel_keys`): rows over 'data'; with `spatial`, the height
  (axis 1) of the per-pixel entries `pixel_keys` over 'model' as well. The tasks say which keys a
  batch has and which of them are per-pixel (`dense_jax.tasks.build.batch_keys / pixel_keys`)."""
  h = "model" if spatial else None
  keys = pixel_keys if keys is None else keys
  return {k: P("data", h) if k in pixel_keys else P("data") for k in keys}


def check_batch(global_batch_size: int, mesh: Mesh, image_size: tuple[int, int] | None = None,
                spatial: bool = False) -> None:
  """ValueError unless the global batch splits evenly over 'data' and over the processes, and (with
  spatial partitioning) the image height over 'model'."""
  data = mesh.shape["data"]
  if global_batch_size % data:
    raise ValueError(f"config.batch_size: expected a multiple of the 'data' mesh axis size {data} "
                     f"(mesh {dict(mesh.shape)}), got {global_batch_size}")
  if global_batch_size % jax.process_count():
    raise ValueError(f"config.batch_size: expected a multiple of the process count {jax.process_count()}, "
                     f"got {global_batch_size}")
  if data % jax.process_count():
    raise ValueError(f"config.mesh_shape: the 'data' axis ({data}) must be a multiple of the process count "
                     f"({jax.process_count()}) so that each process feeds its own rows of the batch")
  if spatial and image_size is not None and image_size[0] % mesh.shape["model"]:
    raise ValueError(f"config.sharding.spatial: image height {image_size[0]} must be divisible by the "
                     f"'model' axis size {mesh.shape['model']}")


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh, spatial: bool = False,
              pixel_keys=PIXEL_KEYS) -> dict[str, jax.Array]:
  """This process's rows of the batch → global `jax.Array`s sharded by `batch_specs(spatial, ...)`.

  Process p holds rows `[p·b, (p+1)·b)` of the global batch (b = global batch / process count), which
  are the rows its devices own along 'data'; all the other dimensions are complete on every process.
  """
  specs = batch_specs(spatial, tuple(local_batch), pixel_keys)
  out = {}
  for key, value in local_batch.items():
    spec = specs[key]
    global_shape = (value.shape[0] * jax.process_count(),) + tuple(value.shape[1:])
    out[key] = jax.make_array_from_process_local_data(NamedSharding(mesh, spec), value, global_shape)
  return out


def constrain_spatial(x, enabled: bool):
  """Pins an NHWC activation to (batch over 'data', height over 'model') when `enabled`; identity
  otherwise. Models may call it at block boundaries to keep the partitioner from gathering maps."""
  if not enabled:
    return x
  return jax.lax.with_sharding_constraint(x, P("data", "model", None, None))
